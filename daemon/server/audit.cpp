#include "daemon/server/audit.hpp"

#include "daemon/log/log.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace iamtok::server {

std::string_view to_string(Via via) noexcept
{
  return via == Via::http ? "http" : "socket";
}

RateLimiter::Verdict RateLimiter::admit(AuditClock::time_point now)
{
  if (m_count == k_per_second && now - m_admitted[m_next] < std::chrono::seconds(1)) {
    ++m_suppressed;
    return Verdict{false, 0};
  }
  m_admitted[m_next] = now;
  m_next = (m_next + 1) % k_per_second;
  if (m_count < k_per_second) {
    ++m_count;
  }
  return Verdict{true, std::exchange(m_suppressed, 0)};
}

Audit::Audit(std::function<AuditClock::time_point()> now) : m_now(std::move(now)) {}

void Audit::denied(const Caller& caller, Via via, std::string_view profile, std::string_view reason,
                   std::string_view message)
{
  if (!log::enabled(log::Level::warn)) {
    return;
  }
  const RateLimiter::Verdict verdict = m_limiter.admit(m_now());
  if (!verdict.admit) {
    return;
  }
  const std::string_view shown = profile.substr(0, k_max_name);
  const std::string_view cut = profile.size() > k_max_name ? "..." : "";
  if (verdict.suppressed != 0) {
    log::warn("denied: uid {} pid {} via {} profile {}{}: {} ({}); {} more denial line(s) suppressed before this",
              caller.uid, caller.pid, to_string(via), shown, cut, reason, message, verdict.suppressed);
  } else {
    log::warn("denied: uid {} pid {} via {} profile {}{}: {} ({})", caller.uid, caller.pid, to_string(via), shown, cut, reason,
              message);
  }
}

void Audit::granted(const Caller& caller, Via via, std::string_view profile, std::uint64_t generation,
                    std::int64_t expires_at)
{
  auto it = m_grants.find(profile);
  if (it == m_grants.end()) {
    it = m_grants.emplace(std::string(profile), Seen{}).first;
  }
  Seen& seen = it->second;
  if (generation < seen.generation) {
    return; // an older token than one already logged: nothing new to say
  }
  if (generation > seen.generation) {
    seen.generation = generation;
    seen.callers.clear();
  }
  const std::pair<uid_t, Via> who(caller.uid, via);
  if (seen.callers.contains(who)) {
    return; // the common case: looked up, nothing allocated
  }
  if (seen.callers.size() >= k_max_seen) {
    seen.callers.clear();
  }
  seen.callers.insert(who);
  log::info("granted: uid {} pid {} via {} profile {}: token generation {}, expires_at {}", caller.uid, caller.pid,
            to_string(via), profile, generation, expires_at);
}

void Audit::retain(const std::vector<std::string>& names)
{
  std::erase_if(m_grants, [&](const auto& entry) {
    return std::find(names.begin(), names.end(), entry.first) == names.end();
  });
}

} // namespace iamtok::server
