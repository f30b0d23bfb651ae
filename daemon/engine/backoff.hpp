#pragma once

// The two delays the engine schedules (iamtokend(8), DESCRIPTION): when to refresh a token
// ahead of its expiry, and when to retry after a failed attempt.

#include "daemon/engine/ports.hpp"

namespace iamtok::engine {

inline constexpr Duration k_backoff_base = std::chrono::seconds(1);
inline constexpr Duration k_backoff_cap = std::chrono::seconds(60);
inline constexpr double k_refresh_jitter = 0.05;
// A Retry-After beyond this is treated as this long (a broken or hostile
// header must not park a profile for days).
inline constexpr Duration k_max_retry_after = std::chrono::hours(1);

// Returns the delay from a token's arrival to its refresh: `at_fraction` of
// `lifetime`, spread by ±5 % of itself using `uniform` in [0, 1).
Duration refresh_delay(Duration lifetime, double at_fraction, double uniform);

// Returns the delay before retry number `failures` (1 for the first failure
// in a row): full jitter over a cap of 1 s doubling to 60 s; exactly the cap
// for a definitive error; never less than the error's Retry-After.
Duration retry_delay(unsigned failures, const UpstreamError& error, double uniform);

} // namespace iamtok::engine
