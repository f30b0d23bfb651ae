#include "daemon/engine/engine.hpp"

#include "daemon/engine/backoff.hpp"
#include "daemon/engine/cr_cache.hpp"
#include "daemon/engine/held.hpp"
#include "util/life.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <utility>

namespace iamtok::engine {

std::string describe(const UpstreamError& error)
{
  std::string text;
  if (error.http_status != 0) {
    text += fmt::format("HTTP {} ", error.http_status);
  }
  if (!error.code.empty()) {
    text += error.code + " ";
  }
  if (!error.request_id.empty()) {
    text += fmt::format("request_id {} ", error.request_id);
  }
  if (!error.message.empty()) {
    return text.empty() ? error.message : text + error.message;
  }
  switch (error.failure) {
  case Failure::transport: return text + "upstream not reachable";
  case Failure::timeout: return text + "upstream timed out";
  case Failure::http: return text + "upstream HTTP error";
  case Failure::malformed: return text + "upstream reply malformed";
  case Failure::source: return text + "CR token source failed";
  }
  return text + "upstream failing";
}

using namespace std::chrono_literals;

std::string_view to_string(State state)
{
  switch (state) {
  case State::pending: return "pending";
  case State::fresh: return "fresh";
  case State::refreshing: return "refreshing";
  case State::stale: return "stale";
  case State::failed: return "failed";
  }
  return "failed";
}

std::string_view to_string(SourceState state)
{
  switch (state) {
  case SourceState::pending: return "pending";
  case SourceState::ok: return "ok";
  case SourceState::failed: return "failed";
  }
  return "failed";
}

std::string_view to_string(Failure failure)
{
  switch (failure) {
  case Failure::transport: return "transport";
  case Failure::timeout: return "timeout";
  case Failure::http: return "http";
  case Failure::malformed: return "malformed";
  case Failure::source: return "source";
  }
  return "transport";
}

namespace {

// Callbacks to run once the engine's state is consistent again.
using Outbox = std::vector<std::function<void()>>;

std::int64_t ceil_seconds(Duration d)
{
  return std::chrono::ceil<std::chrono::seconds>(d).count();
}

} // namespace

struct Engine::Impl
{
  struct Waiter
  {
    Duration min_valid{};
    TimePoint deadline;
    TokenCallback done;
  };

  // A profile's timer slot: at most one armed timer. Arming again or
  // cancelling turns an earlier timer's firing into a no-op (its sequence
  // number no longer matches), whatever the Timers port does with cancel().
  struct OneShot
  {
    std::optional<TimePoint> due; // set while armed
    TimerId id = 0;
    std::uint64_t seq = 0; // bumped on every (re)arm and cancel
  };

  struct Profile : std::enable_shared_from_this<Profile>
  {
    ProfileSpec spec;
    std::optional<Held> token;

    bool in_flight = false;
    std::uint64_t attempt = 0; // number of the current (or last) attempt
    TimePoint sent_at;         // when the exchange in flight was sent
    std::int64_t unix_sent = 0; // the same on the wall clock (for expires_at)

    // The next scheduled attempt: a refresh, or a retry when backing off.
    OneShot attempt_timer;
    bool backing_off = false;    // the last attempt failed
    unsigned streak = 0;         // failed attempts in a row

    bool finished_any = false; // an attempt has finished (settled)
    std::uint64_t refreshes = 0;
    std::uint64_t failures = 0;
    FailureCounts failures_by{};
    std::optional<UpstreamError> last_error;

    std::vector<Waiter> waiters;
    OneShot waiter_timer; // at the earliest waiter deadline
  };

  struct CrWaiter
  {
    std::weak_ptr<Profile> profile;
    std::uint64_t attempt = 0;
    bool retried = false;
  };

  struct Watcher
  {
    std::string profile;
    TokenCallback on_renewed;
  };

  Impl(Ports ports, Settings settings) : m_ports(ports), m_settings(std::move(settings)) {}

  Ports m_ports;
  Settings m_settings;
  // Callbacks handed to timers and upstream hold a weak reference: once the
  // engine is destroyed or stopped, they find it expired and do nothing.
  util::Life m_life;
  bool m_started = false;
  bool m_stopped = false;

  std::vector<std::shared_ptr<Profile>> m_profiles; // configuration order
  std::map<std::string, std::shared_ptr<Profile>, std::less<>> m_by_name;
  CrCache m_cr;
  std::vector<CrWaiter> m_cr_waiting; // the attempts waiting for m_cr's fetch
  std::map<WatchId, Watcher> m_watchers;
  WatchId m_next_watch = 1;
  std::vector<std::function<void()>> m_settled;
  std::uint64_t m_upstream_calls = 0;
  std::uint64_t m_generations = 0; // access tokens cached so far, all profiles

  TimePoint now() const { return m_ports.clock.now(); }

  Profile* find(std::string_view name) const
  {
    const auto it = m_by_name.find(name);
    return it == m_by_name.end() ? nullptr : it->second.get();
  }

  // Runs the collected callbacks, stopping if one of them destroys or stops
  // the engine. Callers must not touch `this` afterwards.
  void run(Outbox& out)
  {
    const util::Life::Watch life = m_life.watch();
    for (auto& call : out) {
      if (!life.alive()) {
        return;
      }
      call();
    }
  }

  // --- answers -------------------------------------------------------------

  // Returns a grant of `p`'s token if it is unexpired and valid for at least
  // min(want, half its lifetime), else nullopt.
  std::optional<Grant> grant_if(const Profile& p, Duration want, TimePoint at) const
  {
    if (!p.token) {
      return std::nullopt;
    }
    const Duration left = p.token->expiry - at;
    const Duration need = std::min(want, p.token->lifetime / 2);
    if (left <= Duration::zero() || left < need) {
      return std::nullopt;
    }
    const std::int64_t seconds_left = floor_seconds(left);
    return Grant{p.token->token, p.token->unix_expiry, seconds_left, p.token->generation};
  }

  // Seconds until `p`'s next attempt, at least 1 (1 while one is in flight).
  static std::int64_t retry_after(const Profile& p, TimePoint at)
  {
    if (!p.in_flight && p.attempt_timer.due) {
      return std::max<std::int64_t>(1, ceil_seconds(*p.attempt_timer.due - at));
    }
    return 1;
  }

  static TokenError unknown_profile(std::string_view name)
  {
    TokenError error;
    error.code = TokenError::Code::unknown_profile;
    error.message = fmt::format("no profile named \"{}\"", name);
    return error;
  }

  TokenError unavailable(const Profile& p, TimePoint at, std::string message) const
  {
    TokenError error;
    error.code = TokenError::Code::unavailable;
    error.retry_after_s = retry_after(p, at);
    error.upstream = p.last_error;
    error.message = std::move(message);
    return error;
  }

  TokenError backing_off_error(const Profile& p, TimePoint at) const
  {
    const std::int64_t after = retry_after(p, at);
    std::string why = p.last_error ? describe(*p.last_error) : std::string("upstream failing");
    return unavailable(p, at,
                       fmt::format("no token valid long enough: {}; next attempt in {} s", why,
                                   after));
  }

  // --- timers --------------------------------------------------------------

  void cancel(OneShot& slot)
  {
    if (slot.due) {
      m_ports.timers.cancel(slot.id);
      slot.due.reset();
    }
    ++slot.seq;
  }

  // Arms `p.*slot` for `due` (at once if that is past): `fire(profile)` runs
  // then, unless the slot was cancelled or re-armed, the profile dropped or
  // the engine stopped first.
  template<typename Fire>
  void arm(Profile& p, OneShot Profile::*slot, TimePoint due, Fire fire)
  {
    OneShot& timer = p.*slot;
    cancel(timer);
    if (m_stopped) {
      return;
    }
    timer.due = due;
    timer.id = m_ports.timers.start(
      std::max(Duration::zero(), due - now()),
      [life = m_life.watch(), weak = p.weak_from_this(), slot, seq = timer.seq, fire] {
        if (!life.alive()) {
          return;
        }
        const auto sp = weak.lock();
        if (!sp) {
          return;
        }
        OneShot& fired = (*sp).*slot;
        if (fired.seq != seq || !fired.due) {
          return;
        }
        fired.due.reset();
        fire(*sp);
      });
  }

  void cancel_attempt_timer(Profile& p) { cancel(p.attempt_timer); }

  void schedule_attempt(Profile& p, Duration delay)
  {
    arm(p, &Profile::attempt_timer, now() + delay, [this](Profile& due) { begin_attempt(due); });
  }

  void cancel_waiter_timer(Profile& p) { cancel(p.waiter_timer); }

  // Keeps one timer per profile at the earliest waiter deadline, none when
  // nobody waits.
  void arm_waiter_timer(Profile& p)
  {
    if (p.waiters.empty() || m_stopped) {
      cancel_waiter_timer(p);
      return;
    }
    const auto earliest =
      std::min_element(p.waiters.begin(), p.waiters.end(), [](const Waiter& a, const Waiter& b) {
        return a.deadline < b.deadline;
      })->deadline;
    if (p.waiter_timer.due == earliest) {
      return;
    }
    arm(p, &Profile::waiter_timer, earliest, [this](Profile& due) {
      Outbox out;
      expire_waiters(due, out);
      run(out);
    });
  }

  void expire_waiters(Profile& p, Outbox& out)
  {
    const TimePoint at = now();
    std::vector<Waiter> keep;
    for (auto& w : p.waiters) {
      if (w.deadline > at) {
        keep.push_back(std::move(w));
        continue;
      }
      TokenResult result = tl::unexpected(unavailable(
        p, at,
        fmt::format("no token valid long enough within {} s",
                    std::chrono::duration_cast<std::chrono::seconds>(m_settings.timeout).count())));
      out.push_back([done = std::move(w.done), result = std::move(result)]() mutable {
        done(std::move(result));
      });
    }
    p.waiters = std::move(keep);
    arm_waiter_timer(p);
  }

  // Answers the waiters the current token satisfies; the others keep waiting
  // if an attempt is in flight or due before their deadline, else get
  // `unavailable` now.
  void settle_waiters(Profile& p, Outbox& out)
  {
    const TimePoint at = now();
    std::vector<Waiter> keep;
    for (auto& w : p.waiters) {
      TokenResult result;
      if (auto grant = grant_if(p, w.min_valid, at)) {
        result = std::move(*grant);
      } else if (p.in_flight || (p.attempt_timer.due && *p.attempt_timer.due <= w.deadline)) {
        keep.push_back(std::move(w));
        continue;
      } else {
        result = tl::unexpected(backing_off_error(p, at));
      }
      out.push_back([done = std::move(w.done), result = std::move(result)]() mutable {
        done(std::move(result));
      });
    }
    p.waiters = std::move(keep);
    arm_waiter_timer(p);
  }

  // --- attempts ------------------------------------------------------------

  std::shared_ptr<Profile> live(const CrWaiter& w) const
  {
    auto sp = w.profile.lock();
    if (!sp || !sp->in_flight || sp->attempt != w.attempt) {
      return nullptr;
    }
    return sp;
  }

  // Starts an attempt for `p` unless one is in flight; it completes later,
  // through the upstream callbacks.
  void begin_attempt(Profile& p)
  {
    if (m_stopped || p.in_flight) {
      return;
    }
    cancel_attempt_timer(p);
    p.in_flight = true;
    ++p.attempt;
    acquire_cr_token(p, false);
  }

  void acquire_cr_token(Profile& p, bool retried)
  {
    CrWaiter waiter{p.weak_from_this(), p.attempt, retried};
    if (m_ports.upstream.cr_token_per_exchange()) {
      // A file source: read fresh for every exchange, never cached or shared.
      ++m_upstream_calls;
      m_ports.upstream.fetch_cr_token(
        [this, life = m_life.watch(), waiter](UpstreamResult result) {
          if (!life.alive()) {
            return;
          }
          Outbox out2;
          m_cr.record(result);
          if (const auto sp = live(waiter)) {
            if (result) {
              exchange(*sp, result->token, 0, waiter.retried);
            } else {
              finish(*sp, tl::unexpected(result.error()), out2);
            }
          }
          run(out2);
        });
      return;
    }
    if (const Held* cr = m_cr.usable(now())) {
      exchange(p, cr->token, m_cr.generation(), retried);
      return;
    }
    m_cr_waiting.push_back(std::move(waiter));
    if (m_cr.fetching()) {
      return;
    }
    m_cr.fetch_sent(now(), m_ports.clock.unix_now());
    ++m_upstream_calls;
    m_ports.upstream.fetch_cr_token([this, life = m_life.watch()](UpstreamResult result) {
      if (!life.alive()) {
        return;
      }
      Outbox out2;
      on_cr_token(std::move(result), out2);
      run(out2);
    });
  }

  // The reply to the CR-token fetch: every attempt waiting for it goes on
  // with its token, or fails with its error.
  void on_cr_token(UpstreamResult result, Outbox& out)
  {
    const auto fetched = m_cr.fetched(std::move(result), now());
    auto waiting = std::move(m_cr_waiting);
    m_cr_waiting.clear();
    for (const auto& w : waiting) {
      const auto sp = live(w);
      if (!sp) {
        continue;
      }
      if (fetched) {
        exchange(*sp, fetched->token, fetched->generation, w.retried);
      } else {
        finish(*sp, tl::unexpected(fetched.error()), out);
      }
    }
  }

  void exchange(Profile& p, const Secret& cr_token, std::uint64_t generation, bool retried)
  {
    ++m_upstream_calls;
    const CrWaiter waiter{p.weak_from_this(), p.attempt, retried};
    p.sent_at = now();
    p.unix_sent = m_ports.clock.unix_now();
    m_ports.upstream.exchange(
      p.spec.target, cr_token,
      [this, life = m_life.watch(), waiter, generation](UpstreamResult result) {
        if (!life.alive()) {
          return;
        }
        const auto sp = live(waiter);
        if (!sp) {
          return; // removed by a reconfigure, or stopped
        }
        Outbox out;
        if (!result && result.error().cr_token_rejected) {
          // The CR token itself was refused: drop it (unless another
          // exchange already replaced it).
          m_cr.rejected(generation);
        }
        if (!result && result.error().cr_token_rejected && !waiter.retried) {
          acquire_cr_token(*sp, true); // once, at once, with a fresh one
        } else {
          finish(*sp, std::move(result), out);
        }
        run(out);
      });
  }

  // Ends the attempt in flight with `result`: caches a new token and schedules
  // its refresh, or counts the failure and schedules a retry; then answers
  // waiters, watchers and when_settled() callers through `out`.
  void finish(Profile& p, UpstreamResult result, Outbox& out)
  {
    p.in_flight = false;
    p.finished_any = true;
    const TimePoint at = now();
    result = checked(std::move(result), "token", p.sent_at, at);
    if (result) {
      // Assigning drops (and wipes) the previous token.
      p.token = hold(std::move(*result), p.sent_at, p.unix_sent, ++m_generations);
      const Duration lifetime = p.token->lifetime;
      ++p.refreshes;
      p.streak = 0;
      p.backing_off = false;
      p.last_error.reset();
      const TimePoint refresh_at =
        p.sent_at + refresh_delay(lifetime, m_settings.at_fraction, m_ports.random.uniform());
      schedule_attempt(p, std::max(Duration::zero(), refresh_at - at));
      notify_watchers(p, out);
    } else {
      ++p.failures;
      ++p.failures_by[static_cast<std::size_t>(result.error().failure)];
      ++p.streak;
      p.backing_off = true;
      p.last_error = result.error();
      schedule_attempt(p, retry_delay(p.streak, result.error(), m_ports.random.uniform()));
    }
    settle_waiters(p, out);
    check_settled(out);
  }

  void notify_watchers(const Profile& p, Outbox& out)
  {
    const auto grant = grant_if(p, Duration::zero(), now());
    if (!grant) {
      return;
    }
    for (const auto& [id, watcher] : m_watchers) {
      if (watcher.profile != p.spec.name) {
        continue;
      }
      // Looked up again at call time: an earlier callback may unwatch it.
      out.push_back([this, id = id, grant = *grant] {
        const auto it = m_watchers.find(id);
        if (it != m_watchers.end()) {
          auto on_renewed = it->second.on_renewed;
          on_renewed(grant);
        }
      });
    }
  }

  bool settled() const
  {
    return m_started && std::all_of(m_profiles.begin(), m_profiles.end(),
                                    [](const auto& p) { return p->finished_any; });
  }

  void check_settled(Outbox& out)
  {
    if (m_settled.empty() || !settled()) {
      return;
    }
    for (auto& done : m_settled) {
      out.push_back(std::move(done));
    }
    m_settled.clear();
  }

  // --- configuration -------------------------------------------------------

  void set_profiles(std::vector<ProfileSpec> specs, Outbox& out)
  {
    std::vector<std::shared_ptr<Profile>> profiles;
    std::map<std::string, std::shared_ptr<Profile>, std::less<>> by_name;
    std::vector<std::shared_ptr<Profile>> fresh;
    for (auto& spec : specs) {
      if (by_name.count(spec.name) != 0) {
        continue; // duplicate names are a config error caught earlier
      }
      std::shared_ptr<Profile> p;
      if (const auto it = m_by_name.find(spec.name);
          it != m_by_name.end() && it->second->spec == spec) {
        p = it->second;
      } else {
        p = std::make_shared<Profile>();
        p->spec = std::move(spec);
        fresh.push_back(p);
      }
      by_name.emplace(p->spec.name, p);
      profiles.push_back(p);
    }

    // Profiles dropped or replaced: stop their timers; their in-flight
    // attempts are ignored when they return (the weak references expire).
    for (const auto& [name, old] : m_by_name) {
      const auto it = by_name.find(name);
      if (it != by_name.end() && it->second == old) {
        continue;
      }
      cancel_attempt_timer(*old);
      cancel_waiter_timer(*old);
      if (it != by_name.end()) {
        // Same name, new target: its callers wait for the new profile's token.
        auto& moved = it->second->waiters;
        std::move(old->waiters.begin(), old->waiters.end(), std::back_inserter(moved));
        old->waiters.clear();
        continue;
      }
      for (auto& w : old->waiters) {
        out.push_back([done = std::move(w.done), error = unknown_profile(name)]() mutable {
          done(tl::unexpected(std::move(error)));
        });
      }
      old->waiters.clear();
      for (auto wit = m_watchers.begin(); wit != m_watchers.end();) {
        if (wit->second.profile == name) {
          out.push_back([on_renewed = std::move(wit->second.on_renewed),
                         error = unknown_profile(name)]() mutable {
            on_renewed(tl::unexpected(std::move(error)));
          });
          wit = m_watchers.erase(wit);
        } else {
          ++wit;
        }
      }
    }

    m_profiles = std::move(profiles);
    m_by_name = std::move(by_name);
    for (const auto& p : fresh) {
      if (m_started) {
        begin_attempt(*p);
      }
      arm_waiter_timer(*p);
    }
    check_settled(out);
  }

  // --- status --------------------------------------------------------------

  State state_of(const Profile& p, TimePoint at) const
  {
    const bool valid = p.token && p.token->expiry > at;
    if (valid) {
      if (p.backing_off) {
        return State::stale;
      }
      return p.in_flight ? State::refreshing : State::fresh;
    }
    if (!p.token && !p.backing_off) {
      return State::pending;
    }
    return State::failed;
  }

  // --- the public operations (engine.hpp) ----------------------------------

  void start()
  {
    if (m_started || m_stopped) {
      return;
    }
    m_started = true;
    Outbox out;
    for (const auto& p : m_profiles) {
      begin_attempt(*p);
    }
    check_settled(out);
    run(out);
  }

  void get_token(std::string_view profile, std::optional<std::chrono::seconds> min_valid, TokenCallback done)
  {
    auto* p = find(profile);
    if (p == nullptr) {
      done(tl::unexpected(unknown_profile(profile)));
      return;
    }
    const Duration want = std::max<Duration>(Duration::zero(), min_valid.value_or(m_settings.min_valid));
    const TimePoint at = now();
    if (auto grant = grant_if(*p, want, at)) {
      done(std::move(*grant));
      return;
    }
    if (m_stopped) {
      done(tl::unexpected(unavailable(*p, at, "the token engine is stopping")));
      return;
    }
    // Requests never bring a retry forward: wait only for one due soon.
    if (!p->in_flight && p->backing_off
        && (!p->attempt_timer.due || *p->attempt_timer.due - at > m_settings.timeout)) {
      done(tl::unexpected(backing_off_error(*p, at)));
      return;
    }
    p->waiters.push_back(Waiter{want, at + m_settings.timeout, std::move(done)});
    arm_waiter_timer(*p);
    if (!p->backing_off) {
      begin_attempt(*p); // a no-op while one is in flight
    }
  }

  WatchId watch(std::string_view profile, TokenCallback on_renewed)
  {
    if (find(profile) == nullptr || m_stopped) {
      return 0;
    }
    const WatchId id = m_next_watch++;
    m_watchers.emplace(id, Watcher{std::string(profile), std::move(on_renewed)});
    return id;
  }

  void unwatch(WatchId id) { m_watchers.erase(id); }

  void reconfigure(Settings settings, std::vector<ProfileSpec> profiles)
  {
    m_settings = std::move(settings);
    Outbox out;
    set_profiles(std::move(profiles), out);
    run(out);
  }

  void forget_cr_token() { m_cr.forget(); }

  void cr_token_changed()
  {
    if (!m_started || m_stopped) {
      return;
    }
    m_cr.changed();
    for (const auto& p : m_profiles) {
      const bool waiting_on_cr_token =
        p->last_error && (p->last_error->failure == Failure::source || p->last_error->cr_token_rejected);
      if (p->backing_off && !p->in_flight && waiting_on_cr_token) {
        begin_attempt(*p); // the upstream never calls back from inside
      }
    }
  }

  void when_settled(std::function<void()> done)
  {
    if (m_stopped) {
      return;
    }
    if (settled()) {
      done();
      return;
    }
    m_settled.push_back(std::move(done));
  }

  Status status() const
  {
    const TimePoint at = now();
    const std::int64_t unix_now = m_ports.clock.unix_now();
    Status status;
    status.upstream_calls = m_upstream_calls;
    status.source = m_cr.status();
    status.profiles.reserve(m_profiles.size());
    for (const auto& p : m_profiles) {
      ProfileStatus s;
      s.name = p->spec.name;
      s.state = state_of(*p, at);
      if (p->token) {
        s.expires_at = p->token->unix_expiry;
      }
      if (p->attempt_timer.due && !p->in_flight) {
        s.refresh_at = unix_now + ceil_seconds(*p->attempt_timer.due - at);
      }
      s.refreshes = p->refreshes;
      s.failures = p->failures;
      s.failures_by = p->failures_by;
      s.last_error = p->last_error;
      status.profiles.push_back(std::move(s));
    }
    return status;
  }

  void stop()
  {
    m_stopped = true;
    m_life.reset(); // orphans every callback
    for (const auto& p : m_profiles) {
      cancel_attempt_timer(*p);
      cancel_waiter_timer(*p);
      p->waiters.clear();
      p->in_flight = false;
    }
    m_watchers.clear();
    m_settled.clear();
    m_cr_waiting.clear();
    m_cr.stop();
  }
};

Engine::Engine(Ports ports, Settings settings, std::vector<ProfileSpec> profiles)
  : m_impl(std::make_unique<Impl>(ports, std::move(settings)))
{
  Outbox out;
  m_impl->set_profiles(std::move(profiles), out);
}

Engine::~Engine()
{
  if (m_impl) {
    m_impl->stop();
  }
}

void Engine::start()
{
  m_impl->start();
}

void Engine::get_token(std::string_view profile, std::optional<std::chrono::seconds> min_valid,
                       TokenCallback done)
{
  m_impl->get_token(profile, min_valid, std::move(done));
}

WatchId Engine::watch(std::string_view profile, TokenCallback on_renewed)
{
  return m_impl->watch(profile, std::move(on_renewed));
}

void Engine::unwatch(WatchId id)
{
  m_impl->unwatch(id);
}

void Engine::reconfigure(Settings settings, std::vector<ProfileSpec> profiles)
{
  m_impl->reconfigure(std::move(settings), std::move(profiles));
}

void Engine::forget_cr_token()
{
  m_impl->forget_cr_token();
}

void Engine::cr_token_changed()
{
  m_impl->cr_token_changed();
}

void Engine::when_settled(std::function<void()> done)
{
  m_impl->when_settled(std::move(done));
}

Status Engine::status() const
{
  return m_impl->status();
}

void Engine::stop()
{
  m_impl->stop();
}

} // namespace iamtok::engine
