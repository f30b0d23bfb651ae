#include "daemon/engine/system_ports.hpp"

#include <cmath>
#include <ctime>

namespace iamtok::engine {

BootClock::time_point BootClock::now() noexcept
{
  timespec ts{};
  // CLOCK_BOOTTIME exists on every Linux this daemon supports; it cannot fail
  // with a valid clock id and pointer.
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
}

TimePoint SystemClock::now() const
{
  return BootClock::now();
}

std::int64_t SystemClock::unix_now() const
{
  return std::chrono::duration_cast<std::chrono::seconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

SystemRandom::SystemRandom() : m_generator(std::random_device{}())
{
}

double SystemRandom::uniform()
{
  // generate_canonical may round up to 1.0; the contract is [0, 1).
  const double value = std::uniform_real_distribution<double>(0.0, 1.0)(m_generator);
  return value < 1.0 ? value : std::nextafter(1.0, 0.0);
}

} // namespace iamtok::engine
