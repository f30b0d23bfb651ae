#pragma once

// The production Clock and Random (the Timers and the Upstream live with
// Asio and libcurl in daemon/app and daemon/upstream).

#include "daemon/engine/ports.hpp"

#include <random>

namespace iamtok::engine {

// CLOCK_BOOTTIME for durations, the system clock for Unix times.
class SystemClock final : public Clock
{
public:
  TimePoint now() const override;
  std::int64_t unix_now() const override;
};

// A Mersenne Twister seeded from std::random_device.
class SystemRandom final : public Random
{
public:
  SystemRandom();
  double uniform() override;

private:
  std::mt19937_64 m_generator;
};

} // namespace iamtok::engine
