#pragma once

// A token the engine holds (a profile's access token or the shared CR token)
// and the checks a fetched one passes before it is held. Pure.

#include "daemon/engine/ports.hpp"

#include <cstdint>
#include <string_view>

namespace iamtok::engine {

struct Held
{
  Secret token;
  TimePoint expiry; // on the Clock
  Duration lifetime{};
  // Wall-clock Unix expiry (when the request was sent + lifetime), fixed so
  // every reply for this token reports the same expires_at.
  std::int64_t unix_expiry = 0;
  std::uint64_t generation = 0; // Grant::generation (access tokens only)
};

// Whole seconds in `d`, rounded down (toward the past for negative spans).
std::int64_t floor_seconds(Duration d);

// The smaller of the reply's expires_in and the JWT's exp - iat.
Duration lifetime_of(const IssuedToken& issued);

// A reply to a request sent at `sent_at`, arriving at `at`: a token with no
// positive lifetime, or one that had expired by `at`, becomes a malformed
// failure (`what` names it in the message: "token", "CR token").
UpstreamResult checked(UpstreamResult result, std::string_view what, TimePoint sent_at, TimePoint at);

// A checked token, held from when its request was sent (`sent_at`, and
// `unix_sent` on the wall clock), never from the reply's arrival.
Held hold(IssuedToken issued, TimePoint sent_at, std::int64_t unix_sent, std::uint64_t generation = 0);

} // namespace iamtok::engine
