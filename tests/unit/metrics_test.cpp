#include "daemon/metrics/metrics.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <sstream>
#include <string>

using namespace iamtok;
using namespace std::chrono_literals;
using metrics::RequestCounts;
using metrics::Snapshot;
using metrics::UpstreamStats;

namespace {

bool has_line(const std::string& text, const std::string& line)
{
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l == line) {
      return true;
    }
  }
  return false;
}

Snapshot sample()
{
  Snapshot s;
  s.version = "1.2.3";
  s.unix_now = 1'000'000;
  engine::ProfileStatus reader;
  reader.name = "reader";
  reader.state = engine::State::stale;
  reader.expires_at = 1'000'500;
  reader.refreshes = 4;
  reader.failures = 3;
  reader.failures_by[static_cast<std::size_t>(engine::Failure::timeout)] = 2;
  reader.failures_by[static_cast<std::size_t>(engine::Failure::http)] = 1;
  engine::ProfileStatus deployer;
  deployer.name = "deployer";
  deployer.state = engine::State::failed;
  s.engine.profiles = {reader, deployer};
  s.engine.source.expires_at = 1'000'200;
  metrics::Transport socket;
  socket.via = "socket";
  socket.connections = 3;
  socket.requests.add(proto::Op::token, std::nullopt);
  socket.requests.add(proto::Op::token, std::nullopt);
  socket.requests.add(proto::Op::token, proto::ErrorCode::forbidden);
  socket.requests.add(std::nullopt, proto::ErrorCode::request_too_large);
  s.transports.push_back(socket);
  s.upstream.record("iam_token", "200", 3ms);
  s.upstream.record("iam_token", "200", 40ms);
  s.upstream.record("iam_token", "timeout", 10s);
  s.process.open_fds = 12;
  s.process.resident_bytes = 4096;
  s.process.cpu_seconds = 1.5;
  return s;
}

} // namespace

TEST_CASE("the exposition has build info, profile validity, expiry and state")
{
  const std::string text = metrics::exposition(sample());
  CHECK(has_line(text, R"(iamtokend_build_info{version="1.2.3"} 1)"));
  CHECK(has_line(text, R"(iamtokend_profile_token_valid{profile="reader"} 1)"));
  CHECK(has_line(text, R"(iamtokend_profile_token_valid{profile="deployer"} 0)"));
  CHECK(has_line(text, R"(iamtokend_profile_token_expiry_timestamp_seconds{profile="reader"} 1000500)"));
  CHECK(text.find(R"(iamtokend_profile_token_expiry_timestamp_seconds{profile="deployer"})") == std::string::npos);
  CHECK(has_line(text, R"(iamtokend_profile_state{profile="reader",state="stale"} 1)"));
  CHECK(has_line(text, R"(iamtokend_profile_state{profile="reader",state="fresh"} 0)"));
  CHECK(has_line(text, R"(iamtokend_profile_state{profile="deployer",state="failed"} 1)"));
  CHECK(has_line(text, R"(iamtokend_cr_token_expiry_timestamp_seconds 1000200)"));
  CHECK(has_line(text, "# TYPE iamtokend_profile_state gauge"));
}

TEST_CASE("a token that expired is not valid even in a usable state")
{
  Snapshot s = sample();
  s.unix_now = 1'000'500; // the reader's expiry
  CHECK(has_line(metrics::exposition(s), R"(iamtokend_profile_token_valid{profile="reader"} 0)"));
}

TEST_CASE("the exposition counts refreshes and failures by reason")
{
  const std::string text = metrics::exposition(sample());
  CHECK(has_line(text, R"(iamtokend_profile_refreshes_total{profile="reader"} 4)"));
  CHECK(has_line(text, R"(iamtokend_profile_refresh_failures_total{profile="reader",reason="timeout"} 2)"));
  CHECK(has_line(text, R"(iamtokend_profile_refresh_failures_total{profile="reader",reason="http"} 1)"));
  CHECK(has_line(text, R"(iamtokend_profile_refresh_failures_total{profile="reader",reason="source"} 0)"));
  CHECK(has_line(text, "# TYPE iamtokend_profile_refreshes_total counter"));
}

TEST_CASE("the exposition counts requests by transport, op and result, and open connections")
{
  const std::string text = metrics::exposition(sample());
  CHECK(has_line(text, R"(iamtokend_requests_total{op="token",result="ok",via="socket"} 2)"));
  CHECK(has_line(text, R"(iamtokend_requests_total{op="token",result="forbidden",via="socket"} 1)"));
  CHECK(has_line(text, R"(iamtokend_requests_total{op="none",result="request_too_large",via="socket"} 1)"));
  CHECK(text.find(R"(result="busy")") == std::string::npos); // only what happened
  CHECK(has_line(text, R"(iamtokend_connections{via="socket"} 3)"));
}

TEST_CASE("upstream requests are counted by call and code with a duration histogram")
{
  const std::string text = metrics::exposition(sample());
  CHECK(has_line(text, R"(iamtokend_upstream_requests_total{call="iam_token",code="200"} 2)"));
  CHECK(has_line(text, R"(iamtokend_upstream_requests_total{call="iam_token",code="timeout"} 1)"));
  CHECK(has_line(text, R"(iamtokend_upstream_request_duration_seconds_count{call="iam_token"} 3)"));
  CHECK(has_line(text, R"(iamtokend_upstream_request_duration_seconds_bucket{call="iam_token",le="0.005"} 1)"));
  CHECK(has_line(text, R"(iamtokend_upstream_request_duration_seconds_bucket{call="iam_token",le="0.05"} 2)"));
  CHECK(has_line(text, R"(iamtokend_upstream_request_duration_seconds_bucket{call="iam_token",le="5"} 2)"));
  CHECK(has_line(text, R"(iamtokend_upstream_request_duration_seconds_bucket{call="iam_token",le="10"} 3)"));
  CHECK(has_line(text, R"(iamtokend_upstream_request_duration_seconds_bucket{call="iam_token",le="+Inf"} 3)"));
  CHECK(has_line(text, "# TYPE iamtokend_upstream_request_duration_seconds histogram"));
}

TEST_CASE("a duration on a bucket bound falls in that bucket")
{
  UpstreamStats stats;
  stats.record("imds_token", "200", 100ms);
  const auto& call = stats.calls().at("imds_token");
  const auto& bounds = UpstreamStats::bucket_bounds();
  const auto index = static_cast<std::size_t>(std::find(bounds.begin(), bounds.end(), 0.1) - bounds.begin());
  CHECK(call.buckets[index] == 1);
  CHECK(call.buckets.size() == bounds.size() + 1);
}

TEST_CASE("process gauges appear when known")
{
  const std::string text = metrics::exposition(sample());
  CHECK(has_line(text, "process_open_fds 12"));
  CHECK(has_line(text, "process_resident_memory_bytes 4096"));
  CHECK(has_line(text, "process_cpu_seconds_total 1.5"));
  CHECK(text.find("process_max_fds") == std::string::npos);
}

TEST_CASE("every request op and result has its label name")
{
  CHECK(RequestCounts::op_name(static_cast<std::size_t>(proto::Op::metrics)) == "metrics");
  CHECK(RequestCounts::op_name(RequestCounts::k_ops - 1) == "none");
  for (std::size_t code = 0; code + 1 < RequestCounts::k_results; ++code) {
    CHECK(RequestCounts::result_name(code + 1) == proto::to_string(static_cast<proto::ErrorCode>(code)));
  }
  CHECK(RequestCounts::result_name(0) == "ok");
}

TEST_CASE("/proc/self/stat is parsed from after the command name")
{
  // pid (comm with ") x") state ppid ... : utime 250, stime 50, starttime 1000, vsize, rss 3 pages.
  const std::string stat = "1234 (iam tok) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1000 "
                           "8192000 3 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  const auto stats = metrics::parse_proc_stat(stat, 100, 4096, 1'700'000'000);
  REQUIRE(stats.cpu_seconds);
  CHECK(*stats.cpu_seconds == Approx(3.0));
  REQUIRE(stats.start_time_seconds);
  CHECK(*stats.start_time_seconds == Approx(1'700'000'010.0));
  REQUIRE(stats.resident_bytes);
  CHECK(*stats.resident_bytes == Approx(3 * 4096.0));
  REQUIRE(stats.virtual_bytes);
  CHECK(*stats.virtual_bytes == Approx(8192000.0));

  const auto no_boot = metrics::parse_proc_stat(stat, 100, 4096, std::nullopt);
  CHECK_FALSE(no_boot.start_time_seconds);
  CHECK_FALSE(metrics::parse_proc_stat("garbage", 100, 4096, 1).cpu_seconds);
  CHECK_FALSE(metrics::parse_proc_stat("1 (x) S 1 2", 100, 4096, 1).cpu_seconds);
}

TEST_CASE("the boot time is read from /proc/stat")
{
  CHECK(metrics::parse_boot_time("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n") == 1'700'000'000);
  CHECK_FALSE(metrics::parse_boot_time("cpu 1\n"));
  CHECK_FALSE(metrics::parse_boot_time("btime x\n"));
}

TEST_CASE("this process's stats are readable")
{
  const auto stats = metrics::read_process_stats();
  CHECK(stats.open_fds.value_or(0) >= 3);
  CHECK(stats.resident_bytes.value_or(0) > 0);
  CHECK(stats.start_time_seconds.value_or(0) > 1'000'000'000);
}
