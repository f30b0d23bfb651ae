#pragma once

// The engine's Timers on Asio: each start() arms one asio::steady_timer on the
// io_context; cancel() disarms it so its callback never runs.

#include "daemon/engine/ports.hpp"
#include "util/life.hpp"

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <functional>
#include <memory>
#include <unordered_map>

namespace iamtok::app {

class AsioTimers final : public engine::Timers
{
public:
  // `io` must outlive this object.
  explicit AsioTimers(asio::io_context& io);
  // Cancels every pending timer: no callback runs afterwards.
  ~AsioTimers() override;
  AsioTimers(const AsioTimers&) = delete;
  AsioTimers& operator=(const AsioTimers&) = delete;

  // Returns a new id; `fire` runs on the io_context once `after` has passed,
  // unless cancel(id) came first.
  engine::TimerId start(engine::Duration after, std::function<void()> fire) override;
  void cancel(engine::TimerId id) override;

private:
  asio::io_context& m_io;
  engine::TimerId m_next_id = 1;
  std::unordered_map<engine::TimerId, std::unique_ptr<asio::steady_timer>> m_timers;
  // Handlers still queued when this object dies check this first.
  util::Life m_life;
};

} // namespace iamtok::app
