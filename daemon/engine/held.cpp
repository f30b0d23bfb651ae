#include "daemon/engine/held.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

namespace iamtok::engine {

std::int64_t floor_seconds(Duration d)
{
  return std::chrono::floor<std::chrono::seconds>(d).count();
}

Duration lifetime_of(const IssuedToken& issued)
{
  Duration lifetime = issued.expires_in;
  if (issued.jwt_lifetime) {
    lifetime = std::min<Duration>(lifetime, *issued.jwt_lifetime);
  }
  return lifetime;
}

UpstreamResult checked(UpstreamResult result, std::string_view what, TimePoint sent_at, TimePoint at)
{
  if (result && lifetime_of(*result) <= Duration::zero()) {
    UpstreamError error;
    error.failure = Failure::malformed;
    error.message = fmt::format("{} reply has no positive expires_in", what);
    return tl::unexpected(std::move(error));
  }
  if (result && sent_at + lifetime_of(*result) <= at) {
    UpstreamError error;
    error.failure = Failure::malformed;
    error.message = fmt::format("the {} had expired by the time the reply arrived", what);
    return tl::unexpected(std::move(error));
  }
  return result;
}

Held hold(IssuedToken issued, TimePoint sent_at, std::int64_t unix_sent, std::uint64_t generation)
{
  const Duration lifetime = lifetime_of(issued);
  return Held{std::move(issued.token), sent_at + lifetime, lifetime, unix_sent + floor_seconds(lifetime), generation};
}

} // namespace iamtok::engine
