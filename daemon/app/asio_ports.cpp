#include "daemon/app/asio_ports.hpp"

#include <utility>

namespace iamtok::app {

AsioTimers::AsioTimers(asio::io_context& io)
  : m_io(io)
{
}

AsioTimers::~AsioTimers()
{
  for (auto& [id, timer] : m_timers) {
    timer->cancel();
  }
}

engine::TimerId AsioTimers::start(engine::Duration after, std::function<void()> fire)
{
  const engine::TimerId id = m_next_id++;
  auto timer = std::make_unique<asio::steady_timer>(m_io);
  timer->expires_after(std::chrono::duration_cast<asio::steady_timer::duration>(after));
  timer->async_wait([this, id, life = m_life.watch(),
                     fire = std::move(fire)](const std::error_code& error) {
    if (!life.alive()) {
      return;
    }
    // A timer cancelled after its expiry was queued is gone from the map: skip it.
    const auto found = m_timers.find(id);
    if (found == m_timers.end()) {
      return;
    }
    m_timers.erase(found);
    if (!error) {
      fire();
    }
  });
  m_timers.emplace(id, std::move(timer));
  return id;
}

void AsioTimers::cancel(engine::TimerId id)
{
  const auto found = m_timers.find(id);
  if (found != m_timers.end()) {
    found->second->cancel();
    m_timers.erase(found);
  }
}

} // namespace iamtok::app
