#pragma once

// The load generator of the benchmark (docs/benchmarks.md): N connections to a Unix
// socket (NDJSON request lines) or to a loopback HTTP/1.1 server (one request
// repeated on keep-alive connections), each keeping `depth` requests in
// flight, bounded by a request count and a duration; records every request's
// latency.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace iamtok::bench {

struct LoadOptions
{
  std::string socket_path;
  std::string request_line = R"({"op":"token","profile":"reader"})"; // without '\n'
  // HTTP instead of the Unix socket when http_port is set: `http_request` is
  // sent as it is (a whole request, keep-alive); a 200 reply counts as ok.
  std::string http_host = "127.0.0.1";
  std::uint16_t http_port = 0;
  std::string http_request;
  std::uint32_t connections = 1;
  std::uint32_t depth = 1;                      // requests in flight per connection
  std::uint64_t requests = 100'000;             // total bound
  std::chrono::milliseconds duration{5'000};    // stop issuing after this long
  std::chrono::milliseconds hold{0};            // after the run, keep connections open (idle)
  std::chrono::milliseconds grace{10'000};      // after the duration, wait this long for replies
};

struct LoadResult
{
  std::uint64_t sent = 0;
  std::uint64_t ok = 0;                // replies starting with {"ok":true (HTTP: status 200)
  std::uint64_t errors = 0;            // other replies, lost replies, failed connections
  std::uint32_t connected = 0;
  double seconds = 0;                  // first send to last reply
  std::size_t reply_bytes = 0;         // size of the first reply ('\n' or HTTP head included)
  std::vector<std::int64_t> latencies_ns; // sorted ascending

  // Replies per second (ok and error replies alike); 0 before any.
  double throughput() const;
  // The q-quantile (0..1) of the latencies in microseconds; 0 with none.
  double quantile_us(double q) const;
};

// Connects every connection first, then starts all of them at once (so N
// connections with one request each is N concurrent requests). `on_hold` is
// called once when the run is over and the connections are held idle.
// Returns the result; connection failures count as errors.
LoadResult run_load(const LoadOptions& options, void (*on_hold)() = nullptr);

// An IAM-style token request, as IBM's ContainerAuthenticator sends it:
// POST /identity/token with the CR-token grant, a placeholder cr_token and
// `profile_id`, for the server at `host`:`port` (keep-alive).
std::string iam_token_request(const std::string& host, std::uint16_t port, const std::string& profile_id);

} // namespace iamtok::bench
