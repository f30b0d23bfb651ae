#include "daemon/log/log.hpp"
#include "daemon/server/audit.hpp"
#include "tests/support/log_capture.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace iamtok;
using namespace std::chrono_literals;
using server::Audit;
using server::AuditClock;
using server::Caller;
using server::RateLimiter;
using server::Via;

namespace {

const AuditClock::time_point k_start{std::chrono::hours(1)};

std::size_t count_containing(const std::vector<std::string>& lines, std::string_view text)
{
  std::size_t n = 0;
  for (const auto& line : lines) {
    n += line.find(text) != std::string::npos ? 1 : 0;
  }
  return n;
}

} // namespace

TEST_CASE("the rate limiter admits 10 events in any second and counts the rest")
{
  RateLimiter limiter;
  for (int i = 0; i < 10; ++i) {
    const auto verdict = limiter.admit(k_start + i * 10ms);
    CHECK(verdict.admit);
    CHECK(verdict.suppressed == 0);
  }
  for (int i = 0; i < 25; ++i) {
    CHECK_FALSE(limiter.admit(k_start + 200ms + i * 10ms).admit);
  }
  CHECK(limiter.suppressed() == 25);
  // The first admitted event was at +0 ms: one slot frees at +1000 ms, not before.
  CHECK_FALSE(limiter.admit(k_start + 999ms).admit);
  const auto after = limiter.admit(k_start + 1000ms);
  CHECK(after.admit);
  CHECK(after.suppressed == 26);
  CHECK(limiter.suppressed() == 0);
  // The second slot frees 10 ms later.
  CHECK_FALSE(limiter.admit(k_start + 1005ms).admit);
  CHECK(limiter.admit(k_start + 1010ms).admit);
}

TEST_CASE("the rate limiter never admits more than 10 in a sliding second under a steady flood")
{
  RateLimiter limiter;
  std::vector<AuditClock::time_point> admitted;
  for (int i = 0; i < 5000; ++i) { // one event a millisecond for 5 s
    const auto at = k_start + i * 1ms;
    if (limiter.admit(at).admit) {
      admitted.push_back(at);
    }
  }
  CHECK(admitted.size() == 50);
  for (std::size_t i = 10; i < admitted.size(); ++i) {
    CHECK(admitted[i] - admitted[i - 10] >= 1s);
  }
}

TEST_CASE("denials are logged at warn with uid, pid, transport, profile and reason, rate-limited")
{
  test::LogCapture capture(log::Level::debug);
  AuditClock::time_point now = k_start;
  Audit audit([&] { return now; });
  const Caller who{1000, 100, 4321, {}};
  for (int i = 0; i < 30; ++i) {
    audit.denied(who, Via::socket, "deployer", "forbidden", "caller may not use this profile");
  }
  REQUIRE(capture.lines().size() == 10);
  CHECK(capture.lines()[0] ==
        "WARN denied: uid 1000 pid 4321 via socket profile deployer: forbidden (caller may not use this profile)");
  now += 1s;
  audit.denied(who, Via::http, "nope", "unknown_profile", "no such profile");
  REQUIRE(capture.lines().size() == 11);
  CHECK(capture.lines()[10] == "WARN denied: uid 1000 pid 4321 via http profile nope: unknown_profile (no such "
                               "profile); 20 more denial line(s) suppressed before this");
}

TEST_CASE("a long profile name in a denial is cut")
{
  test::LogCapture capture(log::Level::debug);
  Audit audit([] { return k_start; });
  audit.denied(Caller{1, 1, 1, {}}, Via::socket, std::string(1000, 'x'), "unknown_profile", "no such profile");
  REQUIRE(capture.lines().size() == 1);
  CHECK(capture.lines()[0].find(std::string(Audit::k_max_name, 'x') + "...:") != std::string::npos);
  CHECK(capture.lines()[0].size() < 300);
}

TEST_CASE("the first grant of each token generation per uid and transport is logged at info")
{
  test::LogCapture capture(log::Level::debug);
  Audit audit([] { return k_start; });
  const Caller alice{1000, 100, 11, {}};
  const Caller alice_again{1000, 100, 12, {}};
  const Caller bob{1001, 100, 13, {}};
  audit.granted(alice, Via::socket, "reader", 5, 1795000000);
  audit.granted(alice_again, Via::socket, "reader", 5, 1795000000); // same uid, other process
  audit.granted(alice, Via::http, "reader", 5, 1795000000);
  audit.granted(bob, Via::socket, "reader", 5, 1795000000);
  audit.granted(alice, Via::socket, "deployer", 6, 1795000100);
  REQUIRE(capture.lines().size() == 4);
  CHECK(capture.lines()[0] ==
        "INFO granted: uid 1000 pid 11 via socket profile reader: token generation 5, expires_at 1795000000");
  CHECK(count_containing(capture.lines(), "via http profile reader") == 1);
  CHECK(count_containing(capture.lines(), "uid 1001") == 1);
  CHECK(count_containing(capture.lines(), "profile deployer") == 1);

  audit.granted(alice, Via::socket, "reader", 7, 1795003600); // renewed: logged again
  audit.granted(alice, Via::socket, "reader", 5, 1795000000); // an older one: nothing new
  audit.granted(alice, Via::socket, "reader", 7, 1795003600);
  REQUIRE(capture.lines().size() == 5);
  CHECK(capture.lines()[4].find("generation 7") != std::string::npos);
}

TEST_CASE("grant memory keeps one generation per profile and forgets removed profiles")
{
  test::LogCapture capture(log::Level::warn); // grant lines are info: not written, still remembered
  Audit audit([] { return k_start; });
  for (std::uint64_t generation = 1; generation <= 1000; ++generation) {
    audit.granted(Caller{1, 1, 1, {}}, Via::socket, "reader", generation, 0);
    audit.granted(Caller{1, 1, 1, {}}, Via::socket, "deployer", generation, 0);
  }
  CHECK(audit.profiles_remembered() == 2);
  audit.retain({"reader"});
  CHECK(audit.profiles_remembered() == 1);
  CHECK(capture.lines().empty());
}

TEST_CASE("past its bound, the set of users seen for a token starts again")
{
  test::LogCapture capture(log::Level::info);
  Audit audit([] { return k_start; });
  for (uid_t uid = 0; uid < Audit::k_max_seen; ++uid) {
    audit.granted(Caller{uid, 1, 1, {}}, Via::socket, "reader", 1, 0);
  }
  audit.granted(Caller{0, 1, 1, {}}, Via::socket, "reader", 1, 0); // still remembered
  CHECK(capture.lines().size() == Audit::k_max_seen);
  audit.granted(Caller{Audit::k_max_seen, 1, 1, {}}, Via::socket, "reader", 1, 0); // the set is full: cleared
  audit.granted(Caller{0, 1, 1, {}}, Via::socket, "reader", 1, 0);                  // so logged again
  CHECK(capture.lines().size() == Audit::k_max_seen + 2);
}
