#pragma once

// An engine::Upstream that forwards every call to a current inner upstream
// and can replace it while calls are out (a reload changed the upstream
// settings): new calls go to the new one at once, calls already out finish
// on the old one, which is destroyed after the last of them.

#include "daemon/engine/ports.hpp"
#include "util/life.hpp"

#include <asio/io_context.hpp>

#include <cstddef>
#include <memory>
#include <vector>

namespace iamtok::upstream {

class SwitchableUpstream final : public engine::Upstream
{
public:
  // `first` is the current upstream until replace(); `io` runs the deferred
  // destruction of replaced ones and must outlive this object.
  SwitchableUpstream(asio::io_context& io, std::unique_ptr<engine::Upstream> first);
  // Destroys every inner upstream, the current one and replaced ones whose
  // calls are still out: those calls are abandoned as each upstream abandons
  // them (CloudUpstream: their callbacks are never called).
  ~SwitchableUpstream() override;
  SwitchableUpstream(const SwitchableUpstream&) = delete;
  SwitchableUpstream& operator=(const SwitchableUpstream&) = delete;

  // Makes `next` the current upstream. The previous one is destroyed here if
  // no call is out on it, else from the io_context once its last callback
  // has returned (never from inside one of its own callbacks).
  void replace(std::unique_ptr<engine::Upstream> next);

  // The current upstream's answer.
  bool cr_token_per_exchange() const override;

  // Forwarded to the current upstream; `done` is called when and as that
  // upstream calls back.
  void fetch_cr_token(engine::UpstreamCallback done) override;
  void exchange(const engine::ProfileTarget& profile, const Secret& cr_token,
                engine::UpstreamCallback done) override;

private:
  // An upstream and its calls still out. The callbacks it holds point at
  // their slot; a slot outlives its calls, or they die with it unanswered.
  struct Slot
  {
    explicit Slot(std::unique_ptr<engine::Upstream> u) : upstream(std::move(u)) {}
    std::unique_ptr<engine::Upstream> upstream;
    std::size_t in_flight = 0;
  };

  // `done`, counted as a call out on the current slot until it has returned.
  engine::UpstreamCallback tracked(engine::UpstreamCallback done);
  void finished(Slot& slot);
  void release_idle();

  asio::io_context& m_io;
  std::unique_ptr<Slot> m_current;
  std::vector<std::unique_ptr<Slot>> m_retired;
  util::Life m_life;
};

} // namespace iamtok::upstream
