#pragma once

// The SDK endpoint's routes (docs/http.md), apart from the TCP transport: a
// parsed request and the caller's identity in, a response out. IAM style
// (POST /identity/token, what ContainerAuthenticator sends), IMDS style (PUT
// .../token mints an opaque handle bound to the caller's uid; POST
// .../iam_token(s) trades it for a token), /healthz, /readyz, /metrics.
// Tokens come from Dispatcher::grant, the authorization the Unix socket uses.
// Single-threaded like the engine; no Asio.

#include "daemon/engine/engine.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/server/dispatch.hpp"
#include "http/message.hpp"

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace iamtok::http {

using WallClock = std::chrono::system_clock;

// Where the endpoint's time and random bytes come from (tests inject both).
struct RoutePorts
{
  std::function<WallClock::time_point()> now = [] { return WallClock::now(); };
  // Fills the span with unpredictable bytes (getrandom by default).
  std::function<void(std::span<unsigned char>)> random;
};

// The IMDS-style handles: opaque random strings bound to a uid and an expiry,
// never a real token. Bounded: at most k_per_uid live handles per uid (a new
// one replaces that uid's oldest) and k_max in all (past it minting fails
// until expired ones are swept).
class HandleTable
{
public:
  static constexpr std::size_t k_per_uid = 64;
  static constexpr std::size_t k_max = 16384;

  // Stores `handle` for `uid` until `expires`; false when the table is full.
  bool add(std::string handle, uid_t uid, WallClock::time_point expires, WallClock::time_point now);

  // True if `handle` was minted for `uid` and has not expired at `now`.
  bool valid(std::string_view handle, uid_t uid, WallClock::time_point now) const;

  // Drops every handle expired at `now`.
  void sweep(WallClock::time_point now);

  std::size_t size() const noexcept { return m_handles.size(); }

private:
  struct Entry
  {
    uid_t uid = 0;
    WallClock::time_point expires;
    std::uint64_t order = 0; // minting order, to find a uid's oldest
  };
  std::map<std::string, Entry, std::less<>> m_handles;
  std::map<uid_t, std::size_t> m_per_uid;
  std::uint64_t m_next = 0;
  WallClock::time_point m_last_sweep{};
};

// What the routes answered, for the request counters: the op it counts as
// (token for both token routes, ping for /healthz, status for /readyz,
// metrics for /metrics, none otherwise) and the error code, if any.
struct Counted
{
  std::optional<proto::Op> op;
  std::optional<proto::ErrorCode> error;
};

class Routes
{
public:
  using Done = std::function<void(Response)>;

  // `dispatcher` (made with Via::http) authorizes and hands out tokens;
  // `engine` gives /readyz its states. Both must outlive the Routes.
  Routes(server::Dispatcher& dispatcher, engine::Engine& engine, RoutePorts ports = {});

  // Answers `request` from `caller` (nullptr: the connection's owner could
  // not be found: 403) by calling `done` exactly once, possibly from inside
  // this call. Checks, in order: Host (a loopback literal or localhost, with
  // or without a port, else 403), Origin (present: 403), the caller, the
  // path (404) and method (405 with Allow), then the route's own rules.
  void handle(const Request& request, const server::Caller* caller, Done done);

  // Requests answered so far, by op and result (the listener adds framing
  // errors and busy refusals through count()).
  const metrics::RequestCounts& request_counts() const noexcept { return m_counts; }
  void count(Counted counted) noexcept { m_counts.add(counted.op, counted.error); }

  // Handles alive now (for tests of the bound).
  std::size_t handles() const noexcept { return m_handles.size(); }

private:
  // A route's answer and the error code it counts as (nullopt: ok).
  using Finish = std::function<void(std::optional<proto::ErrorCode>, Response)>;

  void iam_token(const Request& request, const server::Caller& caller, Finish done);
  void imds_handle(const Request& request, const server::Caller& caller, Finish done);
  void imds_iam_token(const Request& request, const server::Caller& caller, Finish done);
  std::string random_hex(std::size_t bytes);
  // A request id in UUID v4 form: 8 random bytes drawn once, then a counter
  // (unique, not secret, and no system call on the hot path).
  std::string uuid();

  server::Dispatcher& m_dispatcher;
  engine::Engine& m_engine;
  RoutePorts m_ports;
  HandleTable m_handles;
  metrics::RequestCounts m_counts;
  std::array<unsigned char, 8> m_id_prefix{};
  std::uint64_t m_id_counter = 0;
};

// A Host header value the endpoint accepts: "localhost", an IPv4 127/8
// literal or "[::1]", each with or without ":PORT".
bool is_loopback_host_header(std::string_view host);

// The configured profiles `selector` picks, in config order (docs/http.md,
// "Profile selection"): an id matches profile_id, or a profile_crn ending in
// ":profile:<id>"; a crn matches profile_crn, or a profile_id equal to its
// last segment; a name matches profile_name, else (when none does) the local
// name. Unset selector fields do not constrain; an all-unset selector picks
// the profiles configured with no trusted-profile field. Several set fields
// must all match.
struct Selector
{
  std::optional<std::string> id;
  std::optional<std::string> crn;
  std::optional<std::string> name;
};
std::vector<const config::Profile*> select_profiles(const config::Config& config, const Selector& selector);

// "2026-11-23T12:00:00Z".
std::string rfc3339(WallClock::time_point t);

} // namespace iamtok::http
