// The token engine (daemon/engine) in simulated time: the token lifecycle of iamtokend(8) DESCRIPTION and the
// min_valid/unavailable rules of docs/protocol.md.

#include "daemon/engine/backoff.hpp"
#include "daemon/engine/engine.hpp"
#include "tests/unit/engine_fakes.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

using namespace iamtok;
using namespace iamtok::engine;
using namespace iamtok::engine::testing;
using namespace std::chrono_literals;

namespace {

// Whether `engine` serves `name` (its status lists it).
bool has_profile(const Engine& engine, std::string_view name)
{
  const auto profiles = engine.status().profiles;
  return std::any_of(profiles.begin(), profiles.end(), [&](const auto& p) { return p.name == name; });
}

ProfileStatus profile_status(const Status& status, std::string_view name)
{
  for (const auto& p : status.profiles) {
    if (p.name == name) {
      return p;
    }
  }
  throw std::logic_error("no such profile in status");
}

State state_of(const Engine& engine, std::string_view name)
{
  return profile_status(engine.status(), name).state;
}

double seconds_of(Duration d)
{
  return std::chrono::duration<double>(d).count();
}

} // namespace

// --- eager start, shared CR token ---------------------------------------------

TEST_CASE("Nothing is fetched before start and no timer is armed")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A"), spec("b", "B")});
  REQUIRE(rig.upstream.history.empty());
  REQUIRE(rig.timers.pending() == 0);
  REQUIRE(state_of(engine, "a") == State::pending);
  REQUIRE(engine.status().source.state == SourceState::pending);
}

TEST_CASE("Start fetches every profile at once over one shared CR token fetch")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A"), spec("b", "B"), spec("c", "C")});
  engine.start();
  REQUIRE(rig.upstream.open_cr() == 1);
  REQUIRE(rig.upstream.open_exchanges() == 0);
  REQUIRE(state_of(engine, "a") == State::pending);

  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 300s)));
  REQUIRE(rig.upstream.open_exchanges() == 3);
  for (const auto& call : rig.upstream.open) {
    REQUIRE(call.cr_token == Secret("cr-1"));
  }
  std::set<std::string> ids;
  for (const auto& call : rig.upstream.open) {
    ids.insert(call.target.id);
  }
  REQUIRE(ids == std::set<std::string>{"A", "B", "C"});

  REQUIRE(rig.upstream.complete_exchange(issued("tok-a", 3600s), "A"));
  REQUIRE(rig.upstream.complete_exchange(issued("tok-b", 3600s), "B"));
  REQUIRE(rig.upstream.complete_exchange(issued("tok-c", 3600s), "C"));
  const Status status = engine.status();
  REQUIRE(status.upstream_calls == 4);
  REQUIRE(status.source.state == SourceState::ok);
  REQUIRE(status.source.expires_at == FakeClock::k_unix_start + 300);
  for (const auto& p : status.profiles) {
    REQUIRE(p.state == State::fresh);
    REQUIRE(p.refreshes == 1);
    REQUIRE(p.expires_at == FakeClock::k_unix_start + 3600);
  }
  REQUIRE(has_token(ask(engine, "b"), "tok-b"));
}

TEST_CASE("The CR token is reused while more than 60 s of it is left, then fetched anew")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 300s)));
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 100s)));

  // Refresh at 0.8 * 100 s (the fake Random's 0.5 means no jitter).
  rig.timers.advance(80s); // 220 s of the CR token left
  REQUIRE(rig.upstream.open_exchanges() == 1);
  REQUIRE(rig.upstream.open.front().cr_token == Secret("cr-1"));
  REQUIRE(rig.upstream.complete_exchange(issued("t2", 100s)));

  rig.timers.advance(80s); // 140 s left
  REQUIRE(rig.upstream.open_cr() == 0);
  REQUIRE(rig.upstream.complete_exchange(issued("t3", 100s)));

  rig.timers.advance(80s); // 60 s left: not more than 60 s
  REQUIRE(rig.upstream.open_exchanges() == 0);
  REQUIRE(rig.upstream.open_cr() == 1);
  REQUIRE(rig.upstream.complete_cr(issued("cr-2", 300s)));
  REQUIRE(rig.upstream.open.front().cr_token == Secret("cr-2"));
  REQUIRE(rig.upstream.cr_fetches() == 2);
}

TEST_CASE("A short-lived CR token is reused only while more than half its lifetime is left")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 40s))); // margin min(60, 20) = 20 s
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 20s)));

  rig.timers.advance(16s); // 24 s of the CR token left
  REQUIRE(rig.upstream.open_cr() == 0);
  REQUIRE(rig.upstream.complete_exchange(issued("t2", 20s)));

  rig.timers.advance(16s); // 8 s left
  REQUIRE(rig.upstream.open_exchanges() == 0);
  REQUIRE(rig.upstream.open_cr() == 1);
}

TEST_CASE("The CR token has no timer of its own: an idle engine holds one refresh timer per profile")
{
  Rig rig;
  rig.upstream.answer_all(300s, 3600s);
  auto& engine = rig.make({spec("a", "A"), spec("b", "B"), spec("c", "C")});
  engine.start();
  rig.timers.advance(1s);
  REQUIRE(rig.upstream.exchanges() == 3);
  REQUIRE(rig.timers.pending() == 3);

  // Cached answers and a status call add nothing.
  for (int i = 0; i < 10; ++i) {
    REQUIRE(ask(engine, "a")->has_value());
  }
  (void)engine.status();
  REQUIRE(rig.timers.pending() == 3);

  // Well past the CR token's expiry, still only the refresh timers.
  rig.timers.advance(1000s);
  REQUIRE(rig.timers.pending() == 3);
  REQUIRE(rig.upstream.cr_fetches() == 1);
}

TEST_CASE("A file source is read for every exchange and never cached")
{
  Rig rig;
  rig.upstream.per_exchange = true;
  auto& engine = rig.make({spec("a", "A"), spec("b", "B")});
  engine.start();
  REQUIRE(rig.upstream.open_cr() == 2); // not shared either
  REQUIRE(rig.upstream.complete_cr(issued("sa-1", 0s)));
  REQUIRE(rig.upstream.complete_cr(issued("sa-2", 0s)));
  REQUIRE(rig.upstream.complete_exchange(issued("ta", 100s), "A"));
  REQUIRE(rig.upstream.complete_exchange(issued("tb", 100s), "B"));
  REQUIRE(engine.status().source.state == SourceState::ok);
  REQUIRE_FALSE(engine.status().source.expires_at.has_value());

  rig.timers.advance(80s);
  REQUIRE(rig.upstream.open_cr() == 2);
  REQUIRE(rig.upstream.open_exchanges() == 0);
  REQUIRE(rig.upstream.cr_fetches() == 4);
}

TEST_CASE("A rejected CR token is dropped and the exchange retried at once with a fresh one")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 300s)));
  REQUIRE(rig.upstream.complete_exchange(failed(http_error(401, "BXNIM0407E"))));

  REQUIRE(rig.upstream.open_cr() == 1); // no delay
  REQUIRE(rig.upstream.complete_cr(issued("cr-2", 300s)));
  REQUIRE(rig.upstream.open_exchanges() == 1);
  REQUIRE(rig.upstream.open.front().cr_token == Secret("cr-2"));
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 3600s)));

  const auto& a = profile_status(engine.status(), "a");
  REQUIRE(a.state == State::fresh);
  REQUIRE(a.failures == 0);
  REQUIRE_FALSE(a.last_error.has_value());

  // The fresh CR token is the cached one now.
  auto answer = ask(engine, "a", 3000s); // cap 1800 s: satisfied
  REQUIRE(has_token(answer, "t1"));
}

TEST_CASE("A CR token rejected twice in a row is retried only once, then backs off at the cap")
{
  Rig rig;
  rig.random.fallback = 0.0; // a transient failure would retry at once
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 300s)));
  REQUIRE(rig.upstream.complete_exchange(failed(http_error(401, "BXNIM0407E"))));
  REQUIRE(rig.upstream.complete_cr(issued("cr-2", 300s)));
  REQUIRE(rig.upstream.complete_exchange(failed(http_error(401, "BXNIM0407E"))));

  REQUIRE(rig.upstream.open.empty());
  REQUIRE(rig.upstream.cr_fetches() == 2);
  REQUIRE(rig.upstream.exchanges() == 2);
  const auto& a = profile_status(engine.status(), "a");
  REQUIRE(a.state == State::failed);
  REQUIRE(a.failures == 1);
  REQUIRE(a.last_error->code == "BXNIM0407E");
  REQUIRE(a.refresh_at == FakeClock::k_unix_start + 60);

  rig.timers.advance(59s);
  REQUIRE(rig.upstream.open.empty());
  rig.timers.advance(1s);
  REQUIRE(rig.upstream.open_cr() == 1); // the rejected token was dropped
}

TEST_CASE("A CR token fetch failure fails the attempt and is the source's last error")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A"), spec("b", "B")});
  engine.start();
  UpstreamError down;
  down.failure = Failure::timeout;
  down.message = "IMDS did not answer";
  REQUIRE(rig.upstream.complete_cr(failed(down)));

  REQUIRE(rig.upstream.exchanges() == 0);
  Status status = engine.status();
  REQUIRE(status.source.state == SourceState::failed);
  REQUIRE(status.source.last_error->failure == Failure::timeout);
  for (const auto& p : status.profiles) {
    REQUIRE(p.state == State::failed);
    REQUIRE(p.failures == 1);
    REQUIRE(p.last_error->failure == Failure::timeout);
  }

  // Both retry after 0.5 * 1 s and share the next fetch.
  rig.timers.advance(500ms);
  REQUIRE(rig.upstream.open_cr() == 1);
  REQUIRE(rig.upstream.complete_cr(issued("cr-2", 300s)));
  REQUIRE(rig.upstream.open_exchanges() == 2);
  status = engine.status();
  REQUIRE(status.source.state == SourceState::ok);
  REQUIRE_FALSE(status.source.last_error.has_value());
}

// --- refresh ahead --------------------------------------------------------------

TEST_CASE("A token is refreshed at at_fraction of its lifetime from when its request was sent, jittered by at most 5 %")
{
  const double u = GENERATE(0.0, 0.5, 0.999999);
  Rig rig;
  rig.random.script = {u};
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  rig.timers.advance(5s); // the exchange takes 5 s
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 3600s)));

  const Duration expected = refresh_delay(3600s, 0.8, u);
  REQUIRE(seconds_of(expected) == Approx(0.8 * 3600 * (1.0 + 0.05 * (2 * u - 1))));
  // The exchange was sent at the start: its 5 s in flight count.
  REQUIRE(profile_status(engine.status(), "a").refresh_at
          == FakeClock::k_unix_start + std::chrono::ceil<std::chrono::seconds>(expected).count());
  rig.timers.advance(expected - 5s - 1ms);
  REQUIRE(rig.upstream.open_exchanges() == 0);
  REQUIRE(state_of(engine, "a") == State::fresh);
  rig.timers.advance(1ms);
  REQUIRE(rig.upstream.open_exchanges() == 1);
  REQUIRE(state_of(engine, "a") == State::refreshing);
}

TEST_CASE("Over two days refreshes stay within 0.95 to 1.05 of at_fraction times the lifetime")
{
  Rig rig;
  rig.random.seed(42);
  rig.upstream.answer_all(300s, 3600s);
  rig.upstream.latency = 250ms;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  rig.timers.advance(48h);

  // From an exchange call (the lifetime counts from when it was sent) to the
  // first call of the next attempt (a CR token fetch or the exchange).
  std::vector<double> delays;
  std::optional<TimePoint> sent;
  for (const auto& call : rig.upstream.history) {
    if (sent) {
      delays.push_back(seconds_of(call.at - *sent));
      sent.reset();
    }
    if (call.is_exchange) {
      sent = call.at;
    }
  }
  REQUIRE(delays.size() > 50);
  const double shortest = *std::min_element(delays.begin(), delays.end());
  const double longest = *std::max_element(delays.begin(), delays.end());
  REQUIRE(shortest >= 0.95 * 2880 - 1e-6);
  REQUIRE(longest <= 1.05 * 2880 + 1e-6);
  // The jitter is real: both halves of the band are used.
  REQUIRE(shortest < 0.99 * 2880);
  REQUIRE(longest > 1.01 * 2880);
}

TEST_CASE("A day of hourly tokens takes about 30 exchanges and callers always get a valid token at once")
{
  Rig rig;
  rig.random.seed(7);
  rig.upstream.answer_all(300s, 3600s);
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  rig.timers.advance(1s);

  std::size_t answered_at_once = 0;
  std::set<std::string> seen;
  for (int minute = 0; minute < 24 * 60; ++minute) {
    auto answer = ask(engine, "a");
    REQUIRE(answer->has_value());
    REQUIRE(answer->value().has_value());
    const Grant& grant = *answer->value();
    REQUIRE(grant.expires_in >= 60);
    REQUIRE(grant.expires_at == rig.clock.unix_now() + grant.expires_in);
    seen.insert(std::string(grant.access_token.expose()));
    ++answered_at_once;
    rig.timers.advance(60s);
  }
  REQUIRE(answered_at_once == 24 * 60);
  // 86400 s / (2880 s ± 5 %) refreshes plus the first exchange.
  REQUIRE(rig.upstream.exchanges() >= 29);
  REQUIRE(rig.upstream.exchanges() <= 33);
  REQUIRE(seen.size() + 1 >= rig.upstream.exchanges()); // every token but the newest was served
  const auto& a = profile_status(engine.status(), "a");
  REQUIRE(a.failures == 0);
  REQUIRE(a.refreshes == rig.upstream.exchanges());
}

// --- single flight ----------------------------------------------------------------

TEST_CASE("A hundred cold callers share one exchange and all get its token")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  std::vector<Answer> answers;
  for (int i = 0; i < 100; ++i) {
    answers.push_back(ask(engine, "a"));
  }
  REQUIRE(rig.upstream.history.size() == 1); // the CR token fetch
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 300s)));
  REQUIRE(rig.upstream.exchanges() == 1);
  for (const auto& answer : answers) {
    REQUIRE_FALSE(answer->has_value());
  }
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 3600s)));
  for (const auto& answer : answers) {
    REQUIRE(has_token(answer, "t1"));
  }
  REQUIRE(engine.status().upstream_calls == 2);
  REQUIRE(rig.timers.pending() == 1); // the waiters' timer is gone
}

TEST_CASE("A hundred callers needing a longer-lived token share one early refresh")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 100s)));
  rig.timers.advance(60s); // 40 s left
  std::vector<Answer> answers;
  for (int i = 0; i < 100; ++i) {
    answers.push_back(ask(engine, "a", 50s));
  }
  REQUIRE(rig.upstream.open_exchanges() == 1);
  REQUIRE(rig.upstream.complete_exchange(issued("t2", 100s)));
  for (const auto& answer : answers) {
    REQUIRE(has_token(answer, "t2"));
  }
  REQUIRE(rig.upstream.exchanges() == 2);
}

TEST_CASE("Cold callers of a never started engine also share one exchange")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  auto first = ask(engine, "a");
  auto second = ask(engine, "a");
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 300s)));
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 3600s)));
  REQUIRE(rig.upstream.exchanges() == 1);
  REQUIRE(has_token(first, "t1"));
  REQUIRE(has_token(second, "t1"));
}

// --- failures and backoff ---------------------------------------------------------

TEST_CASE("Backoff delays are full jitter over a cap doubling from 1 s to 60 s")
{
  UpstreamError transient = http_error(503);
  for (unsigned n = 1; n <= 10; ++n) {
    const Duration cap = std::min<Duration>(1s * (1L << std::min(n - 1, 6U)), 60s);
    REQUIRE(retry_delay(n, transient, 0.0) == Duration::zero());
    REQUIRE(retry_delay(n, transient, 0.5) == cap / 2);
    REQUIRE(retry_delay(n, transient, 0.999999) <= cap);
    REQUIRE(retry_delay(n, transient, 0.999999) > cap * 99 / 100);
  }
  REQUIRE(retry_delay(7, transient, 0.999999) <= 60s);
  REQUIRE(retry_delay(1000, transient, 0.999999) <= 60s);
}

TEST_CASE("Retry-After is honoured as a lower bound and a definitive error waits the whole cap")
{
  REQUIRE(retry_delay(1, http_error(429, "", 30s), 0.5) == 30s);
  REQUIRE(retry_delay(7, http_error(503, "", 5s), 0.5) == 30s);     // backoff is longer
  REQUIRE(retry_delay(1, http_error(503, "", 100000s), 0.5) == 1h); // capped
  REQUIRE(retry_delay(1, http_error(400, "BXNIM0398E"), 0.0) == 60s);
  REQUIRE(retry_delay(1, http_error(403), 0.0) == 60s);
  REQUIRE(retry_delay(1, http_error(400, "", 120s), 0.0) == 120s);
}

TEST_CASE("Consecutive failures retry after 1, 2, 4 ... 60 s and a success resets the sequence")
{
  Rig rig;
  rig.random.fallback = 0.999999;
  rig.upstream.latency = 0ms;
  rig.upstream.answer_all(3600s, 3600s);
  bool fail = true;
  rig.upstream.exchange_responder = [&fail](const ProfileTarget&, const Secret&) {
    return fail ? failed(http_error(503)) : issued("ok", 3600s);
  };
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  rig.timers.advance(200s);

  const auto times = rig.upstream.exchange_times();
  const double caps[] = {1, 2, 4, 8, 16, 32, 60, 60};
  REQUIRE(times.size() >= 9);
  for (std::size_t i = 0; i < 8; ++i) {
    const double delay = seconds_of(times[i + 1] - times[i]);
    REQUIRE(delay <= caps[i]);
    REQUIRE(delay > caps[i] * 0.99);
  }
  REQUIRE(profile_status(engine.status(), "a").failures == times.size());

  // Succeed once, then fail again: the sequence starts over at 1 s.
  fail = false;
  rig.timers.advance(60s);
  REQUIRE(state_of(engine, "a") == State::fresh);
  const std::size_t succeeded = rig.upstream.exchanges();
  fail = true;
  rig.timers.advance(4000s); // past the refresh, which fails
  const auto later = rig.upstream.exchange_times();
  REQUIRE(later.size() >= succeeded + 2);
  const double first_retry = seconds_of(later[succeeded + 1] - later[succeeded]);
  REQUIRE(first_retry <= 1.0);
  REQUIRE(first_retry > 0.99);
}

TEST_CASE("A failure with Retry-After is retried no sooner than it asks")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(failed(http_error(429, "", 30s))));
  REQUIRE(profile_status(engine.status(), "a").refresh_at == FakeClock::k_unix_start + 30);
  rig.timers.advance(30s - 1ms);
  REQUIRE(rig.upstream.open_exchanges() == 0);
  rig.timers.advance(1ms);
  REQUIRE(rig.upstream.open_exchanges() == 1);
}

TEST_CASE("A definitive error is recorded and retried at the cap, not sooner")
{
  Rig rig;
  rig.random.fallback = 0.0;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(failed(http_error(400, "BXNIM0398E"))));
  const auto& a = profile_status(engine.status(), "a");
  REQUIRE(a.state == State::failed);
  REQUIRE(a.last_error->code == "BXNIM0398E");
  REQUIRE(a.last_error->request_id == "req-1");
  rig.timers.advance(60s - 1ms);
  REQUIRE(rig.upstream.open_exchanges() == 0);
  rig.timers.advance(1ms);
  REQUIRE(rig.upstream.open_exchanges() == 1);
}

TEST_CASE("Through an outage callers keep getting the cached token until it no longer qualifies")
{
  Rig rig;
  rig.upstream.answer_all(3600s, 3600s);
  int issued_count = 0;
  rig.upstream.exchange_responder = [&issued_count](const ProfileTarget&, const Secret&) {
    return issued_count++ == 0 ? issued("t1", 3600s) : failed(http_error(503));
  };
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  rig.timers.advance(1s);

  // Until 60 s (the default min_valid) before expiry: every call answered at
  // once with the cached token, no error.
  int errors = 0;
  for (int t = 1; t + 60 <= 3600; t += 10) {
    auto answer = ask(engine, "a");
    if (!has_token(answer, "t1")) {
      ++errors;
    }
    rig.timers.advance(10s);
  }
  REQUIRE(errors == 0);
  const auto& stale = profile_status(engine.status(), "a");
  REQUIRE(stale.state == State::stale);
  REQUIRE(stale.failures > 5);
  REQUIRE(stale.last_error->http_status == 503);

  // Past expiry: failed, and the expired token is never handed out.
  rig.timers.run_until(FakeClock::k_start + 3600s + 200ms + 1s);
  REQUIRE(state_of(engine, "a") == State::failed);
  auto late = ask(engine, "a", 0s);
  rig.timers.advance(11s);
  REQUIRE(is_error(late, TokenError::Code::unavailable));
  REQUIRE(late->value().error().upstream->http_status == 503);
}

// --- min_valid_s and unavailable ----------------------------------------------------

TEST_CASE("min_valid is capped at half the lifetime so a just-issued token always qualifies")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 300s)));
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 100s)));
  REQUIRE(has_token(ask(engine, "a", 1800s), "t1"));

  rig.timers.advance(55s); // 45 s left, below the 50 s cap
  REQUIRE(has_token(ask(engine, "a", 45s), "t1"));
  auto waiting = ask(engine, "a", 1800s);
  REQUIRE_FALSE(waiting->has_value());
  REQUIRE(rig.upstream.open_exchanges() == 1); // a refresh ahead of schedule
  REQUIRE(state_of(engine, "a") == State::refreshing);
  REQUIRE(rig.upstream.complete_exchange(issued("t2", 100s)));
  REQUIRE(has_token(waiting, "t2"));
  REQUIRE(waiting->value()->expires_in == 100);
  REQUIRE(rig.timers.pending() == 1); // the new refresh timer only
}

TEST_CASE("Requests without min_valid use the configured default")
{
  Rig rig;
  rig.settings.min_valid = 1000s;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 3600s)));
  rig.timers.advance(2700s); // 900 s left, refresh due at 2880 s
  REQUIRE(has_token(ask(engine, "a", 800s), "t1"));
  REQUIRE(rig.upstream.open_exchanges() == 0);
  auto answer = ask(engine, "a");
  REQUIRE_FALSE(answer->has_value());
  REQUIRE(rig.upstream.open_exchanges() == 1);
}

TEST_CASE("A request for a profile that is backing off gets unavailable at once without an upstream call")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 100s)));
  rig.timers.advance(80s);
  REQUIRE(rig.upstream.complete_exchange(failed(http_error(400, "BXNIM0398E"))));
  REQUIRE(state_of(engine, "a") == State::stale);

  const auto calls = engine.status().upstream_calls;
  const auto timers = rig.timers.pending();
  REQUIRE(has_token(ask(engine, "a", 0s), "t1")); // stale but valid
  rig.timers.advance(1500ms);
  auto answer = ask(engine, "a", 45s); // 18.5 s left
  REQUIRE(is_error(answer, TokenError::Code::unavailable));
  const TokenError& error = answer->value().error();
  REQUIRE(error.retry_after_s == 59); // the retry is due 60 s after the failure
  REQUIRE(error.upstream->code == "BXNIM0398E");
  REQUIRE(error.message.find("t1") == std::string::npos);
  REQUIRE(engine.status().upstream_calls == calls);
  REQUIRE(rig.timers.pending() == timers);
}

TEST_CASE("A request waits for a retry due within the timeout, without bringing it forward")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(failed(http_error(503, "", 5s))));
  auto answer = ask(engine, "a");
  REQUIRE_FALSE(answer->has_value());
  REQUIRE(rig.upstream.open_exchanges() == 0);
  rig.timers.advance(5s);
  REQUIRE(rig.upstream.open_exchanges() == 1);
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 3600s)));
  REQUIRE(has_token(answer, "t1"));
}

TEST_CASE("A waiter gets unavailable after the timeout and the late token is still cached")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  auto answer = ask(engine, "a");
  REQUIRE(rig.timers.pending() == 1); // the waiter timer
  rig.timers.advance(10s - 1ms);
  REQUIRE_FALSE(answer->has_value());
  rig.timers.advance(1ms);
  REQUIRE(is_error(answer, TokenError::Code::unavailable));
  REQUIRE(answer->value().error().retry_after_s == 1);
  REQUIRE(rig.timers.pending() == 0);

  REQUIRE(rig.upstream.complete_exchange(issued("t1", 3600s)));
  REQUIRE(has_token(ask(engine, "a"), "t1"));
}

TEST_CASE("Waiters get unavailable as soon as an attempt fails and the next one is too far away")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  auto answer = ask(engine, "a");
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(failed(http_error(403, "BXNIM0415E"))));
  REQUIRE(is_error(answer, TokenError::Code::unavailable));
  REQUIRE(answer->value().error().retry_after_s == 60);
  REQUIRE(answer->value().error().upstream->code == "BXNIM0415E");
  REQUIRE(rig.timers.pending() == 1); // the retry, no waiter timer
}

TEST_CASE("Waiters keep waiting through a failure whose retry is due before their deadline")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  auto answer = ask(engine, "a");
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(failed(http_error(503))));
  REQUIRE_FALSE(answer->has_value());
  rig.timers.advance(500ms); // 0.5 * 1 s
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 3600s)));
  REQUIRE(has_token(answer, "t1"));
}

TEST_CASE("An expired token is never handed out, even with min_valid 0")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 100s)));
  rig.timers.advance(80s); // the refresh hangs
  REQUIRE(rig.upstream.open_exchanges() == 1);
  rig.timers.advance(19s);
  REQUIRE(has_token(ask(engine, "a", 0s), "t1"));
  rig.timers.advance(1s);
  REQUIRE(state_of(engine, "a") == State::failed);
  auto answer = ask(engine, "a", 0s);
  REQUIRE_FALSE(answer->has_value());
  rig.timers.advance(10s);
  REQUIRE(is_error(answer, TokenError::Code::unavailable));
}

TEST_CASE("A grant reports whole seconds left and a Unix expiry fixed from when the request was sent")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  rig.timers.advance(300ms);
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 100s)));
  rig.timers.advance(1500ms);
  auto answer = ask(engine, "a", 0s);
  REQUIRE(answer->value()->expires_in == 98); // 98.2 s left
  // Sent at Unix start with 100 s to live (it arrived 0.3 s later).
  REQUIRE(answer->value()->expires_at == FakeClock::k_unix_start + 100);
  rig.timers.advance(700ms);
  auto later = ask(engine, "a", 0s);
  REQUIRE(later->value()->expires_in == 97);
  REQUIRE(later->value()->expires_at == FakeClock::k_unix_start + 100);
}

TEST_CASE("A reply without a positive lifetime counts as a malformed failure")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 0s)));
  const auto& a = profile_status(engine.status(), "a");
  REQUIRE(a.state == State::failed);
  REQUIRE(a.last_error->failure == Failure::malformed);
}

TEST_CASE("An unknown profile is answered unknown_profile at once")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  auto answer = ask(engine, "nope");
  REQUIRE(is_error(answer, TokenError::Code::unknown_profile));
  REQUIRE_FALSE(has_profile(engine, "nope"));
  REQUIRE(has_profile(engine, "a"));
  REQUIRE(engine.watch("nope", [](TokenResult) {}) == 0);
}

// --- status ------------------------------------------------------------------------

TEST_CASE("Status walks through pending, fresh, refreshing, stale and failed with its counters")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  REQUIRE(state_of(engine, "a") == State::pending);
  engine.start();
  REQUIRE(state_of(engine, "a") == State::pending);
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 100s)));
  auto s = profile_status(engine.status(), "a");
  REQUIRE(s.state == State::fresh);
  REQUIRE(s.expires_at == FakeClock::k_unix_start + 100);
  REQUIRE(s.refresh_at == FakeClock::k_unix_start + 80);

  rig.timers.advance(80s);
  s = profile_status(engine.status(), "a");
  REQUIRE(s.state == State::refreshing);
  REQUIRE_FALSE(s.refresh_at.has_value());

  REQUIRE(rig.upstream.complete_exchange(failed(http_error(503))));
  s = profile_status(engine.status(), "a");
  REQUIRE(s.state == State::stale);
  REQUIRE(s.refresh_at == FakeClock::k_unix_start + 81); // 80.5 s, rounded up
  REQUIRE(s.failures == 1);
  REQUIRE(s.refreshes == 1);

  rig.timers.advance(500ms);
  REQUIRE(state_of(engine, "a") == State::stale); // retry in flight, still failing
  REQUIRE(rig.upstream.complete_exchange(failed(http_error(503))));
  rig.timers.advance(20s); // the token expires; no timer needed for that
  REQUIRE(state_of(engine, "a") == State::failed);

  REQUIRE(rig.upstream.open_exchanges() == 1); // the next retry, in flight
  REQUIRE(rig.upstream.complete_exchange(issued("t2", 100s)));
  s = profile_status(engine.status(), "a");
  REQUIRE(s.state == State::fresh);
  REQUIRE(s.refreshes == 2);
  REQUIRE_FALSE(s.last_error.has_value());
  REQUIRE(engine.status().upstream_calls == rig.upstream.history.size());
}

TEST_CASE("State names are the protocol's")
{
  REQUIRE(to_string(State::pending) == "pending");
  REQUIRE(to_string(State::fresh) == "fresh");
  REQUIRE(to_string(State::refreshing) == "refreshing");
  REQUIRE(to_string(State::stale) == "stale");
  REQUIRE(to_string(State::failed) == "failed");
}

// --- when_settled --------------------------------------------------------------

TEST_CASE("when_settled fires once every profile has finished its first attempt, success or failure")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A"), spec("b", "B")});
  int settled = 0;
  engine.when_settled([&settled] { ++settled; });
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(issued("ta", 3600s), "A"));
  REQUIRE(settled == 0);
  REQUIRE(rig.upstream.complete_exchange(failed(http_error(400)), "B"));
  REQUIRE(settled == 1);

  engine.when_settled([&settled] { ++settled; });
  REQUIRE(settled == 2); // at once

  // A reload waits only for the new profile.
  engine.reconfigure(rig.settings, {spec("a", "A"), spec("b", "B"), spec("c", "C")});
  engine.when_settled([&settled] { ++settled; });
  REQUIRE(settled == 2);
  REQUIRE(rig.upstream.complete_exchange(issued("tc", 3600s), "C"));
  REQUIRE(settled == 3);

  // Removing the only unsettled profile settles too.
  engine.reconfigure(rig.settings, {spec("a", "A"), spec("b", "B"), spec("d", "D")});
  engine.when_settled([&settled] { ++settled; });
  REQUIRE(settled == 3);
  engine.reconfigure(rig.settings, {spec("a", "A")});
  REQUIRE(settled == 4);
}

TEST_CASE("An engine without profiles is settled as soon as it starts")
{
  Rig rig;
  auto& engine = rig.make({});
  bool settled = false;
  engine.when_settled([&settled] { settled = true; });
  REQUIRE_FALSE(settled);
  engine.start();
  REQUIRE(settled);
}

// --- reconfigure and watch --------------------------------------------------------

TEST_CASE("Reconfigure keeps unchanged profiles, fetches new ones at once and fails the removed ones")
{
  Rig rig;
  auto& engine = rig.make({spec("keep", "K"), spec("change", "C1"), spec("drop", "D")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(issued("tk", 3600s), "K"));
  REQUIRE(rig.upstream.complete_exchange(issued("tc1", 3600s), "C1"));
  REQUIRE(rig.upstream.complete_exchange(issued("td", 100s), "D"));

  rig.timers.advance(60s);
  auto drop_waiter = ask(engine, "drop", 50s); // forces a refresh of "drop"
  REQUIRE(rig.upstream.open_exchanges() == 1);
  std::vector<TokenResult> drop_events;
  REQUIRE(engine.watch("drop", [&drop_events](TokenResult r) { drop_events.push_back(r); }) != 0);
  int change_events = 0;
  engine.watch("change", [&change_events](TokenResult r) { change_events += r ? 1 : 100; });

  const auto keep_before = profile_status(engine.status(), "keep");
  const std::size_t exchanges_before = rig.upstream.exchanges();
  engine.reconfigure(rig.settings, {spec("keep", "K"), spec("change", "C2"), spec("new", "N")});

  REQUIRE(is_error(drop_waiter, TokenError::Code::unknown_profile));
  REQUIRE(drop_events.size() == 1);
  REQUIRE(drop_events[0].error().code == TokenError::Code::unknown_profile);
  REQUIRE_FALSE(has_profile(engine, "drop"));

  // "change" and "new" are fetched at once, with the cached CR token.
  REQUIRE(rig.upstream.exchanges() == exchanges_before + 2);
  REQUIRE(rig.upstream.cr_fetches() == 1);
  const auto keep_after = profile_status(engine.status(), "keep");
  REQUIRE(keep_after.state == State::fresh);
  REQUIRE(keep_after.expires_at == keep_before.expires_at);
  REQUIRE(keep_after.refresh_at == keep_before.refresh_at);
  REQUIRE(keep_after.refreshes == 1);
  REQUIRE(has_token(ask(engine, "keep"), "tk"));

  // The changed profile's old token is not served.
  auto change_answer = ask(engine, "change");
  REQUIRE_FALSE(change_answer->has_value());
  REQUIRE(state_of(engine, "change") == State::pending);

  // The removed profile's late reply is ignored.
  REQUIRE(rig.upstream.complete_exchange(issued("td2", 100s), "D"));
  REQUIRE(drop_events.size() == 1);

  REQUIRE(rig.upstream.complete_exchange(issued("tc2", 3600s), "C2"));
  REQUIRE(has_token(change_answer, "tc2"));
  REQUIRE(change_events == 1); // watchers follow the name
  REQUIRE(rig.upstream.complete_exchange(issued("tn", 3600s), "N"));
  REQUIRE(has_token(ask(engine, "new"), "tn"));

  const Status status = engine.status();
  REQUIRE(status.profiles.size() == 3);
  REQUIRE(status.profiles[0].name == "keep");
  REQUIRE(status.profiles[1].name == "change");
  REQUIRE(status.profiles[2].name == "new");
  rig.timers.advance(1s);
  REQUIRE(rig.timers.pending() == 3);
}

TEST_CASE("A forgotten CR token is fetched anew for the next exchange, and one in flight serves once")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A"), spec("b", "B")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(issued("ta", 100s), "A"));
  REQUIRE(rig.upstream.complete_exchange(issued("tb", 1000s), "B"));
  REQUIRE(engine.status().source.expires_at);

  engine.forget_cr_token(); // a reload changed the source
  CHECK(engine.status().source.state == SourceState::pending);
  CHECK_FALSE(engine.status().source.expires_at);
  REQUIRE(has_token(ask(engine, "a"), "ta")); // tokens are kept

  rig.timers.advance(80s); // a's refresh needs a CR token: a new fetch, not cr-1
  REQUIRE(rig.upstream.open_cr() == 1);
  REQUIRE(rig.upstream.open_exchanges() == 0);

  // Forgotten again while that fetch is out: its token serves the exchange
  // waiting for it, and is not kept for the next one.
  engine.forget_cr_token();
  REQUIRE(rig.upstream.complete_cr(issued("cr-2", 3600s)));
  REQUIRE(rig.upstream.open.front().cr_token == Secret("cr-2"));
  REQUIRE(rig.upstream.complete_exchange(issued("ta2", 100s), "A"));
  REQUIRE(has_token(ask(engine, "a"), "ta2"));
  rig.timers.advance(80s); // a's next refresh fetches again
  REQUIRE(rig.upstream.open_cr() == 1);
  REQUIRE(rig.upstream.complete_cr(issued("cr-3", 3600s)));
  REQUIRE(rig.upstream.open.front().cr_token == Secret("cr-3"));
  REQUIRE(rig.upstream.complete_exchange(issued("ta3", 100s), "A"));
  REQUIRE(rig.upstream.cr_fetches() == 3);
  CHECK(engine.status().source.state == SourceState::ok);

  rig.timers.advance(80s); // and cr-3, fetched after the last forget, is kept
  REQUIRE(rig.upstream.open_cr() == 0);
  REQUIRE(rig.upstream.open.front().cr_token == Secret("cr-3"));
}

TEST_CASE("Callers waiting on a profile whose target changes get the new target's token")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A1")});
  engine.start();
  auto answer = ask(engine, "a");
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  engine.reconfigure(rig.settings, {spec("a", "A2")});
  REQUIRE(rig.upstream.open_exchanges() == 2);
  REQUIRE(rig.upstream.complete_exchange(issued("old", 3600s), "A1"));
  REQUIRE_FALSE(answer->has_value());
  REQUIRE(rig.upstream.complete_exchange(issued("new", 3600s), "A2"));
  REQUIRE(has_token(answer, "new"));
  REQUIRE(rig.timers.pending() == 1);
}

TEST_CASE("A watcher gets every renewed token until it unwatches")
{
  Rig rig;
  rig.upstream.answer_all(300s, 100s);
  rig.upstream.latency = 0ms;
  auto& engine = rig.make({spec("a", "A"), spec("b", "B")});
  std::vector<std::string> seen;
  const WatchId id = engine.watch("a", [&seen](TokenResult r) {
    REQUIRE(r.has_value());
    seen.emplace_back(r->access_token.expose());
  });
  REQUIRE(id != 0);
  engine.start();
  rig.timers.advance(1s);
  REQUIRE(seen.size() == 1);
  REQUIRE(has_token(ask(engine, "a"), seen.back()));

  rig.timers.advance(80s);
  rig.timers.advance(80s);
  REQUIRE(seen.size() == 3);
  REQUIRE(std::set<std::string>(seen.begin(), seen.end()).size() == 3);
  REQUIRE(has_token(ask(engine, "a"), seen.back()));

  engine.unwatch(id);
  rig.timers.advance(80s);
  REQUIRE(seen.size() == 3);
}

TEST_CASE("A watcher that unwatches another from its callback stops that one being called")
{
  Rig rig;
  rig.upstream.answer_all(300s, 100s);
  auto& engine = rig.make({spec("a", "A")});
  int second_calls = 0;
  WatchId second = 0;
  engine.watch("a", [&engine, &second](TokenResult) { engine.unwatch(second); });
  second = engine.watch("a", [&second_calls](TokenResult) { ++second_calls; });
  engine.start();
  rig.timers.advance(1s);
  REQUIRE(second_calls == 0);
}

// --- stop, destruction and re-entrancy ------------------------------------------

TEST_CASE("Stop cancels every timer and drops every callback without calling it")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A"), spec("b", "B")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(issued("ta", 3600s), "A"));
  int called = 0;
  auto waiter = ask(engine, "b");
  engine.watch("b", [&called](TokenResult) { ++called; });
  engine.when_settled([&called] { ++called; });
  REQUIRE(rig.timers.pending() == 2); // a's refresh, b's waiter

  engine.stop();
  REQUIRE(rig.timers.pending() == 0);
  const auto calls = engine.status().upstream_calls;

  // A valid cached token is still served; nothing else starts an attempt.
  REQUIRE(has_token(ask(engine, "a", 0s), "ta"));
  REQUIRE(is_error(ask(engine, "b"), TokenError::Code::unavailable));

  REQUIRE(rig.upstream.complete_exchange(issued("tb", 3600s), "B"));
  rig.timers.advance(24h);
  REQUIRE(called == 0);
  REQUIRE_FALSE(waiter->has_value());
  REQUIRE(engine.status().upstream_calls == calls);
  REQUIRE(rig.upstream.open.empty());
}

TEST_CASE("Destroying the engine with upstream calls outstanding is safe")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A"), spec("b", "B")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  auto waiter = ask(engine, "a");
  rig.engine.reset();
  REQUIRE(rig.timers.pending() == 0);
  REQUIRE(rig.upstream.complete_exchange(issued("ta", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(failed(http_error(503))));
  REQUIRE_FALSE(waiter->has_value());
}

TEST_CASE("Destroying the engine with a CR token fetch outstanding is safe")
{
  Rig rig;
  rig.upstream.answer_all(300s, 3600s);
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  rig.engine.reset();
  rig.timers.advance(1s); // delivers the fetch to the dead engine
  REQUIRE(rig.upstream.exchanges() == 0);
}

TEST_CASE("A callback that stops the engine ends the round of answers")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  int answered = 0;
  engine.get_token("a", std::nullopt, [&](TokenResult) {
    ++answered;
    engine.stop();
  });
  engine.get_token("a", std::nullopt, [&](TokenResult) { ++answered; });
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 3600s)));
  REQUIRE(answered == 1);
}

TEST_CASE("A callback may ask again and is answered from the fresh cache")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  Answer again;
  engine.get_token("a", std::nullopt, [&](TokenResult) { again = ask(engine, "a"); });
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 3600s)));
  REQUIRE(again);
  REQUIRE(has_token(again, "t1"));
  REQUIRE(rig.upstream.exchanges() == 1);
}

TEST_CASE("BootClock counts forward")
{
  const auto a = BootClock::now();
  const auto b = BootClock::now();
  REQUIRE(a.time_since_epoch() > Duration::zero());
  REQUIRE(b >= a);
}

// --- lifetimes: from the request's sending, bounded by the JWT ---------------

namespace {

UpstreamResult issued_jwt(std::string token, std::chrono::seconds expires_in, std::chrono::seconds jwt_lifetime)
{
  IssuedToken t{Secret(std::move(token)), expires_in};
  t.jwt_lifetime = jwt_lifetime;
  t.issued_at = FakeClock::k_unix_start;
  return t;
}

} // namespace

TEST_CASE("A token's lifetime counts from when its exchange was sent, not from the reply")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  rig.timers.advance(8s); // a slow IAM: 8 s in flight
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 20s)));
  auto answer = ask(engine, "a", 0s);
  REQUIRE(has_token(answer, "t1"));
  REQUIRE(answer->value()->expires_in == 12);
  REQUIRE(answer->value()->expires_at == FakeClock::k_unix_start + 20);
  rig.timers.advance(12s);
  REQUIRE_FALSE(has_token(ask(engine, "a", 0s), "t1")); // expired 20 s after sending
}

TEST_CASE("A JWT whose exp - iat is shorter than expires_in lives only exp - iat")
{
  Rig rig;
  rig.random.fallback = 0.5; // no jitter
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(issued_jwt("t1", 3600s, 10s)));
  auto answer = ask(engine, "a", 0s);
  REQUIRE(has_token(answer, "t1"));
  REQUIRE(answer->value()->expires_in == 10);
  REQUIRE(answer->value()->expires_at == FakeClock::k_unix_start + 10);
  // Refreshed at 0.8 of 10 s, not of 3600 s.
  rig.timers.advance(7999ms);
  REQUIRE(rig.upstream.open_exchanges() == 0);
  rig.timers.advance(1ms);
  REQUIRE(rig.upstream.open_exchanges() == 1);
  // The longer of the two never wins: expires_in 5 s with a 3600 s JWT.
  REQUIRE(rig.upstream.complete_exchange(issued_jwt("t2", 5s, 3600s)));
  REQUIRE(ask(engine, "a", 0s)->value()->expires_in == 5);
}

TEST_CASE("The CR token's lifetime also counts from sending and is bounded by its JWT")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  rig.timers.advance(2s);
  REQUIRE(rig.upstream.complete_cr(issued_jwt("cr-1", 3600s, 100s)));
  REQUIRE(engine.status().source.expires_at == FakeClock::k_unix_start + 100);
}

TEST_CASE("A token that expired while its reply was in flight is a failure, not a token")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  rig.timers.advance(6s);
  REQUIRE(rig.upstream.complete_exchange(issued("t1", 5s)));
  const auto status = profile_status(engine.status(), "a");
  REQUIRE(status.state == State::failed);
  REQUIRE(status.last_error);
  REQUIRE(status.last_error->failure == Failure::malformed);
}

// --- a new CR token file brings the retry forward ---------------------------

TEST_CASE("cr_token_changed retries at once the profiles backing off on a rejected or unreadable CR token")
{
  Rig rig;
  rig.upstream.per_exchange = true; // the pod's file source
  auto& engine = rig.make({spec("rejected", "A"), spec("unreadable", "B"), spec("busy", "C")});
  engine.start();
  // Three file reads at once: A's is rejected by IAM (twice: once more with
  // a fresh read), B's cannot be read, C's gets a 503.
  REQUIRE(rig.upstream.complete_cr(issued("cr-bad", 0s)));
  UpstreamError unreadable;
  unreadable.failure = Failure::source;
  unreadable.message = "CR token file /x is empty";
  REQUIRE(rig.upstream.complete_cr(failed(unreadable)));
  REQUIRE(rig.upstream.complete_cr(issued("cr-bad", 0s)));
  REQUIRE(rig.upstream.complete_exchange(failed(http_error(401, "BXNIM0407E")), "A"));
  REQUIRE(rig.upstream.complete_cr(issued("cr-bad", 0s)));
  REQUIRE(rig.upstream.complete_exchange(failed(http_error(401, "BXNIM0407E")), "A"));
  REQUIRE(rig.upstream.complete_exchange(failed(http_error(503)), "C"));
  REQUIRE(rig.upstream.open.empty());
  for (const auto* name : {"rejected", "unreadable", "busy"}) {
    REQUIRE(profile_status(engine.status(), name).state == State::failed);
  }
  const auto reads = rig.upstream.cr_fetches();

  // Nothing retries early on its own ...
  rig.timers.advance(100ms);
  REQUIRE(rig.upstream.cr_fetches() == reads);
  // ... until the file changes: A and B read it again at once, C keeps its backoff.
  engine.cr_token_changed();
  REQUIRE(rig.upstream.cr_fetches() == reads + 2);
  REQUIRE(rig.upstream.complete_cr(issued("cr-good", 0s)));
  REQUIRE(rig.upstream.complete_cr(issued("cr-good", 0s)));
  REQUIRE(rig.upstream.complete_exchange(issued("a-1", 3600s), "A"));
  REQUIRE(rig.upstream.complete_exchange(issued("b-1", 3600s), "B"));
  REQUIRE(has_token(ask(engine, "rejected", 0s), "a-1"));
  REQUIRE(has_token(ask(engine, "unreadable", 0s), "b-1"));
  REQUIRE(profile_status(engine.status(), "busy").state == State::failed);
  REQUIRE(rig.upstream.open.empty());

  // A fresh profile is not refreshed early by a change either.
  engine.cr_token_changed();
  REQUIRE(rig.upstream.open.empty());
}

TEST_CASE("cr_token_changed does nothing before start and after stop")
{
  Rig rig;
  rig.upstream.per_exchange = true;
  auto& engine = rig.make({spec("a", "A")});
  engine.cr_token_changed();
  REQUIRE(rig.upstream.history.empty());
  engine.start();
  UpstreamError unreadable;
  unreadable.failure = Failure::source;
  REQUIRE(rig.upstream.complete_cr(failed(unreadable)));
  engine.stop();
  engine.cr_token_changed();
  REQUIRE(rig.upstream.open.empty());
}

// --- what the metrics and the audit trail read ----------------------------------

TEST_CASE("Every cached token gets the next generation, across profiles, and failures count by reason")
{
  Rig rig;
  auto& engine = rig.make({spec("a", "A"), spec("b", "B")});
  engine.start();
  REQUIRE(rig.upstream.complete_cr(issued("cr-1", 3600s)));
  REQUIRE(rig.upstream.complete_exchange(issued("tok-a", 100s), "A"));
  UpstreamError timeout;
  timeout.failure = Failure::timeout;
  REQUIRE(rig.upstream.complete_exchange(failed(timeout), "B"));

  const auto first = ask(engine, "a");
  REQUIRE(has_token(first, "tok-a"));
  const std::uint64_t generation = first->value()->generation;
  CHECK(generation == 1);
  CHECK(ask(engine, "a")->value()->generation == generation); // the same token

  rig.timers.advance(100s); // a's refresh (at most at 100 %) and b's retry are out
  REQUIRE(rig.upstream.complete_exchange(failed(http_error(503)), "B"));
  REQUIRE(rig.upstream.complete_exchange(issued("tok-a2", 100s), "A"));
  const auto renewed = ask(engine, "a");
  REQUIRE(has_token(renewed, "tok-a2"));
  CHECK(renewed->value()->generation == 2);

  const ProfileStatus b = profile_status(engine.status(), "b");
  CHECK(b.failures == 2);
  CHECK(b.failures_by[static_cast<std::size_t>(Failure::timeout)] == 1);
  CHECK(b.failures_by[static_cast<std::size_t>(Failure::http)] == 1);
  CHECK(b.failures_by[static_cast<std::size_t>(Failure::transport)] == 0);
  CHECK(to_string(Failure::malformed) == "malformed");
  CHECK(to_string(Failure::source) == "source");
}
