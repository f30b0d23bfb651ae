#pragma once

// The token engine (iamtokend(8), DESCRIPTION): per-profile cache, refresh ahead with jitter,
// single flight, backoff, one shared CR token. Plain logic on injected ports
// (ports.hpp); single-threaded: every call and callback on one thread.

#include "daemon/engine/ports.hpp"

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace iamtok::engine {

struct Settings
{
  double at_fraction = 0.8;                     // refresh at this fraction of a lifetime
  std::chrono::seconds min_valid{60};           // default min_valid_s of a request
  std::chrono::seconds timeout{10};             // refresh.timeout_s
};

struct ProfileSpec
{
  std::string name;     // the local handle callers use
  ProfileTarget target; // what is sent upstream
  friend bool operator==(const ProfileSpec&, const ProfileSpec&) = default;
};

struct Grant
{
  Secret access_token;
  std::int64_t expires_at = 0; // Unix seconds (wall clock, for callers)
  std::int64_t expires_in = 0; // seconds left now
  // Tells tokens apart without looking at them: every token the engine
  // caches gets the next number (counting from 1, across all profiles).
  std::uint64_t generation = 0;
};

struct TokenError
{
  enum class Code { unknown_profile, unavailable };
  Code code = Code::unavailable;
  std::string message;                  // never holds a token
  std::int64_t retry_after_s = 0;       // unavailable only
  std::optional<UpstreamError> upstream; // the last upstream failure, if any
};

using TokenResult = tl::expected<Grant, TokenError>;
using TokenCallback = std::function<void(TokenResult)>;

// pending: no token yet and no attempt finished (the first may be in flight);
// fresh: a valid token, no attempt in flight; refreshing: a valid token and
// an attempt in flight; stale: a valid token but the last attempt failed
// (also while its retry is in flight); failed: no valid token and either the
// last attempt failed or the token expired. Computed when asked, so no timer
// fires at expiry.
enum class State { pending, fresh, refreshing, stale, failed };
inline constexpr std::size_t k_state_count = 5;

// Failed attempts counted by Failure (indexed by its value).
using FailureCounts = std::array<std::uint64_t, k_failure_count>;
std::string_view to_string(State state);

struct ProfileStatus
{
  std::string name;
  State state = State::pending;
  std::optional<std::int64_t> expires_at; // Unix seconds
  std::optional<std::int64_t> refresh_at; // Unix seconds of the next attempt (unset: in flight)
  std::uint64_t refreshes = 0;            // successful exchanges
  std::uint64_t failures = 0;             // failed attempts
  FailureCounts failures_by{};            // the same, by how they failed
  std::optional<UpstreamError> last_error; // current failure streak; a success clears it
};

// The CR-token source: not asked yet, its last fetch worked, or failed.
enum class SourceState { pending, ok, failed };
std::string_view to_string(SourceState state);

struct SourceStatus
{
  SourceState state = SourceState::pending;
  std::optional<std::int64_t> expires_at; // cached CR token, if any (never: file source)
  std::optional<UpstreamError> last_error;
};

struct Status
{
  SourceStatus source;
  std::vector<ProfileStatus> profiles; // in configuration order
  std::uint64_t upstream_calls = 0;    // IMDS token + exchange calls started
};

struct Ports
{
  Clock& clock;
  Timers& timers;
  Random& random;
  Upstream& upstream;
};

using WatchId = std::uint64_t;

class Engine
{
public:
  Engine(Ports ports, Settings settings, std::vector<ProfileSpec> profiles);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Eager start: begins the first fetch of every profile (not already
  // fetching). Only the first call counts.
  void start();

  // Hands out a token valid for at least min(min_valid, half its lifetime)
  // (default Settings::min_valid; never an expired one), refreshing first when
  // the cached one falls short. A profile that is backing off is not retried
  // sooner: the caller waits for the attempt in flight or one due within
  // Settings::timeout, else gets `unavailable` at once. A waiter gets the
  // token of the attempt it waited for; if that attempt fails it keeps
  // waiting only if the retry is due before its deadline (now + timeout),
  // else gets `unavailable` (retry_after_s = seconds to the next attempt, at
  // least 1; upstream = the last failure). Unknown profile: unknown_profile.
  // Calls `done` exactly once, possibly from inside this call (a cache hit),
  // except that stop() and destruction drop waiting callers uncalled.
  void get_token(std::string_view profile, std::optional<std::chrono::seconds> min_valid,
                 TokenCallback done);

  // Calls `on_renewed` with every new token of `profile` from now on, and
  // once with unknown_profile if a reconfigure removes the profile (the watch
  // then ends). Returns 0 (and never calls) for an unknown profile or after
  // stop(). For "current token, then every renewal", call watch() from inside
  // the get_token callback: no renewal can slip in between, none is repeated.
  // Watches follow the name: a reload that changes a profile's target keeps
  // them and delivers the new target's tokens.
  WatchId watch(std::string_view profile, TokenCallback on_renewed);
  void unwatch(WatchId id);

  // Swaps in new settings and profiles. Profiles whose spec is unchanged keep
  // their tokens and schedules; new ones (and ones whose target changed: their
  // old token is dropped, their waiters wait on) are fetched at once if
  // started; removed ones fail their waiters and watchers with unknown_profile
  // (called from inside this call).
  void reconfigure(Settings settings, std::vector<ProfileSpec> profiles);

  // Forgets the cached CR token (the source changed on a reload): the next
  // exchange fetches a new one. A fetch already out still serves the
  // exchanges waiting for it, but its token is not kept.
  void forget_cr_token();

  // The CR token's source has new content (the pod's token file was
  // rewritten): every profile backing off because its CR token was rejected
  // (cr_token_rejected) or could not be read (Failure::source) starts a new
  // attempt at once; other profiles and other failures keep their schedule.
  // The only thing that brings a retry forward. A no-op before start() and
  // after stop().
  void cr_token_changed();

  // Calls `done` once every profile has finished its first attempt (success
  // or failure) since start() or the last reconfigure(); at once if so now.
  void when_settled(std::function<void()> done);

  Status status() const;

  // Cancels every timer and drops every callback (waiters, watchers,
  // when_settled) without calling it; replies to upstream calls still out are
  // ignored. Afterwards get_token answers from a still valid cache or with
  // `unavailable`, and nothing new starts. The destructor does this too.
  void stop();

private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

} // namespace iamtok::engine
