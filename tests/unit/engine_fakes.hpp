#pragma once

// Simulated ports for driving the token engine in simulated time: a clock
// that moves only when told, a timer queue that fires in due order while it
// advances the clock, scripted randomness, and an upstream whose calls either
// wait for the test to complete them or are answered by responders after a
// simulated latency.

#include "daemon/engine/engine.hpp"

#include <cmath>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace iamtok::engine::testing {

using namespace std::chrono_literals;

class FakeClock final : public Clock
{
public:
  static constexpr TimePoint k_start = TimePoint(std::chrono::hours(1000));
  static constexpr std::int64_t k_unix_start = 1'795'000'000;

  TimePoint now() const override { return m_now; }
  std::int64_t unix_now() const override
  {
    return k_unix_start + std::chrono::floor<std::chrono::seconds>(m_now - k_start).count();
  }
  // Time since the simulation began.
  Duration elapsed() const { return m_now - k_start; }
  void set(TimePoint to) { m_now = to; }

private:
  TimePoint m_now = k_start;
};

class FakeTimers final : public Timers
{
public:
  explicit FakeTimers(FakeClock& clock) : m_clock(clock) {}

  TimerId start(Duration after, std::function<void()> fire) override
  {
    const TimerId id = ++m_last_id;
    m_queue.emplace(Key{m_clock.now() + std::max(after, Duration::zero()), id}, std::move(fire));
    return id;
  }

  void cancel(TimerId id) override
  {
    for (auto it = m_queue.begin(); it != m_queue.end(); ++it) {
      if (it->first.id == id) {
        m_queue.erase(it);
        return;
      }
    }
  }

  // Moves the clock forward by `by`, firing every timer due on the way (in
  // due order, ties in start order) with the clock set to its due time.
  void advance(Duration by) { run_until(m_clock.now() + by); }

  void run_until(TimePoint to)
  {
    for (int fired = 0; !m_queue.empty() && m_queue.begin()->first.due <= to; ++fired) {
      if (fired > 1'000'000) {
        throw std::runtime_error("timer storm: more than a million timers in one advance");
      }
      auto node = m_queue.extract(m_queue.begin());
      m_clock.set(std::max(m_clock.now(), node.key().due));
      ++m_fired;
      node.mapped()();
    }
    m_clock.set(std::max(m_clock.now(), to));
  }

  std::size_t pending() const { return m_queue.size(); }
  std::size_t fired() const { return m_fired; }
  std::optional<TimePoint> next_due() const
  {
    if (m_queue.empty()) {
      return std::nullopt;
    }
    return m_queue.begin()->first.due;
  }

private:
  struct Key
  {
    TimePoint due;
    TimerId id;
    bool operator<(const Key& other) const
    {
      return due != other.due ? due < other.due : id < other.id;
    }
  };

  FakeClock& m_clock;
  std::map<Key, std::function<void()>> m_queue;
  TimerId m_last_id = 0;
  std::size_t m_fired = 0;
};

// Returns scripted values first, then draws from a seeded generator if one
// was set, else returns `fallback`.
class FakeRandom final : public Random
{
public:
  std::deque<double> script;
  double fallback = 0.5;

  void seed(std::uint64_t value) { m_generator.emplace(value); }

  double uniform() override
  {
    ++draws;
    if (!script.empty()) {
      const double value = script.front();
      script.pop_front();
      return value;
    }
    if (m_generator) {
      return std::uniform_real_distribution<double>(0.0, 0.999999)(*m_generator);
    }
    return fallback;
  }

  std::size_t draws = 0;

private:
  std::optional<std::mt19937_64> m_generator;
};

inline UpstreamResult issued(std::string token, std::chrono::seconds lifetime)
{
  return IssuedToken{Secret(std::move(token)), lifetime};
}

// An HTTP failure; definitive unless `status` is 429 or 5xx.
inline UpstreamError http_error(int status, std::string code = {},
                                std::optional<std::chrono::seconds> retry_after = {})
{
  UpstreamError error;
  error.failure = Failure::http;
  error.http_status = status;
  error.code = std::move(code);
  error.request_id = "req-1";
  error.message = fmt::format("HTTP {}", status);
  error.retry_after = retry_after;
  error.definitive = status != 429 && status < 500;
  error.cr_token_rejected = status == 401;
  return error;
}

inline UpstreamResult failed(UpstreamError error)
{
  return tl::unexpected(std::move(error));
}

class FakeUpstream final : public Upstream
{
public:
  struct Call
  {
    bool is_exchange = false;
    ProfileTarget target;   // exchanges only
    Secret cr_token;        // exchanges only
    TimePoint at;           // when the engine made the call
    UpstreamCallback done;  // manual mode only, until completed
  };

  using CrResponder = std::function<UpstreamResult()>;
  using ExchangeResponder = std::function<UpstreamResult(const ProfileTarget&, const Secret&)>;

  explicit FakeUpstream(FakeClock& clock, FakeTimers& timers) : m_clock(clock), m_timers(timers)
  {
  }

  // File source: the engine must read the CR token for every exchange.
  bool per_exchange = false;
  // When both are set, calls are answered automatically after `latency`
  // (through the timers, never inline); otherwise they wait in `open`.
  CrResponder cr_responder;
  ExchangeResponder exchange_responder;
  Duration latency = 200ms;

  std::deque<Call> open;     // manual mode: calls not completed yet
  std::vector<Call> history; // every call, without callbacks

  bool cr_token_per_exchange() const override { return per_exchange; }

  void fetch_cr_token(UpstreamCallback done) override
  {
    record(Call{false, {}, {}, m_clock.now(), {}});
    if (cr_responder) {
      deliver(std::move(done), cr_responder());
    } else {
      open.push_back(Call{false, {}, {}, m_clock.now(), std::move(done)});
    }
  }

  void exchange(const ProfileTarget& profile, const Secret& cr_token,
                UpstreamCallback done) override
  {
    record(Call{true, profile, cr_token, m_clock.now(), {}});
    if (exchange_responder) {
      deliver(std::move(done), exchange_responder(profile, cr_token));
    } else {
      open.push_back(Call{true, profile, cr_token, m_clock.now(), std::move(done)});
    }
  }

  // Answers the oldest open CR-token fetch; false if there is none.
  bool complete_cr(UpstreamResult result)
  {
    return complete_first([](const Call& c) { return !c.is_exchange; }, std::move(result));
  }

  // Answers the oldest open exchange (for profile id `id` if given).
  bool complete_exchange(UpstreamResult result, std::string_view id = {})
  {
    return complete_first(
      [id](const Call& c) { return c.is_exchange && (id.empty() || c.target.id == id); },
      std::move(result));
  }

  std::size_t open_cr() const { return count(open, false); }
  std::size_t open_exchanges() const { return count(open, true); }
  std::size_t cr_fetches() const { return count(history, false); }
  std::size_t exchanges() const { return count(history, true); }
  std::vector<TimePoint> exchange_times() const
  {
    std::vector<TimePoint> times;
    for (const auto& c : history) {
      if (c.is_exchange) {
        times.push_back(c.at);
      }
    }
    return times;
  }
  const Call& last_exchange() const
  {
    for (auto it = history.rbegin(); it != history.rend(); ++it) {
      if (it->is_exchange) {
        return *it;
      }
    }
    throw std::logic_error("no exchange yet");
  }

  // Default responders: CR tokens "cr-N" and access tokens "<id>-N" with the
  // given lifetimes.
  void answer_all(std::chrono::seconds cr_lifetime, std::chrono::seconds token_lifetime)
  {
    cr_responder = [this, cr_lifetime] {
      return issued(fmt::format("cr-{}", ++m_serial), cr_lifetime);
    };
    exchange_responder = [this, token_lifetime](const ProfileTarget& p, const Secret&) {
      return issued(fmt::format("{}-{}", p.id, ++m_serial), token_lifetime);
    };
  }

private:
  template<typename Pred> bool complete_first(Pred pred, UpstreamResult result)
  {
    for (auto it = open.begin(); it != open.end(); ++it) {
      if (pred(*it)) {
        auto done = std::move(it->done);
        open.erase(it);
        done(std::move(result));
        return true;
      }
    }
    return false;
  }

  static std::size_t count(const auto& calls, bool exchanges)
  {
    std::size_t n = 0;
    for (const auto& c : calls) {
      n += c.is_exchange == exchanges ? 1 : 0;
    }
    return n;
  }

  void record(Call call) { history.push_back(std::move(call)); }

  void deliver(UpstreamCallback done, UpstreamResult result)
  {
    m_timers.start(latency, [done = std::move(done), result = std::move(result)]() mutable {
      done(std::move(result));
    });
  }

  FakeClock& m_clock;
  FakeTimers& m_timers;
  std::uint64_t m_serial = 0;
};

// The simulated world plus an engine on it. The engine is declared last so
// it is destroyed first.
// Every port, simulated: a fixture derives from this first so the ports
// outlive the engine it makes on them.
struct FakePorts
{
  FakeClock clock;
  FakeTimers timers{clock};
  FakeRandom random;
  FakeUpstream upstream{clock, timers};

  Ports ports() { return Ports{clock, timers, random, upstream}; }
};

struct Rig : FakePorts
{
  Settings settings;
  std::unique_ptr<Engine> engine;

  Engine& make(std::vector<ProfileSpec> profiles)
  {
    engine = std::make_unique<Engine>(ports(), settings, std::move(profiles));
    return *engine;
  }
};

inline ProfileSpec spec(std::string name, std::string id)
{
  ProfileSpec s;
  s.name = std::move(name);
  s.target.id = std::move(id);
  return s;
}

// A get_token answer that arrives now or later.
using Answer = std::shared_ptr<std::optional<TokenResult>>;

inline Answer ask(Engine& engine, std::string_view profile,
                  std::optional<std::chrono::seconds> min_valid = std::nullopt)
{
  auto answer = std::make_shared<std::optional<TokenResult>>();
  engine.get_token(profile, min_valid, [answer](TokenResult result) {
    if (answer->has_value()) {
      throw std::logic_error("get_token answered twice");
    }
    *answer = std::move(result);
  });
  return answer;
}

// True if `answer` arrived and holds a token equal to `token` (compared
// without ever printing it).
inline bool has_token(const Answer& answer, std::string_view token)
{
  return answer->has_value() && answer->value().has_value()
         && answer->value()->access_token.expose() == token;
}

inline bool is_error(const Answer& answer, TokenError::Code code)
{
  return answer->has_value() && !answer->value().has_value()
         && answer->value().error().code == code;
}

} // namespace iamtok::engine::testing
