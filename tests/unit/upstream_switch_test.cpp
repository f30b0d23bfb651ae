// Unit tests of replacing the upstream on a reload: SwitchableUpstream (with
// fake inner upstreams whose calls wait for the test, no network) and
// same_upstream, which decides when a reload needs a new one.

#include "daemon/upstream/cloud_upstream.hpp"
#include "daemon/upstream/switchable.hpp"

#include <asio/io_context.hpp>
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <utility>
#include <vector>

using namespace iamtok;
using namespace std::chrono_literals;
using engine::ProfileTarget;
using engine::UpstreamCallback;
using engine::UpstreamResult;
using upstream::SwitchableUpstream;

namespace {

// What a test sees of a fake after handing it over: whether it still exists.
struct Probe
{
  bool destroyed = false;
};

// An upstream whose calls wait until the test answers them; its token says
// which fake answered.
class FakeUpstream final : public engine::Upstream
{
public:
  FakeUpstream(std::string name, Probe& probe, bool per_exchange = false)
    : m_name(std::move(name)), m_probe(probe), m_per_exchange(per_exchange)
  {
  }
  ~FakeUpstream() override { m_probe.destroyed = true; }
  FakeUpstream(const FakeUpstream&) = delete;
  FakeUpstream& operator=(const FakeUpstream&) = delete;

  bool cr_token_per_exchange() const override { return m_per_exchange; }
  void fetch_cr_token(UpstreamCallback done) override { open.push_back(std::move(done)); }
  void exchange(const ProfileTarget& profile, const Secret& cr_token, UpstreamCallback done) override
  {
    targets.push_back(profile);
    cr_tokens.push_back(cr_token);
    open.push_back(std::move(done));
  }

  // Answers the oldest open call with a token named after this fake.
  void answer()
  {
    REQUIRE_FALSE(open.empty());
    UpstreamCallback done = std::move(open.front());
    open.erase(open.begin());
    done(engine::IssuedToken{Secret(m_name), 60s});
  }

  std::vector<UpstreamCallback> open;
  std::vector<ProfileTarget> targets;
  std::vector<Secret> cr_tokens;

private:
  std::string m_name;
  Probe& m_probe;
  bool m_per_exchange;
};

// Makes a fake for the switch to own and keeps a pointer for the test.
std::unique_ptr<FakeUpstream> make_fake(FakeUpstream*& keep, std::string name, Probe& probe,
                                        bool per_exchange = false)
{
  auto fake = std::make_unique<FakeUpstream>(std::move(name), probe, per_exchange);
  keep = fake.get();
  return fake;
}

// A callback that records the token of each result it gets.
UpstreamCallback recorder(std::vector<std::string>& tokens)
{
  return [&tokens](UpstreamResult result) {
    REQUIRE(result.has_value());
    tokens.emplace_back(result->token.expose());
  };
}

// A switch over an "old" fake that the test can replace() with a "new" one.
struct Rig
{
  explicit Rig(bool old_per_exchange = false) : upstream(io, make_fake(old_fake, "old", old_probe, old_per_exchange)) {}

  void replace() { upstream.replace(make_fake(new_fake, "new", new_probe)); }

  asio::io_context io;
  Probe old_probe;
  Probe new_probe;
  FakeUpstream* old_fake = nullptr;
  FakeUpstream* new_fake = nullptr;
  SwitchableUpstream upstream;
};

} // namespace

TEST_CASE("the switch forwards calls to its upstream and their results back unchanged", "[upstream]")
{
  Rig rig(true);
  REQUIRE(rig.upstream.cr_token_per_exchange());

  std::vector<std::string> tokens;
  rig.upstream.fetch_cr_token(recorder(tokens));
  const ProfileTarget target{"Profile-1", "reader", "crn:v1:x"};
  rig.upstream.exchange(target, Secret("cr.token"), recorder(tokens));
  REQUIRE(rig.old_fake->open.size() == 2);
  REQUIRE(rig.old_fake->targets == std::vector<ProfileTarget>{target});
  REQUIRE(rig.old_fake->cr_tokens.front().expose() == "cr.token");
  REQUIRE(tokens.empty()); // nothing until the upstream answers

  rig.old_fake->answer();
  rig.old_fake->answer();
  REQUIRE(tokens == std::vector<std::string>{"old", "old"});

  // An error passes through as it came.
  rig.upstream.fetch_cr_token([&](UpstreamResult result) {
    REQUIRE_FALSE(result.has_value());
    REQUIRE(result.error().message == "no");
    tokens.emplace_back("error");
  });
  engine::UpstreamError error;
  error.message = "no";
  UpstreamCallback done = std::move(rig.old_fake->open.front());
  rig.old_fake->open.clear();
  done(tl::unexpected(error));
  REQUIRE(tokens.back() == "error");
  REQUIRE_FALSE(rig.old_probe.destroyed);
}

TEST_CASE("replacing an idle upstream destroys the old one at once and new calls go to the new one",
          "[upstream]")
{
  Rig rig(true);
  rig.replace();
  REQUIRE(rig.old_probe.destroyed);
  REQUIRE_FALSE(rig.upstream.cr_token_per_exchange()); // the new one's answer

  std::vector<std::string> tokens;
  rig.upstream.fetch_cr_token(recorder(tokens));
  rig.upstream.exchange({"Profile-1", "", ""}, Secret("cr"), recorder(tokens));
  REQUIRE(rig.new_fake->open.size() == 2);
  rig.new_fake->answer();
  rig.new_fake->answer();
  REQUIRE(tokens == std::vector<std::string>{"new", "new"});
  REQUIRE_FALSE(rig.new_probe.destroyed);
}

TEST_CASE("calls out when the upstream is replaced finish on the old one, which goes after the last",
          "[upstream]")
{
  Rig rig;
  std::vector<std::string> tokens;
  rig.upstream.fetch_cr_token(recorder(tokens));
  rig.upstream.exchange({"Profile-1", "", ""}, Secret("cr"), recorder(tokens));
  rig.replace();
  REQUIRE_FALSE(rig.old_probe.destroyed); // two calls still out on it

  // New calls go to the new upstream at once.
  rig.upstream.exchange({"Profile-2", "", ""}, Secret("cr"), recorder(tokens));
  REQUIRE(rig.new_fake->open.size() == 1);
  REQUIRE(rig.old_fake->open.size() == 2);

  // The old upstream's first answer arrives; one call is still out on it.
  rig.old_fake->answer();
  REQUIRE(tokens == std::vector<std::string>{"old"});
  rig.io.poll();
  REQUIRE_FALSE(rig.old_probe.destroyed);

  // Its last answer arrives too: it goes, but only once the io_context runs
  // (not from inside its own callback).
  rig.old_fake->answer();
  REQUIRE(tokens == std::vector<std::string>{"old", "old"});
  REQUIRE_FALSE(rig.old_probe.destroyed);
  rig.io.restart();
  rig.io.poll();
  REQUIRE(rig.old_probe.destroyed);

  // The new one answers as usual and stays.
  rig.new_fake->answer();
  REQUIRE(tokens == std::vector<std::string>{"old", "old", "new"});
  rig.io.restart();
  rig.io.poll();
  REQUIRE_FALSE(rig.new_probe.destroyed);
}

TEST_CASE("the old upstream is still there while its last callback runs", "[upstream]")
{
  Rig rig;
  bool alive_inside = false;
  rig.upstream.fetch_cr_token([&](UpstreamResult) { alive_inside = !rig.old_probe.destroyed; });
  rig.replace();
  rig.old_fake->answer();
  REQUIRE(alive_inside);
  REQUIRE_FALSE(rig.old_probe.destroyed);
  rig.io.poll();
  REQUIRE(rig.old_probe.destroyed);
}

TEST_CASE("each of several replaced upstreams goes after its own last call", "[upstream]")
{
  asio::io_context io;
  Probe probes[3];
  FakeUpstream* fakes[3] = {};
  SwitchableUpstream upstream(io, make_fake(fakes[0], "a", probes[0]));
  std::vector<std::string> tokens;
  upstream.fetch_cr_token(recorder(tokens));
  upstream.replace(make_fake(fakes[1], "b", probes[1]));
  upstream.fetch_cr_token(recorder(tokens));
  upstream.replace(make_fake(fakes[2], "c", probes[2]));
  REQUIRE_FALSE(probes[0].destroyed);
  REQUIRE_FALSE(probes[1].destroyed);

  fakes[1]->answer();
  io.poll();
  REQUIRE(probes[1].destroyed);
  REQUIRE_FALSE(probes[0].destroyed);

  fakes[0]->answer();
  io.restart();
  io.poll();
  REQUIRE(probes[0].destroyed);
  REQUIRE(tokens == std::vector<std::string>{"b", "a"});
  REQUIRE_FALSE(probes[2].destroyed);
}

TEST_CASE("destroying the switch destroys every upstream and abandons their calls", "[upstream]")
{
  asio::io_context io;
  Probe old_probe;
  Probe idle_probe;
  Probe current_probe;
  int calls = 0;
  {
    FakeUpstream* old_fake = nullptr;
    FakeUpstream* idle_fake = nullptr;
    FakeUpstream* current_fake = nullptr;
    SwitchableUpstream upstream(io, make_fake(old_fake, "old", old_probe));
    upstream.fetch_cr_token([&](UpstreamResult) { ++calls; });
    upstream.fetch_cr_token([&](UpstreamResult) { ++calls; });
    upstream.replace(make_fake(idle_fake, "idle", idle_probe));
    upstream.fetch_cr_token([&](UpstreamResult) { ++calls; });
    upstream.replace(make_fake(current_fake, "current", current_probe));
    upstream.exchange({"Profile-1", "", ""}, Secret("cr"), [&](UpstreamResult) { ++calls; });
    // The middle one's last call ends: its release is queued on the
    // io_context, which runs only after the switch is gone.
    idle_fake->answer();
    REQUIRE(calls == 1);
    REQUIRE_FALSE(idle_probe.destroyed);
    REQUIRE(old_fake->open.size() == 2);
    REQUIRE(current_fake->open.size() == 1);
  }
  REQUIRE(old_probe.destroyed);
  REQUIRE(idle_probe.destroyed);
  REQUIRE(current_probe.destroyed);
  io.poll(); // the queued release finds the switch gone and does nothing
  REQUIRE(calls == 1);
}

TEST_CASE("a reload needs a new upstream only when source, exchange, iam or the refresh timeouts change",
          "[upstream]")
{
  const config::Config base;
  REQUIRE(upstream::same_upstream(base, base));

  auto changed = base;
  changed.profiles.push_back(config::Profile{"p", "Profile-1", "", "", std::nullopt});
  changed.refresh.at_fraction = 0.6;
  changed.refresh.min_valid = 120s;
  changed.socket.path = "/run/other.sock";
  changed.http = config::HttpConfig{{{"127.0.0.1", 8911}}, 10};
  REQUIRE(upstream::same_upstream(base, changed));

  const auto differs = [&](auto&& change) {
    auto other = base;
    change(other);
    return !upstream::same_upstream(base, other);
  };
  REQUIRE(differs([](config::Config& c) { c.source.type = config::SourceType::file; }));
  REQUIRE(differs([](config::Config& c) { c.source.imds.endpoint = "http://127.0.0.1:8080"; }));
  REQUIRE(differs([](config::Config& c) { c.source.imds.version = "2022-03-01"; }));
  REQUIRE(differs([](config::Config& c) { c.source.imds.token_lifetime = 600s; }));
  REQUIRE(differs([](config::Config& c) { c.source.file.path = "/var/run/secrets/tokens/sa-token"; }));
  REQUIRE(differs([](config::Config& c) { c.exchange = config::Exchange::iam; }));
  REQUIRE(differs([](config::Config& c) { c.iam.endpoint = "https://private.iam.cloud.ibm.com"; }));
  REQUIRE(differs([](config::Config& c) { c.refresh.timeout = 20s; }));
  REQUIRE(differs([](config::Config& c) { c.refresh.connect_timeout = 5s; }));
}
