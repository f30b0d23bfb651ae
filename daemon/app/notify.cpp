#include "daemon/app/notify.hpp"

#include <fmt/format.h>
#include <systemd/sd-daemon.h>

#include <cstdint>
#include <ctime>
#include <string>

namespace iamtok::app::notify {
namespace {

void send(const std::string& state)
{
  // unset_environment = 0: children (none) and later calls keep NOTIFY_SOCKET.
  sd_notify(0, state.c_str());
}

std::uint64_t monotonic_usec()
{
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000U + static_cast<std::uint64_t>(now.tv_nsec) / 1'000U;
}

// STATUS= takes the rest of its line: keep the text on one line.
std::string one_line(std::string_view text)
{
  std::string line(text);
  for (char& c : line) {
    if (c == '\n' || c == '\r') {
      c = ' ';
    }
  }
  return line;
}

} // namespace

void ready(std::string_view status_text)
{
  send(status_text.empty() ? std::string("READY=1")
                           : fmt::format("READY=1\nSTATUS={}", one_line(status_text)));
}

void reloading()
{
  send(fmt::format("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
}

void stopping()
{
  send("STOPPING=1");
}

void status(std::string_view text)
{
  send(fmt::format("STATUS={}", one_line(text)));
}

void watchdog()
{
  send("WATCHDOG=1");
}

std::optional<std::chrono::microseconds> watchdog_interval()
{
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) {
    return std::nullopt;
  }
  return std::chrono::microseconds(usec / 2);
}

} // namespace iamtok::app::notify
