#include "daemon/engine/backoff.hpp"

#include <algorithm>

namespace iamtok::engine {

namespace {

double clamp_unit(double uniform)
{
  return std::clamp(uniform, 0.0, 1.0);
}

} // namespace

Duration refresh_delay(Duration lifetime, double at_fraction, double uniform)
{
  const double fraction = std::clamp(at_fraction, 0.05, 0.99);
  const double spread = 1.0 + k_refresh_jitter * (2.0 * clamp_unit(uniform) - 1.0);
  return std::chrono::duration_cast<Duration>(
    std::chrono::duration<double, Duration::period>(static_cast<double>(lifetime.count()) * fraction
                                                    * spread));
}

Duration retry_delay(unsigned failures, const UpstreamError& error, double uniform)
{
  // 1 s << 6 = 64 s already exceeds the cap; stop shifting there.
  const unsigned doublings = std::min(failures > 0 ? failures - 1 : 0U, 6U);
  const Duration cap = std::min(k_backoff_base * (Duration::rep{1} << doublings), k_backoff_cap);
  Duration delay = error.definitive
                     ? k_backoff_cap
                     : std::chrono::duration_cast<Duration>(
                         std::chrono::duration<double, Duration::period>(
                           static_cast<double>(cap.count()) * clamp_unit(uniform)));
  if (error.retry_after && *error.retry_after > std::chrono::seconds(0)) {
    const Duration retry_after = std::min<Duration>(*error.retry_after, k_max_retry_after);
    delay = std::max(delay, retry_after);
  }
  return delay;
}

} // namespace iamtok::engine
