#include "daemon/metrics/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <fmt/format.h>

#include <algorithm>

namespace iamtok::metrics {

namespace {

constexpr std::array<std::string_view, RequestCounts::k_ops> k_op_names = {"token", "status", "ping", "watch",
                                                                            "metrics", "none"};
constexpr std::array<std::string_view, RequestCounts::k_results> k_result_names = {
  "ok", "bad_request", "request_too_large", "unknown_profile", "forbidden", "busy", "unavailable", "internal"};
constexpr std::array<engine::State, engine::k_state_count> k_states = {
  engine::State::pending, engine::State::fresh, engine::State::refreshing, engine::State::stale,
  engine::State::failed};
constexpr std::array<engine::Failure, engine::k_failure_count> k_failures = {
  engine::Failure::transport, engine::Failure::timeout, engine::Failure::http, engine::Failure::malformed,
  engine::Failure::source};

bool holds_valid_token(const engine::ProfileStatus& profile, std::int64_t unix_now)
{
  const bool usable_state = profile.state == engine::State::fresh || profile.state == engine::State::refreshing ||
                            profile.state == engine::State::stale;
  return usable_state && profile.expires_at && *profile.expires_at > unix_now;
}

prometheus::Family<prometheus::Gauge>& gauge(prometheus::Registry& registry, const std::string& name,
                                             const std::string& help)
{
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}

prometheus::Family<prometheus::Counter>& counter(prometheus::Registry& registry, const std::string& name,
                                                 const std::string& help)
{
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

void add_profiles(prometheus::Registry& registry, const Snapshot& snapshot)
{
  auto& valid = gauge(registry, "iamtokend_profile_token_valid",
                      "1 when the profile holds an unexpired access token, else 0");
  auto& expiry = gauge(registry, "iamtokend_profile_token_expiry_timestamp_seconds",
                       "Unix time the profile's cached access token expires (absent before the first token)");
  auto& state = gauge(registry, "iamtokend_profile_state",
                      "1 for the profile's current state (pending, fresh, refreshing, stale, failed), else 0");
  auto& refreshes = counter(registry, "iamtokend_profile_refreshes_total",
                            "Successful token exchanges of the profile");
  auto& failures = counter(registry, "iamtokend_profile_refresh_failures_total",
                           "Failed token attempts of the profile, by reason (transport, timeout, http, "
                           "malformed, source)");
  for (const engine::ProfileStatus& profile : snapshot.engine.profiles) {
    valid.Add({{"profile", profile.name}}).Set(holds_valid_token(profile, snapshot.unix_now) ? 1 : 0);
    if (profile.expires_at) {
      expiry.Add({{"profile", profile.name}}).Set(static_cast<double>(*profile.expires_at));
    }
    for (const engine::State s : k_states) {
      state.Add({{"profile", profile.name}, {"state", std::string(engine::to_string(s))}})
        .Set(profile.state == s ? 1 : 0);
    }
    refreshes.Add({{"profile", profile.name}}).Increment(static_cast<double>(profile.refreshes));
    for (const engine::Failure f : k_failures) {
      failures.Add({{"profile", profile.name}, {"reason", std::string(engine::to_string(f))}})
        .Increment(static_cast<double>(profile.failures_by[static_cast<std::size_t>(f)]));
    }
  }
}

void add_upstream(prometheus::Registry& registry, const UpstreamStats& upstream)
{
  auto& requests = counter(registry, "iamtokend_upstream_requests_total",
                           "Upstream HTTP requests by call and code (HTTP status, or timeout/transport "
                           "when no reply came)");
  auto& durations = prometheus::BuildHistogram()
                      .Name("iamtokend_upstream_request_duration_seconds")
                      .Help("Duration of upstream HTTP requests by call, until the reply or the failure")
                      .Register(registry);
  std::vector<double> increments;
  for (const auto& [call, stats] : upstream.calls()) {
    for (const auto& [code, count] : stats.by_code) {
      requests.Add({{"call", call}, {"code", code}}).Increment(static_cast<double>(count));
    }
    increments.assign(stats.buckets.begin(), stats.buckets.end());
    durations.Add({{"call", call}}, UpstreamStats::bucket_bounds()).ObserveMultiple(increments, stats.sum_seconds);
  }
}

void add_transports(prometheus::Registry& registry, const Snapshot& snapshot)
{
  auto& requests = counter(registry, "iamtokend_requests_total",
                           "Requests answered, by transport (via), op and result (ok or the error code); "
                           "op none when no op could be read");
  auto& connections = gauge(registry, "iamtokend_connections", "Client connections open now, by transport");
  for (const Transport& transport : snapshot.transports) {
    connections.Add({{"via", transport.via}}).Set(static_cast<double>(transport.connections));
    for (std::size_t op = 0; op < RequestCounts::k_ops; ++op) {
      for (std::size_t result = 0; result < RequestCounts::k_results; ++result) {
        const std::uint64_t count = transport.requests.at(op, result);
        if (count != 0) {
          requests
            .Add({{"via", transport.via},
                  {"op", std::string(RequestCounts::op_name(op))},
                  {"result", std::string(RequestCounts::result_name(result))}})
            .Increment(static_cast<double>(count));
        }
      }
    }
  }
}

void add_process(prometheus::Registry& registry, const ProcessStats& process)
{
  const auto set = [&](const char* name, const char* help, const std::optional<double>& value) {
    if (value) {
      gauge(registry, name, help).Add({}).Set(*value);
    }
  };
  if (process.cpu_seconds) {
    counter(registry, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
      .Add({})
      .Increment(*process.cpu_seconds);
  }
  set("process_open_fds", "Number of open file descriptors.", process.open_fds);
  set("process_max_fds", "Maximum number of open file descriptors.", process.max_fds);
  set("process_virtual_memory_bytes", "Virtual memory size in bytes.", process.virtual_bytes);
  set("process_resident_memory_bytes", "Resident memory size in bytes.", process.resident_bytes);
  set("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
      process.start_time_seconds);
}

} // namespace

std::string_view RequestCounts::op_name(std::size_t op) noexcept
{
  return k_op_names[std::min(op, k_ops - 1)];
}

std::string_view RequestCounts::result_name(std::size_t result) noexcept
{
  return k_result_names[std::min(result, k_results - 1)];
}

const std::vector<double>& UpstreamStats::bucket_bounds()
{
  // From a fast loopback answer to the longest refresh.timeout_s.
  static const std::vector<double> bounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  return bounds;
}

void UpstreamStats::record(std::string_view call, std::string_view code, std::chrono::nanoseconds duration)
{
  auto it = m_calls.find(call);
  if (it == m_calls.end()) {
    it = m_calls.emplace(std::string(call), Call{}).first;
    it->second.buckets.assign(bucket_bounds().size() + 1, 0);
  }
  Call& stats = it->second;
  auto code_it = stats.by_code.find(code);
  if (code_it == stats.by_code.end()) {
    code_it = stats.by_code.emplace(std::string(code), 0).first;
  }
  ++code_it->second;
  const double seconds = std::chrono::duration<double>(duration).count();
  const auto& bounds = bucket_bounds();
  const auto bucket = static_cast<std::size_t>(std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin());
  ++stats.buckets[bucket];
  stats.sum_seconds += seconds;
}

std::string exposition(const Snapshot& snapshot)
{
  prometheus::Registry registry;
  gauge(registry, "iamtokend_build_info", "Always 1; the version label says which iamtokend runs")
    .Add({{"version", snapshot.version}})
    .Set(1);
  add_profiles(registry, snapshot);
  if (snapshot.engine.source.expires_at) {
    gauge(registry, "iamtokend_cr_token_expiry_timestamp_seconds",
          "Unix time the cached compute-resource token expires (absent when none is cached)")
      .Add({})
      .Set(static_cast<double>(*snapshot.engine.source.expires_at));
  }
  add_upstream(registry, snapshot.upstream);
  add_transports(registry, snapshot);
  add_process(registry, snapshot.process);
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

} // namespace iamtok::metrics
