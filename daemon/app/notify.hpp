#pragma once

// A thin wrapper over sd_notify(3) for the service manager protocol
// (iamtokend(8)). Every call is a no-op when NOTIFY_SOCKET is unset.

#include <chrono>
#include <optional>
#include <string_view>

namespace iamtok::app::notify {

// READY=1, with a STATUS= line when `status` is not empty.
void ready(std::string_view status = {});
// RELOADING=1 with MONOTONIC_USEC= (the systemd 253 reload protocol).
void reloading();
// STOPPING=1.
void stopping();
// STATUS=<text>.
void status(std::string_view text);
// WATCHDOG=1.
void watchdog();

// The interval at which to send WATCHDOG=1 (half of WATCHDOG_USEC), or
// nullopt if the service manager did not ask for keep-alives.
std::optional<std::chrono::microseconds> watchdog_interval();

} // namespace iamtok::app::notify
