// Operability against the real iamtokend and iamtoken-sim: the metrics op and
// `iamtoken-get --metrics` checked by promtool, the audit trail in the
// daemon's stderr, and the `--check` / `--status` probes' exit codes.
// Tokens are compared, never printed.

#include "tests/e2e/daemon_fixture.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <sstream>

using namespace iamtok;
using namespace iamtok::test;
using namespace std::chrono_literals;

namespace {

// A profile the simulator does not link to the instance: IAM answers 400.
constexpr std::string_view k_unlinked_id = "Profile-00000000-0000-4000-8000-00000000000f";

DaemonConfig two_profiles()
{
  DaemonConfig config;
  config.exchange = "iam"; // the IAM grant: its calls and error codes are what these checks read
  config.timeout_s = 2; // every attempt ends within 2 s
  config.socket_mode = "0666";
  config.profiles = fmt::format(R"([{{"name":"reader","profile_id":"{}"}},{{"name":"bad","profile_id":"{}"}}])",
                                k_reader_id, k_unlinked_id);
  return config;
}

// Starts the daemon and waits until reader is fresh and bad has failed (the
// first attempt of each ends within timeout_s; 10 s leaves room for a loaded host).
void start_settled(DaemonFixture& fixture)
{
  fixture.start(two_profiles());
  REQUIRE(eventually([&] { return fixture.state_of("reader") == "fresh" && fixture.state_of("bad") == "failed"; },
                     10s));
}

// The value of the series line starting with `series` followed by a space, or nullopt.
std::optional<double> value_of(const std::string& text, const std::string& series)
{
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 && line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return std::nullopt;
}

std::vector<std::string> lines_with(const std::string& text, std::string_view needle)
{
  std::vector<std::string> found;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) {
      found.push_back(line);
    }
  }
  return found;
}

bool leaks(const std::string& text, const std::vector<std::string>& tokens)
{
  for (const auto& token : tokens) {
    if (!token.empty() && text.find(token) != std::string::npos) {
      return true;
    }
  }
  return text.find("eyJ") != std::string::npos;
}

} // namespace

TEST_CASE("iamtoken-get --metrics prints an exposition promtool accepts, with the daemon's figures", "[operations]")
{
  DaemonFixture fixture;
  start_settled(fixture);
  const auto first = fixture.token("reader");
  const auto second = fixture.token("reader");
  REQUIRE(first.is_token());
  REQUIRE(second.is_token());
  CHECK(fixture.token("nope").error_code() == proto::ErrorCode::unknown_profile);

  const auto result = fixture.get({"--metrics"});
  REQUIRE(result.exit_code == 0);
  CHECK(result.err.empty());
  const std::string& text = result.out;

  const auto path = (fixture.dir() / "metrics.txt").string();
  std::ofstream(path) << text;
  const auto promtool = run_program("/bin/sh", {"-c", "promtool check metrics < " + path});
  INFO(promtool.out << promtool.err);
  CHECK(promtool.exit_code == 0);

  CHECK(text.find("iamtokend_build_info{version=\"") != std::string::npos);
  CHECK(value_of(text, R"(iamtokend_profile_token_valid{profile="reader"})") == 1);
  CHECK(value_of(text, R"(iamtokend_profile_token_valid{profile="bad"})") == 0);
  CHECK(value_of(text, R"(iamtokend_profile_token_expiry_timestamp_seconds{profile="reader"})") ==
        static_cast<double>(first.expires_at));
  CHECK(value_of(text, R"(iamtokend_profile_state{profile="bad",state="failed"})") == 1);
  CHECK(value_of(text, R"(iamtokend_profile_state{profile="reader",state="fresh"})") == 1);
  CHECK(value_of(text, R"(iamtokend_profile_refreshes_total{profile="reader"})") == 1);
  CHECK(value_of(text, R"(iamtokend_profile_refresh_failures_total{profile="bad",reason="http"})").value_or(0) >= 1);
  CHECK(value_of(text, R"(iamtokend_profile_refresh_failures_total{profile="reader",reason="http"})") == 0);
  CHECK(value_of(text, R"(iamtokend_upstream_requests_total{call="imds_token",code="200"})") == 1);
  CHECK(value_of(text, R"(iamtokend_upstream_requests_total{call="iam_token",code="200"})") == 1);
  CHECK(value_of(text, R"(iamtokend_upstream_requests_total{call="iam_token",code="400"})").value_or(0) >= 1);
  CHECK(value_of(text, R"(iamtokend_upstream_request_duration_seconds_count{call="imds_token"})") == 1);
  CHECK(value_of(text, R"(iamtokend_requests_total{op="token",result="ok",via="socket"})") == 2);
  CHECK(value_of(text, R"(iamtokend_requests_total{op="token",result="unknown_profile",via="socket"})") == 1);
  CHECK(value_of(text, R"(iamtokend_connections{via="socket"})") == 1); // this request's own
  CHECK(value_of(text, "iamtokend_cr_token_expiry_timestamp_seconds").value_or(0) > 0);
  CHECK(value_of(text, "process_open_fds").value_or(0) >= 3);
  CHECK(value_of(text, "process_resident_memory_bytes").value_or(0) > 0);
  CHECK(value_of(text, "process_start_time_seconds").value_or(0) > 1'000'000'000);
  CHECK_FALSE(leaks(text, {std::string(first.access_token.expose())}));

  // The socket op itself: one JSON line with the same text format.
  const auto line = fixture.request(R"({"op":"metrics","id":1})");
  const auto parsed = proto::parse_metrics_reply(line);
  REQUIRE(parsed);
  CHECK(value_of(*parsed, R"(iamtokend_requests_total{op="metrics",result="ok",via="socket"})") == 1);
}

TEST_CASE("the audit trail logs denials and the first grant of each token per user, never a token", "[operations]")
{
  DaemonFixture fixture;
  start_settled(fixture);
  std::vector<std::string> tokens;
  for (int i = 0; i < 3; ++i) {
    const auto reply = fixture.token("reader");
    REQUIRE(reply.is_token());
    tokens.emplace_back(reply.access_token.expose());
  }
  CHECK(fixture.token("nope").error_code() == proto::ErrorCode::unknown_profile);

  const std::string log = fixture.daemon().stderr_text();
  const auto grants = lines_with(log, "granted: ");
  REQUIRE(grants.size() == 1); // three requests, one token generation, one user
  CHECK(grants[0].find(fmt::format("INFO granted: uid {} pid ", ::geteuid())) == 0);
  CHECK(grants[0].find(" via socket profile reader: token generation ") != std::string::npos);
  const auto denials = lines_with(log, "denied: ");
  REQUIRE(denials.size() == 1);
  CHECK(denials[0].find(fmt::format("WARN denied: uid {} pid ", ::geteuid())) == 0);
  CHECK(denials[0].find(" via socket profile nope: unknown_profile (no such profile)") != std::string::npos);
  CHECK_FALSE(leaks(log, tokens));
}

TEST_CASE("denials are logged at most 10 a second, then with the count of those left out", "[operations]")
{
  DaemonFixture fixture;
  start_settled(fixture);
  // 30 refused requests pipelined on one connection.
  const int fd = connect_unix(fixture.socket_path());
  REQUIRE(fd >= 0);
  std::string burst;
  for (int i = 0; i < 30; ++i) {
    burst += R"({"op":"token","profile":"nope"})";
    burst += '\n';
  }
  REQUIRE(write_all(fd, burst));
  for (int i = 0; i < 30; ++i) {
    REQUIRE(read_line(fd));
  }
  ::close(fd);
  const auto logged = lines_with(fixture.daemon().stderr_text(), "denied: ");
  // However slowly they were answered, the first 10 were written.
  REQUIRE(logged.size() >= 10);
  REQUIRE(logged.size() <= 30);
  const std::size_t left_out = 30 - logged.size();

  // One second after the last of them, the window has room again (the
  // limiter's own period; nothing else is waited for).
  std::this_thread::sleep_for(1100ms);
  CHECK(fixture.token("nope").error_code() == proto::ErrorCode::unknown_profile);
  const auto after = lines_with(fixture.daemon().stderr_text(), "denied: ");
  REQUIRE(after.size() == logged.size() + 1);
  if (left_out > 0) {
    CHECK(after.back().find(fmt::format("; {} more denial line(s) suppressed before this", left_out)) !=
          std::string::npos);
  } else {
    CHECK(after.back().find("suppressed") == std::string::npos);
  }
}

TEST_CASE("iamtoken-get --check exits 0, 75, 78 or 69, and --status 0 whenever the daemon answers", "[operations]")
{
  DaemonFixture fixture;
  start_settled(fixture);

  const auto all = fixture.get({"--check"});
  CHECK(all.exit_code == 75);
  CHECK(all.out.empty());
  const auto failing = lines_with(all.err, "iamtoken-get: ");
  REQUIRE(failing.size() == 1);
  CHECK(failing[0].find("iamtoken-get: not_ready: profile bad: no valid token: failed (last error: HTTP 400 "
                        "BXNIM0398E: ") == 0);

  const auto reader = fixture.get({"--check", "-p", "reader"});
  CHECK(reader.exit_code == 0);
  CHECK(reader.out.empty());
  CHECK(reader.err.empty());
  CHECK(fixture.get({"--check", "-p", "reader", "-p", "bad"}).exit_code == 75);
  CHECK(fixture.get({"--check", "-p", "bad", "--quiet"}).err.empty());

  const auto unknown = fixture.get({"--check", "-p", "reader", "-p", "nope"});
  CHECK(unknown.exit_code == 78);
  CHECK(unknown.err.find("iamtoken-get: unknown_profile: profile nope: no such profile") == 0);

  // Liveness does not depend on IAM: a profile without a token does not matter.
  CHECK(fixture.get({"--status"}).exit_code == 0);

  const auto missing = (fixture.dir() / "missing.sock").string();
  CHECK(run_program(IAMTOKEN_GET_BINARY, {"--check", "--socket", missing}).exit_code == 69);
  CHECK(run_program(IAMTOKEN_GET_BINARY, {"--status", "--socket", missing}).exit_code == 69);
  CHECK(run_program(IAMTOKEN_GET_BINARY, {"--metrics", "--socket", missing}).exit_code == 69);
}

TEST_CASE("iamtoken-get --check exits 77 for a forbidden profile, and --metrics serves any caller", "[operations]")
{
  // iamtoken-get runs as uid 65534 from a copy that user may execute (the
  // build tree may be in a private directory), on a socket it may reach.
  DaemonFixture fixture;
  const ExecutableCopy client(IAMTOKEN_GET_BINARY);
  if (const auto problem = other_user_run_problem(client, {{fixture.dir().path().string(), X_OK}}); !problem.empty()) {
    WARN("cannot run iamtoken-get as another user (" << problem << "); skipped");
    return;
  }
  DaemonConfig config = two_profiles();
  config.profiles = fmt::format(R"([{{"name":"reader","profile_id":"{}","allow":{{"uids":[12345]}}}},)"
                                R"({{"name":"deployer","profile_name":"deployer"}}])",
                                k_reader_id);
  fixture.start(config);
  REQUIRE(eventually([&] { return fixture.state_of("reader") == "fresh" && fixture.state_of("deployer") == "fresh"; },
                     10s));

  const auto forbidden = fixture.get_as(k_other_uid, client.path(), {"--check", "-p", "reader"});
  CHECK(forbidden.exit_code == 77);
  CHECK(forbidden.err.find("iamtoken-get: forbidden: profile reader: ") == 0);
  // Without names: what this user may use, which is fresh.
  CHECK(fixture.get_as(k_other_uid, client.path(), {"--check"}).exit_code == 0);

  const auto log = fixture.daemon().stderr_text();
  const auto denials = lines_with(log, "denied: uid 65534 pid ");
  REQUIRE(denials.size() == 1);
  CHECK(denials[0].find(" via socket profile reader: forbidden (caller may not use this profile)") !=
        std::string::npos);

  const auto metrics = fixture.get_as(k_other_uid, client.path(), {"--metrics"});
  CHECK(metrics.exit_code == 0);
  CHECK(value_of(metrics.out, R"(iamtokend_requests_total{op="token",result="forbidden",via="socket"})") == 1);
}
