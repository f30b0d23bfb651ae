#include "daemon/upstream/switchable.hpp"

#include <asio/post.hpp>

#include <utility>

namespace iamtok::upstream {

SwitchableUpstream::SwitchableUpstream(asio::io_context& io, std::unique_ptr<engine::Upstream> first)
  : m_io(io), m_current(std::make_unique<Slot>(std::move(first)))
{
}

SwitchableUpstream::~SwitchableUpstream() = default;

void SwitchableUpstream::replace(std::unique_ptr<engine::Upstream> next)
{
  m_retired.push_back(std::exchange(m_current, std::make_unique<Slot>(std::move(next))));
  release_idle();
}

bool SwitchableUpstream::cr_token_per_exchange() const
{
  return m_current->upstream->cr_token_per_exchange();
}

void SwitchableUpstream::fetch_cr_token(engine::UpstreamCallback done)
{
  m_current->upstream->fetch_cr_token(tracked(std::move(done)));
}

void SwitchableUpstream::exchange(const engine::ProfileTarget& profile, const Secret& cr_token,
                                  engine::UpstreamCallback done)
{
  m_current->upstream->exchange(profile, cr_token, tracked(std::move(done)));
}

engine::UpstreamCallback SwitchableUpstream::tracked(engine::UpstreamCallback done)
{
  Slot& slot = *m_current;
  ++slot.in_flight;
  return [this, &slot, done = std::move(done)](engine::UpstreamResult result) {
    done(std::move(result));
    finished(slot);
  };
}

void SwitchableUpstream::finished(Slot& slot)
{
  --slot.in_flight;
  if (slot.in_flight == 0 && &slot != m_current.get()) {
    // Not from inside the old upstream's own callback: later.
    asio::post(m_io, [this, life = m_life.watch()] {
      if (life.alive()) {
        release_idle();
      }
    });
  }
}

void SwitchableUpstream::release_idle()
{
  std::erase_if(m_retired, [](const std::unique_ptr<Slot>& slot) { return slot->in_flight == 0; });
}

} // namespace iamtok::upstream
