#pragma once

// The daemon's metrics as Prometheus text exposition (format 0.0.4). Counting
// on the hot path is a plain integer increment (RequestCounts, UpstreamStats);
// exposition() builds prometheus-cpp families from a Snapshot only when a
// scrape asks, so nothing here costs a request anything. Every series and its
// labels are listed in docs/operations.md. Single-threaded like the engine.

#include "daemon/engine/engine.hpp"
#include "proto/codec.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace iamtok::metrics {

// Requests answered on one transport, by op and result. The op is "none" when
// no op could be read (not JSON, too long, or a connection refused as busy);
// the result is "ok" or the error code of the reply.
class RequestCounts
{
public:
  static constexpr std::size_t k_ops = 6;     // proto::Op values + none
  static constexpr std::size_t k_results = 8; // ok + proto::ErrorCode values

  // Counts one answered request; `op` nullopt: none; `error` nullopt: ok.
  void add(std::optional<proto::Op> op, std::optional<proto::ErrorCode> error) noexcept
  {
    const std::size_t o = op ? static_cast<std::size_t>(*op) : k_ops - 1;
    const std::size_t r = error ? static_cast<std::size_t>(*error) + 1 : 0;
    ++m_counts[o][r];
  }

  // The count for (op, result) by index: op k_ops - 1 is none, result 0 is ok.
  std::uint64_t at(std::size_t op, std::size_t result) const noexcept { return m_counts[op][result]; }

  // "token" .. "metrics", "none"; "ok", "bad_request" .. "internal".
  static std::string_view op_name(std::size_t op) noexcept;
  static std::string_view result_name(std::size_t result) noexcept;

private:
  std::array<std::array<std::uint64_t, k_results>, k_ops> m_counts{};
};

// Upstream HTTP requests by call ("imds_token", "iam_token",
// "imds_iam_token"): a count per code (the HTTP status, or "timeout" /
// "transport" when no reply came) and a histogram of their durations.
class UpstreamStats
{
public:
  // Upper bounds (seconds) of the duration histogram's buckets (+Inf implied).
  static const std::vector<double>& bucket_bounds();

  void record(std::string_view call, std::string_view code, std::chrono::nanoseconds duration);

  struct Call
  {
    std::map<std::string, std::uint64_t, std::less<>> by_code;
    std::vector<std::uint64_t> buckets; // per bucket (not cumulative), +Inf last
    double sum_seconds = 0;
  };
  const std::map<std::string, Call, std::less<>>& calls() const noexcept { return m_calls; }

private:
  std::map<std::string, Call, std::less<>> m_calls;
};

// The process_* gauges (unset: could not be read).
struct ProcessStats
{
  std::optional<double> start_time_seconds; // Unix time the process started
  std::optional<double> cpu_seconds;        // user + system
  std::optional<double> resident_bytes;
  std::optional<double> virtual_bytes;
  std::optional<double> open_fds;
  std::optional<double> max_fds;            // the soft RLIMIT_NOFILE
};

// Reads ProcessStats for this process from /proc/self and getrlimit().
ProcessStats read_process_stats();

// Parses the content of /proc/<pid>/stat into cpu_seconds, resident_bytes,
// virtual_bytes and start_time_seconds, given clock ticks per second, the
// page size and the boot time (the btime line of /proc/stat). Fields that
// cannot be read stay unset.
ProcessStats parse_proc_stat(std::string_view stat, long ticks_per_second, long page_size,
                             std::optional<std::int64_t> boot_time);

// The btime value of /proc/stat's content, or nullopt.
std::optional<std::int64_t> parse_boot_time(std::string_view proc_stat);

// One transport's request counters and open connections.
struct Transport
{
  std::string via; // "socket" (later "http")
  RequestCounts requests;
  std::uint64_t connections = 0;
};

struct Snapshot
{
  std::string version;
  engine::Status engine;
  std::int64_t unix_now = 0; // for iamtokend_profile_token_valid
  std::vector<Transport> transports;
  UpstreamStats upstream;
  ProcessStats process;
};

// The text exposition of `snapshot` (every line ends in '\n'; profile names
// and states appear, never a token).
std::string exposition(const Snapshot& snapshot);

} // namespace iamtok::metrics
