#pragma once

// The audit trail (docs/operations.md, "Audit trail"): every denial at warn
// (uid, pid, profile, transport, reason), at most RateLimiter::k_per_second
// lines a second with a count of the lines left out; the first grant of each
// token generation to each (uid, profile, transport) at info. Never a token.
// Single-threaded; the clock is injected for tests.

#include "daemon/server/peer.hpp"

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace iamtok::server {

using AuditClock = std::chrono::steady_clock;

// The transport a request came over.
enum class Via { socket, http };
// "socket" or "http".
std::string_view to_string(Via via) noexcept;

// Admits at most k_per_second events in any window of one second (a sliding
// window over the last k_per_second admitted times). Pure.
class RateLimiter
{
public:
  static constexpr std::size_t k_per_second = 10;

  struct Verdict
  {
    bool admit = false;
    std::uint64_t suppressed = 0; // events refused since the last admitted one (set when admitted)
  };

  // Whether an event at `now` may be written; `now` never goes backwards.
  Verdict admit(AuditClock::time_point now);

  // Events refused since the last admitted one.
  std::uint64_t suppressed() const noexcept { return m_suppressed; }

private:
  std::array<AuditClock::time_point, k_per_second> m_admitted{};
  std::size_t m_count = 0; // admitted so far, up to k_per_second
  std::size_t m_next = 0;  // the oldest admitted time's slot once full
  std::uint64_t m_suppressed = 0;
};

class Audit
{
public:
  // Keeps at most this many (uid, transport) pairs per profile and generation;
  // past it the set starts again (a grant may then be logged twice).
  static constexpr std::size_t k_max_seen = 4096;
  // Longer profile names (from a client asking for an unknown one) are cut.
  static constexpr std::size_t k_max_name = 128;

  explicit Audit(std::function<AuditClock::time_point()> now = [] { return AuditClock::now(); });

  // A refused request: one warn line unless rate-limited.
  void denied(const Caller& caller, Via via, std::string_view profile, std::string_view reason,
              std::string_view message);

  // A token handed out: one info line the first time `caller.uid` gets
  // generation `generation` of `profile` over `via`.
  void granted(const Caller& caller, Via via, std::string_view profile, std::uint64_t generation,
               std::int64_t expires_at);

  // Forgets the profiles not in `names` (a reload removed them).
  void retain(const std::vector<std::string>& names);

  // Profiles with grant memory (for tests of the bound).
  std::size_t profiles_remembered() const noexcept { return m_grants.size(); }

private:
  struct Seen
  {
    std::uint64_t generation = 0;
    std::set<std::pair<uid_t, Via>> callers;
  };

  std::function<AuditClock::time_point()> m_now;
  RateLimiter m_limiter;
  std::map<std::string, Seen, std::less<>> m_grants;
};

} // namespace iamtok::server
