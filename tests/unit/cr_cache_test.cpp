// daemon/engine/cr_cache.hpp and held.hpp: the shared CR token's cache at
// injected times, without an engine or ports. Tokens are compared, never
// printed.

#include "daemon/engine/cr_cache.hpp"
#include "tests/unit/engine_fakes.hpp"

#include <catch2/catch.hpp>

using namespace iamtok;
using namespace iamtok::engine;
using namespace iamtok::engine::testing;
using namespace std::chrono_literals;

namespace {

const TimePoint k_start = TimePoint(std::chrono::hours(100));
constexpr std::int64_t k_unix_start = 1'795'000'000;

bool holds(const Held* held, std::string_view token)
{
  return held != nullptr && held->token.expose() == token;
}

// A cache holding `token`, fetched at k_start for `lifetime`.
CrCache cached(std::string token, std::chrono::seconds lifetime)
{
  CrCache cache;
  cache.fetch_sent(k_start, k_unix_start);
  REQUIRE(cache.fetched(issued(std::move(token), lifetime), k_start));
  return cache;
}

} // namespace

TEST_CASE("cr cache: a fetched token is held from when the fetch was sent and shared until its margin")
{
  CrCache cache;
  CHECK(cache.usable(k_start) == nullptr);
  CHECK(cache.status().state == SourceState::pending);
  cache.fetch_sent(k_start, k_unix_start);
  CHECK(cache.fetching());
  const auto generation = cache.generation();
  const auto fetched = cache.fetched(issued("cr-1", 300s), k_start + 2s);
  REQUIRE(fetched);
  CHECK(fetched->token.expose() == "cr-1");
  CHECK(fetched->generation == cache.generation());
  CHECK(cache.generation() != generation);
  CHECK_FALSE(cache.fetching());

  const Held* held = cache.usable(k_start + 2s);
  REQUIRE(holds(held, "cr-1"));
  CHECK(held->expiry == k_start + 300s);
  CHECK(held->unix_expiry == k_unix_start + 300);
  const auto status = cache.status();
  CHECK(status.state == SourceState::ok);
  CHECK(status.expires_at == k_unix_start + 300);
  CHECK_FALSE(status.last_error);

  // Reused while more than min(60 s, half of 300 s) is left.
  CHECK(holds(cache.usable(k_start + 239s), "cr-1"));
  CHECK(cache.usable(k_start + 240s) == nullptr);
}

TEST_CASE("cr cache: a short-lived token is shared while more than half its lifetime is left")
{
  const CrCache cache = cached("cr-1", 40s);
  CHECK(holds(cache.usable(k_start + 19s), "cr-1"));
  CHECK(cache.usable(k_start + 20s) == nullptr);
}

TEST_CASE("cr cache: a failed fetch drops the cached token and records the failure")
{
  CrCache cache = cached("cr-1", 300s);
  const auto generation = cache.generation();
  cache.fetch_sent(k_start + 250s, k_unix_start + 250);
  const auto fetched = cache.fetched(failed(http_error(500)), k_start + 251s);
  REQUIRE_FALSE(fetched);
  CHECK(fetched.error().http_status == 500);
  CHECK(cache.usable(k_start + 251s) == nullptr);
  CHECK(cache.generation() == generation);
  const auto status = cache.status();
  CHECK(status.state == SourceState::failed);
  REQUIRE(status.last_error);
  CHECK(status.last_error->http_status == 500);
  CHECK_FALSE(status.expires_at);
}

TEST_CASE("cr cache: a reply without a positive lifetime or expired in flight is a malformed failure")
{
  CrCache cache;
  cache.fetch_sent(k_start, k_unix_start);
  const auto zero = cache.fetched(issued("cr-1", 0s), k_start);
  REQUIRE_FALSE(zero);
  CHECK(zero.error().failure == Failure::malformed);
  CHECK(zero.error().message == "CR token reply has no positive expires_in");

  cache.fetch_sent(k_start, k_unix_start);
  const auto late = cache.fetched(issued("cr-2", 10s), k_start + 10s);
  REQUIRE_FALSE(late);
  CHECK(late.error().failure == Failure::malformed);
  CHECK(late.error().message == "the CR token had expired by the time the reply arrived");
  CHECK(cache.status().state == SourceState::failed);
  CHECK(cache.usable(k_start + 10s) == nullptr);
}

TEST_CASE("cr cache: a fetch that forget overtook serves its waiters but is not kept")
{
  CrCache cache = cached("cr-old", 300s);
  cache.fetch_sent(k_start + 250s, k_unix_start + 250);
  cache.forget();
  CHECK(cache.usable(k_start + 250s) == nullptr);
  CHECK(cache.status().state == SourceState::pending);
  const auto fetched = cache.fetched(issued("cr-new", 300s), k_start + 251s);
  REQUIRE(fetched);
  CHECK(fetched->token.expose() == "cr-new");
  CHECK(cache.usable(k_start + 251s) == nullptr);

  // The next fetch is kept again.
  cache.fetch_sent(k_start + 260s, k_unix_start + 260);
  REQUIRE(cache.fetched(issued("cr-next", 300s), k_start + 261s));
  CHECK(holds(cache.usable(k_start + 261s), "cr-next"));
}

TEST_CASE("cr cache: a rejection drops only the token of its generation")
{
  CrCache cache = cached("cr-1", 300s);
  const auto first = cache.generation();
  cache.fetch_sent(k_start + 1s, k_unix_start + 1);
  REQUIRE(cache.fetched(issued("cr-2", 300s), k_start + 1s));
  cache.rejected(first);
  CHECK(holds(cache.usable(k_start + 1s), "cr-2"));
  cache.rejected(cache.generation());
  CHECK(cache.usable(k_start + 1s) == nullptr);
}

TEST_CASE("cr cache: changed drops the token with a new generation and keeps the state")
{
  CrCache cache = cached("cr-1", 300s);
  const auto generation = cache.generation();
  cache.changed();
  CHECK(cache.usable(k_start) == nullptr);
  CHECK(cache.generation() != generation);
  CHECK(cache.status().state == SourceState::ok);
}

TEST_CASE("cr cache: record keeps only the state of a source read per exchange")
{
  CrCache cache;
  cache.record(failed(http_error(404)));
  CHECK(cache.status().state == SourceState::failed);
  cache.record(issued("file-token", 0s));
  CHECK(cache.status().state == SourceState::ok);
  CHECK_FALSE(cache.status().last_error);
  CHECK(cache.usable(k_start) == nullptr);
}

TEST_CASE("hold counts a token's lifetime from when it was sent, the smaller of expires_in and the JWT's")
{
  IssuedToken token{Secret("t"), 300s};
  token.jwt_lifetime = 200s;
  CHECK(lifetime_of(token) == Duration(200s));
  const Held held = hold(token, k_start, k_unix_start, 7);
  CHECK(held.expiry == k_start + 200s);
  CHECK(held.lifetime == Duration(200s));
  CHECK(held.unix_expiry == k_unix_start + 200);
  CHECK(held.generation == 7);
  CHECK(checked(issued("t", 10s), "token", k_start, k_start + 9s));
  CHECK_FALSE(checked(issued("t", 10s), "token", k_start, k_start + 10s));
}
