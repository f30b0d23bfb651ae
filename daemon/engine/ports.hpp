#pragma once

// The engine's view of the world: a clock, timers, randomness and the two
// upstream calls. The daemon plugs in Asio timers and the libcurl clients
// (daemon/upstream, daemon/app); unit tests plug in simulated time and a
// scripted upstream. Nothing here does I/O.

#include "proto/secret.hpp"

#include <tl/expected.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace iamtok::engine {

using Duration = std::chrono::nanoseconds;

// CLOCK_BOOTTIME: keeps counting while the VM is paused or suspended, so a
// token's remaining validity is never overestimated after a resume.
struct BootClock
{
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<BootClock>;
  static constexpr bool is_steady = true;
  static time_point now() noexcept;
};
using TimePoint = BootClock::time_point;

class Clock
{
public:
  virtual ~Clock() = default;
  // Time on CLOCK_BOOTTIME (or simulated time in tests).
  virtual TimePoint now() const = 0;
  // Wall-clock Unix time in seconds, used only to report expires_at.
  virtual std::int64_t unix_now() const = 0;
};

using TimerId = std::uint64_t;

class Timers
{
public:
  virtual ~Timers() = default;
  // Calls `fire` once, `after` from now, unless cancelled first. Never calls
  // it from inside start().
  virtual TimerId start(Duration after, std::function<void()> fire) = 0;
  // Cancels a pending timer; a no-op for one that fired or is unknown.
  virtual void cancel(TimerId id) = 0;
};

class Random
{
public:
  virtual ~Random() = default;
  // A uniformly distributed number in [0, 1).
  virtual double uniform() = 0;
};

// How an upstream call failed.
enum class Failure {
  transport, // connect refused/reset, DNS, TLS: no HTTP reply
  timeout,   // no (complete) reply within the deadline
  http,      // an HTTP error status with or without a parsable error body
  malformed, // a 2xx reply that is not the documented JSON
  source,    // the CR-token source itself (file missing/empty)
};
inline constexpr std::size_t k_failure_count = 5;
// "transport", "timeout", "http", "malformed" or "source".
std::string_view to_string(Failure failure);

struct UpstreamError
{
  Failure failure = Failure::transport;
  int http_status = 0;     // 0 when there was no HTTP reply
  std::string code;        // IAM errorCode or IMDS errors[0].code, as sent
  std::string request_id;  // IAM context.requestId or IMDS trace (else the
                           // Transaction-Id / X-Request-Id header)
  std::string message;     // for operators; never holds a token
  std::optional<std::chrono::seconds> retry_after; // from Retry-After
  // True for answers that will not heal by retrying (400/401/403 at IAM,
  // IMDS 4xx, any 3xx, a certificate that does not verify): retried only at
  // the backoff cap.
  bool definitive = false;
  // True when the CR token itself was rejected (HTTP 401: BXNIM0407E,
  // unauthenticated): the engine drops it and retries once with a new one.
  bool cr_token_rejected = false;
};

// One line for logs, status and error replies: "HTTP 400 BXNIM0398E
// request_id abc: message", the parts that are set; the kind of failure when
// there is no message.
std::string describe(const UpstreamError& error);

struct IssuedToken
{
  IssuedToken() = default;
  IssuedToken(Secret issued, std::chrono::seconds lifetime) : token(std::move(issued)), expires_in(lifetime) {}

  Secret token;
  // The reply's expires_in (0 for a file CR token: unknown). The engine
  // counts the lifetime from when it sent the request.
  std::chrono::seconds expires_in{0};
  // exp - iat when the token is a JWT carrying both: the engine takes the
  // smaller of this and expires_in.
  std::optional<std::chrono::seconds> jwt_lifetime;
  // The JWT's iat (Unix seconds), if any: only to warn about clock skew.
  std::optional<std::int64_t> issued_at;
};

using UpstreamResult = tl::expected<IssuedToken, UpstreamError>;
using UpstreamCallback = std::function<void(UpstreamResult)>;

// Which trusted profile to ask for: one or more of these, sent as given.
struct ProfileTarget
{
  std::string id;
  std::string name;
  std::string crn;
  friend bool operator==(const ProfileTarget&, const ProfileTarget&) = default;
};

class Upstream
{
public:
  virtual ~Upstream() = default;
  // True when the CR token is read from a file that must be re-read for every
  // exchange (pod source): the engine then never caches it.
  virtual bool cr_token_per_exchange() const = 0;
  // Gets a CR token (IMDS instance identity token, or the projected file).
  // Calls `done` exactly once, never from inside this call.
  virtual void fetch_cr_token(UpstreamCallback done) = 0;
  // Exchanges the CR token for an access token of `profile` (at IAM, or at
  // IMDS iam_token). Calls `done` exactly once, never from inside this call.
  virtual void exchange(const ProfileTarget& profile, const Secret& cr_token,
                        UpstreamCallback done) = 0;
};

} // namespace iamtok::engine
