// libFuzzer target: the daemon's HTTP endpoint without sockets. The input is
// one connection's bytes: a strict RequestReader (8 KiB head and body, the
// endpoint's framing) must assemble the same requests whether the bytes
// come at once or in pieces, and every complete request goes through the
// routes (engine fakes answering at once, a fixed clock) and serialize()
// without crashing. The Host check and the profile selection get the raw
// bytes too.

#include "daemon/http/routes.hpp"
#include "daemon/log/log.hpp"
#include "http/message.hpp"
#include "tests/support/dispatch_fixture.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

using namespace iamtok;
using engine::Duration;
using engine::TimePoint;
using engine::TimerId;

namespace {

constexpr http::ReaderLimits k_limits{8 * 1024, 8 * 1024, true};

class Clock final : public engine::Clock
{
public:
  TimePoint now() const override { return TimePoint(std::chrono::hours(1000)); }
  std::int64_t unix_now() const override { return 1'795'000'000; }
};

// Timers that never fire: an engine waiting on one answers nothing more.
class Timers final : public engine::Timers
{
public:
  TimerId start(Duration, std::function<void()>) override { return ++m_next; }
  void cancel(TimerId) override {}

private:
  TimerId m_next = 0;
};

class Random final : public engine::Random
{
public:
  double uniform() override { return 0.5; }
};

// Answers every call when drained (never from inside the call): CR tokens
// and access tokens valid for an hour.
class Upstream final : public engine::Upstream
{
public:
  bool cr_token_per_exchange() const override { return false; }
  void fetch_cr_token(engine::UpstreamCallback done) override { m_pending.push_back({std::move(done), "cr"}); }
  void exchange(const engine::ProfileTarget&, const Secret&, engine::UpstreamCallback done) override
  {
    m_pending.push_back({std::move(done), "token"});
  }

  void drain()
  {
    while (!m_pending.empty()) {
      auto next = std::move(m_pending.front());
      m_pending.pop_front();
      next.first(issued(next.second));
    }
  }

private:
  std::deque<std::pair<engine::UpstreamCallback, std::string>> m_pending;

  static engine::UpstreamResult issued(std::string token)
  {
    engine::IssuedToken t;
    t.token = Secret(std::move(token));
    t.expires_in = std::chrono::seconds(3600);
    return t;
  }
};

config::Config make_config()
{
  config::Config config;
  config.profiles = {test::profile("reader", "P1"),
                     test::profile("ops", "", "", "crn:v1:bluemix:public:iam-identity::a/1::profile:P3",
                                   config::Allow{{1001}, {}, {}, {}}),
                     test::profile("default", "")};
  return config;
}

// The ports, constructed before (and outliving) the engine on them.
struct FuzzPorts
{
  Clock clock;
  Timers timers;
  Random random;
  Upstream upstream;
};

struct World : FuzzPorts, test::DispatchStack
{
  World()
    : test::DispatchStack(engine::Ports{clock, timers, random, upstream}, make_config(), 0,
                          [] { return server::Traffic{}; }, server::Via::http)
  {
    log::set_level(log::Level::error);
    engine.start();
    upstream.drain();
    dispatcher.set_metrics([] { return std::string("x 1\n"); });
  }
  std::uint8_t byte = 0;
  http::Routes routes{dispatcher, engine,
                      http::RoutePorts{[] { return http::WallClock::time_point(std::chrono::seconds(1'795'000'000)); },
                                       [this](std::span<unsigned char> out) {
                                         for (auto& b : out) {
                                           b = byte++;
                                         }
                                       }}};
};

World& world()
{
  static World w;
  return w;
}

bool same(const std::vector<http::ReaderEvent>& a, const std::vector<http::ReaderEvent>& b)
{
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].kind != b[i].kind || a[i].request.target != b[i].request.target
        || a[i].request.body != b[i].request.body || a[i].request.headers.size() != b[i].request.headers.size()) {
      return false;
    }
  }
  return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto& w = world();

  http::RequestReader whole(k_limits);
  const auto events = whole.feed(input);
  http::RequestReader pieces(k_limits);
  std::vector<http::ReaderEvent> piece_events;
  const std::size_t step = size > 0 ? 1 + data[0] % 13 : 1;
  for (std::size_t at = 0; at < size; at += step) {
    for (auto& e : pieces.feed(input.substr(at, step))) {
      piece_events.push_back(std::move(e));
    }
  }
  if (!same(events, piece_events)) {
    std::abort();
  }

  const server::Caller callers[] = {{1001, 100, 0, {}}, {2000, 100, 0, {}}};
  for (const auto& event : events) {
    if (event.kind != http::ReaderEvent::Kind::request) {
      continue;
    }
    for (const auto& caller : callers) {
      bool answered = false;
      w.routes.handle(event.request, &caller, [&](http::Response r) {
        answered = true;
        (void)http::serialize(r, event.request.keep_alive);
      });
      w.upstream.drain();
      if (!answered) {
        std::abort(); // with the upstream answering, every request is answered
      }
    }
  }

  (void)http::is_loopback_host_header(input);
  http::Selector selector{std::string(input), std::string(input), std::string(input)};
  (void)http::select_profiles(w.config, selector);
  return 0;
}
