#pragma once

// The one CR token every profile's exchange uses (iamtokend(8),
// DESCRIPTION): the cached token, the fetch in flight, and the source's
// state for status. The profiles waiting for a fetch stay with the engine.
// Pure: no ports, times are passed in. A per-exchange (file) source never
// caches: only record() is used for it.

#include "daemon/engine/engine.hpp"
#include "daemon/engine/held.hpp"

#include <cstdint>
#include <optional>

namespace iamtok::engine {

class CrCache
{
public:
  // The token a fetch brought, for the exchanges waiting for it.
  struct Fetched
  {
    Secret token;
    std::uint64_t generation = 0; // generation() when it was cached
  };

  // The cached token while more than min(60 s, half its lifetime) is left
  // at `at`; else null.
  const Held* usable(TimePoint at) const;
  // Changes whenever a token is cached or the cached one is dropped by
  // forget() or changed(): rejected() drops only the one of its generation.
  std::uint64_t generation() const { return m_generation; }

  bool fetching() const { return m_fetching; }
  // A fetch goes out at `sent_at` (`unix_sent` on the wall clock).
  void fetch_sent(TimePoint sent_at, std::int64_t unix_sent);
  // Its reply, arriving at `at`: checked (held.hpp), recorded as the
  // source's state, and cached (replacing the cached token; a failure drops
  // it). A fetch that forget() overtook is returned but not kept.
  tl::expected<Fetched, UpstreamError> fetched(UpstreamResult result, TimePoint at);

  // The source's state after a read that is not cached (file source).
  void record(const UpstreamResult& result);
  // An exchange with the token of `generation` was refused for it: drops
  // the cached token if it is still that one.
  void rejected(std::uint64_t generation);
  // The source changed on a reload: drops the token, the fetch in flight
  // is not kept, the state is pending again.
  void forget();
  // The source has new content: drops the token (the state stays).
  void changed();
  // The engine stopped: no fetch counts as in flight.
  void stop();

  SourceStatus status() const;

private:
  std::optional<Held> m_token;
  std::uint64_t m_generation = 0;
  bool m_fetching = false;
  TimePoint m_sent_at;         // when the fetch in flight was sent
  std::int64_t m_unix_sent = 0;
  bool m_discard_fetch = false; // forget() ran while fetching
  SourceState m_state = SourceState::pending;
  std::optional<UpstreamError> m_last_error;
};

} // namespace iamtok::engine
