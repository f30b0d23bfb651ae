// End-to-end tests of daemon/upstream against a running iamtoken-sim: the
// curl-multi-on-Asio client and CloudUpstream (both sources, both exchanges,
// both IMDS versions, every fault as a typed error, keep-alive, and an
// io_context that never blocks). The io_context runs in the test thread with
// bounded run_for(). Tokens are never printed: assertions on them are booleans.

#include "daemon/upstream/cloud_upstream.hpp"
#include "daemon/upstream/http_client.hpp"
#include "tests/e2e/sim_process.hpp"

#include <asio/co_spawn.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/steady_timer.hpp>
#include <asio/streambuf.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace iamtok;
using namespace iamtok::upstream;
using namespace std::chrono_literals;
using engine::Failure;
using engine::ProfileTarget;
using engine::UpstreamResult;
using config::Config;
using config::Exchange;
using config::SourceType;
using iamtok::test::SimProcess;
using iamtok::test::TempDir;
using Clock = std::chrono::steady_clock;

namespace {

const std::string k_profile_id = "Profile-11111111-2222-4333-8444-555555555555";
const std::string k_profile_name = "reader";
const std::string k_profile_crn =
  "crn:v1:bluemix:public:iam-identity::a/0123456789abcdef0123456789abcdef::profile:" + k_profile_id;
constexpr int k_iam_lifetime = 120;

// Runs `io` in this thread until `done()` or `limit` passes.
void pump(asio::io_context& io, const std::function<bool()>& done, std::chrono::milliseconds limit = 15s)
{
  const auto deadline = Clock::now() + limit;
  while (!done() && Clock::now() < deadline) {
    if (io.stopped()) {
      io.restart();
    }
    io.run_for(20ms);
  }
}

// Runs a coroutine to completion on `io` and returns its value.
template<typename T>
T run(asio::io_context& io, asio::awaitable<T> task, std::chrono::milliseconds limit = 15s)
{
  std::optional<T> value;
  std::exception_ptr failure;
  bool done = false;
  asio::co_spawn(io, std::move(task), [&](std::exception_ptr e, T v) {
    failure = e;
    value = std::move(v);
    done = true;
  });
  pump(io, [&] { return done; }, limit);
  REQUIRE(done);
  if (failure) {
    std::rethrow_exception(failure);
  }
  return std::move(*value);
}

struct Outcome
{
  UpstreamResult result;
  std::chrono::milliseconds elapsed{0};
};

// Starts one upstream call and runs `io` until its callback; checks that the
// callback came exactly once and not from inside the call.
Outcome await_upstream(asio::io_context& io, const std::function<void(engine::UpstreamCallback)>& start,
                       std::chrono::milliseconds limit = 15s)
{
  std::optional<UpstreamResult> result;
  int calls = 0;
  bool inside = true;
  bool synchronous = false;
  const auto started = Clock::now();
  auto finished = started;
  start([&](UpstreamResult r) {
    ++calls;
    synchronous = synchronous || inside;
    finished = Clock::now();
    result = std::move(r);
  });
  inside = false;
  pump(io, [&] { return calls > 0; }, limit);
  // Let anything else that was queued run, so a second call would show.
  io.restart();
  io.poll();
  REQUIRE(calls == 1);
  REQUIRE_FALSE(synchronous);
  return {std::move(*result), std::chrono::duration_cast<std::chrono::milliseconds>(finished - started)};
}

Outcome fetch(asio::io_context& io, CloudUpstream& upstream)
{
  return await_upstream(io, [&](engine::UpstreamCallback done) { upstream.fetch_cr_token(std::move(done)); });
}

Outcome exchange(asio::io_context& io, CloudUpstream& upstream, const ProfileTarget& profile, const Secret& cr)
{
  return await_upstream(io,
                        [&](engine::UpstreamCallback done) { upstream.exchange(profile, cr, std::move(done)); });
}

// Sets (or unsets, with nullptr) an environment variable for one scope.
class ScopedEnv
{
public:
  ScopedEnv(const char* name, const char* value) : m_name(name)
  {
    if (const char* old = std::getenv(name)) {
      m_old = old;
    }
    if (value != nullptr) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv()
  {
    if (m_old) {
      setenv(m_name.c_str(), m_old->c_str(), 1);
    } else {
      unsetenv(m_name.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
  std::string m_name;
  std::optional<std::string> m_old;
};

struct Stats
{
  std::uint64_t imds_token = 0;
  std::uint64_t imds_iam_token = 0;
  std::uint64_t iam = 0;
  std::uint64_t connections = 0;
  std::uint64_t profile = 0; // by_profile[k_profile_id]
};

// iamtoken-sim with one known profile, an io_context, and a control client.
struct Rig
{
  explicit Rig(std::vector<std::string> extra = {})
    : sim(args(std::move(extra)))
  {
  }

  // IAM requests honour proxy variables: the test's environment must not
  // send loopback calls elsewhere.
  ScopedEnv http_proxy{"http_proxy", nullptr};
  ScopedEnv all_proxy{"all_proxy", nullptr};
  ScopedEnv all_proxy_upper{"ALL_PROXY", nullptr};

  static std::vector<std::string> args(std::vector<std::string> extra)
  {
    std::vector<std::string> all{"--profile", k_profile_id + ":" + k_profile_name + ":" + k_profile_crn,
                                 "--iam-lifetime", std::to_string(k_iam_lifetime)};
    all.insert(all.end(), extra.begin(), extra.end());
    return all;
  }

  // A configuration as load_config() returns it, with both endpoints at the sim.
  Config config(SourceType source, Exchange exchange_type, std::string version = "2025-08-26") const
  {
    Config config;
    config.source.type = source;
    config.exchange = exchange_type;
    config.source.imds.endpoint = sim.url();
    config.iam.endpoint = sim.url();
    config.source.imds.version = std::move(version);
    config.source.imds.token_lifetime = 300s;
    config.refresh.timeout = 5s;
    return config;
  }

  HttpResponse control(std::string method, std::string path, std::string body = {})
  {
    HttpRequest request;
    request.method = std::move(method);
    request.url = sim.url() + path;
    request.body = std::move(body);
    if (!request.body.empty()) {
      request.headers.emplace_back("Content-Type: application/json");
    }
    auto result = run(io, http.request(std::move(request)));
    REQUIRE(result.has_value());
    return std::move(*result);
  }

  void fault(const std::string& rule)
  {
    const auto response = control("POST", "/sim/faults", rule);
    INFO(response.body);
    REQUIRE(response.status >= 200);
    REQUIRE(response.status <= 299);
  }

  Stats stats()
  {
    const auto response = control("GET", "/sim/stats");
    REQUIRE(response.status == 200);
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    REQUIRE(parser.parse(response.body).get(root) == simdjson::SUCCESS);
    Stats stats;
    REQUIRE(root["imds_token"].get(stats.imds_token) == simdjson::SUCCESS);
    REQUIRE(root["imds_iam_token"].get(stats.imds_iam_token) == simdjson::SUCCESS);
    REQUIRE(root["iam"].get(stats.iam) == simdjson::SUCCESS);
    REQUIRE(root["connections"].get(stats.connections) == simdjson::SUCCESS);
    if (root["by_profile"][k_profile_id].get(stats.profile) != simdjson::SUCCESS) {
      stats.profile = 0; // no token issued for it yet
    }
    return stats;
  }

  // A CR token from the sim's IMDS.
  Secret identity_token()
  {
    CloudUpstream imds(io, config(SourceType::imds, Exchange::iam));
    auto outcome = fetch(io, imds);
    REQUIRE(outcome.result.has_value());
    return outcome.result->token;
  }

  SimProcess sim;
  asio::io_context io;
  HttpClient http{io};
};

// Measures how late a 10 ms periodic timer on `io` fires: the io_context's
// responsiveness while other work is in flight.
class LagProbe
{
public:
  explicit LagProbe(asio::io_context& io) : m_timer(io) { arm(Clock::now() + k_period); }
  ~LagProbe() { m_stopped = true; }
  LagProbe(const LagProbe&) = delete;
  LagProbe& operator=(const LagProbe&) = delete;

  void stop()
  {
    m_stopped = true;
    m_timer.cancel();
  }
  std::chrono::milliseconds worst() const { return m_worst; }
  int ticks() const { return m_ticks; }

private:
  static constexpr auto k_period = 10ms;

  void arm(Clock::time_point due)
  {
    m_timer.expires_at(due);
    m_timer.async_wait([this, due](const std::error_code& error) {
      if (error || m_stopped) {
        return;
      }
      ++m_ticks;
      m_worst = std::max(m_worst, std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - due));
      arm(Clock::now() + k_period);
    });
  }

  asio::steady_timer m_timer;
  bool m_stopped = false;
  int m_ticks = 0;
  std::chrono::milliseconds m_worst{0};
};

// A one-shot HTTP server on loopback that records each request head and
// answers every request with `reply`, then closes: a stand-in for a proxy or
// for an upstream that misbehaves in ways the sim does not.
class ScriptedServer
{
public:
  ScriptedServer(asio::io_context& io, std::string reply)
    : m_acceptor(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)), m_reply(std::move(reply))
  {
    asio::co_spawn(io, serve(), [](std::exception_ptr) {});
  }
  ~ScriptedServer() { m_acceptor.close(); }
  ScriptedServer(const ScriptedServer&) = delete;
  ScriptedServer& operator=(const ScriptedServer&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(m_acceptor.local_endpoint().port()); }
  const std::vector<std::string>& heads() const { return m_heads; }

private:
  asio::awaitable<void> serve()
  {
    for (;;) {
      auto socket = co_await m_acceptor.async_accept(asio::use_awaitable);
      asio::streambuf buffer;
      const std::size_t n = co_await asio::async_read_until(socket, buffer, "\r\n\r\n", asio::use_awaitable);
      std::string head(asio::buffers_begin(buffer.data()), asio::buffers_begin(buffer.data()) + n);
      // Read the body too: closing with unread input would send a RST.
      std::size_t length = 0;
      std::string lower = head;
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
      if (const auto at = lower.find("content-length:"); at != std::string::npos) {
        length = std::stoul(lower.substr(at + 15));
      }
      const std::size_t buffered = buffer.size() - n;
      if (length > buffered) {
        co_await asio::async_read(socket, buffer, asio::transfer_exactly(length - buffered), asio::use_awaitable);
      }
      m_heads.push_back(std::move(head));
      co_await asio::async_write(socket, asio::buffer(m_reply), asio::use_awaitable);
      std::error_code ignored;
      socket.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    }
  }

  asio::ip::tcp::acceptor m_acceptor;
  std::string m_reply;
  std::vector<std::string> m_heads;
};

} // namespace

TEST_CASE("IMDS gives an instance identity token with both API versions", "[upstream][e2e]")
{
  Rig rig;
  for (const auto* version : {"2025-08-26", "2022-03-01"}) {
    INFO(version);
    CloudUpstream upstream(rig.io, rig.config(SourceType::imds, Exchange::iam, version));
    REQUIRE_FALSE(upstream.cr_token_per_exchange());
    const auto outcome = fetch(rig.io, upstream);
    REQUIRE(outcome.result.has_value());
    REQUIRE_FALSE(outcome.result->token.empty());
    REQUIRE(outcome.result->expires_in == 300s); // as asked in {"expires_in":300}
  }
  REQUIRE(rig.stats().imds_token == 2);
}

TEST_CASE("IAM exchanges an IMDS token for profiles given by id, name and crn", "[upstream][e2e]")
{
  Rig rig;
  CloudUpstream upstream(rig.io, rig.config(SourceType::imds, Exchange::iam));
  const auto cr = fetch(rig.io, upstream);
  REQUIRE(cr.result.has_value());
  const ProfileTarget targets[] = {{k_profile_id, "", ""}, {"", k_profile_name, ""}, {"", "", k_profile_crn},
                                   {k_profile_id, k_profile_name, k_profile_crn}};
  for (const auto& target : targets) {
    const auto outcome = exchange(rig.io, upstream, target, cr.result->token);
    REQUIRE(outcome.result.has_value());
    REQUIRE_FALSE(outcome.result->token.empty());
    REQUIRE_FALSE(outcome.result->token == cr.result->token);
    REQUIRE(outcome.result->expires_in == std::chrono::seconds(k_iam_lifetime));
  }
  const auto stats = rig.stats();
  REQUIRE(stats.iam == 4);
  REQUIRE(stats.profile == 4);
  REQUIRE(stats.imds_iam_token == 0);
}

TEST_CASE("IMDS exchanges its own token for profiles given by id, name and crn, with both versions",
          "[upstream][e2e]")
{
  Rig rig;
  for (const auto* version : {"2025-08-26", "2022-03-01"}) {
    INFO(version);
    CloudUpstream upstream(rig.io, rig.config(SourceType::imds, Exchange::imds, version));
    const auto cr = fetch(rig.io, upstream);
    REQUIRE(cr.result.has_value());
    for (const auto& target : {ProfileTarget{k_profile_id, "", ""}, ProfileTarget{"", k_profile_name, ""},
                               ProfileTarget{"", "", k_profile_crn}}) {
      const auto outcome = exchange(rig.io, upstream, target, cr.result->token);
      REQUIRE(outcome.result.has_value());
      REQUIRE_FALSE(outcome.result->token.empty());
      REQUIRE(outcome.result->expires_in > 0s);
    }
  }
  const auto stats = rig.stats();
  REQUIRE(stats.imds_iam_token == 6);
  REQUIRE(stats.profile == 6);
  REQUIRE(stats.iam == 0);
}

TEST_CASE("the file source reads a fresh CR token for every fetch and IAM accepts it", "[upstream][e2e]")
{
  Rig rig;
  TempDir dir;
  const auto path = (dir / "sa-token").string();
  const Secret first = rig.identity_token();
  std::ofstream(path) << first.expose() << "\n";

  auto config = rig.config(SourceType::file, Exchange::iam);
  config.source.file.path = path;
  CloudUpstream upstream(rig.io, config);
  REQUIRE(upstream.cr_token_per_exchange());
  const auto read = fetch(rig.io, upstream);
  REQUIRE(read.result.has_value());
  REQUIRE(read.result->token == first);

  const auto outcome = exchange(rig.io, upstream, {k_profile_id, "", ""}, read.result->token);
  REQUIRE(outcome.result.has_value());
  REQUIRE(outcome.result->expires_in == std::chrono::seconds(k_iam_lifetime));

  // Rotated in place: the next fetch sees the new content.
  const Secret second = rig.identity_token();
  REQUIRE_FALSE(second == first);
  std::ofstream(path, std::ios::trunc) << second.expose() << "\n";
  const auto reread = fetch(rig.io, upstream);
  REQUIRE(reread.result.has_value());
  REQUIRE(reread.result->token == second);
  REQUIRE(rig.stats().imds_token == 2); // only the two the test asked for
}

TEST_CASE("a missing CR-token file is a source error naming the path, delivered later", "[upstream][e2e]")
{
  asio::io_context io;
  TempDir dir;
  Config config;
  config.source.type = SourceType::file;
  config.exchange = Exchange::iam;
  config.source.file.path = (dir / "absent").string();
  CloudUpstream upstream(io, config);
  const auto outcome = fetch(io, upstream);
  REQUIRE_FALSE(outcome.result.has_value());
  REQUIRE(outcome.result.error().failure == Failure::source);
  REQUIRE(outcome.result.error().message.find(config.source.file.path) != std::string::npos);
}

TEST_CASE("a 503 with Retry-After is a transient HTTP error carrying the delay", "[upstream][e2e]")
{
  Rig rig;
  CloudUpstream upstream(rig.io, rig.config(SourceType::imds, Exchange::iam));
  const Secret cr = rig.identity_token();

  rig.fault(R"({"target":"iam","mode":"status","status":503,"retry_after_s":2,"count":1})");
  const auto iam = exchange(rig.io, upstream, {k_profile_id, "", ""}, cr);
  REQUIRE_FALSE(iam.result.has_value());
  const auto& error = iam.result.error();
  REQUIRE(error.failure == Failure::http);
  REQUIRE(error.http_status == 503);
  REQUIRE(error.retry_after == 2s);
  REQUIRE_FALSE(error.definitive);
  REQUIRE_FALSE(error.cr_token_rejected);
  REQUIRE_FALSE(error.code.empty());
  REQUIRE_FALSE(error.request_id.empty());

  rig.fault(R"({"target":"imds_token","mode":"status","status":503,"retry_after_s":3,"count":1})");
  const auto imds = fetch(rig.io, upstream);
  REQUIRE_FALSE(imds.result.has_value());
  REQUIRE(imds.result.error().failure == Failure::http);
  REQUIRE(imds.result.error().retry_after == 3s);
  REQUIRE_FALSE(imds.result.error().definitive);
  REQUIRE_FALSE(imds.result.error().request_id.empty()); // the IMDS trace

  // The faults were one-shot: the next calls succeed.
  REQUIRE(fetch(rig.io, upstream).result.has_value());
  REQUIRE(exchange(rig.io, upstream, {k_profile_id, "", ""}, cr).result.has_value());
}

TEST_CASE("400 and 401 answers are definitive, and 401 says the CR token was rejected", "[upstream][e2e]")
{
  Rig rig;
  const Secret cr = rig.identity_token();
  CloudUpstream iam(rig.io, rig.config(SourceType::imds, Exchange::iam));
  CloudUpstream imds(rig.io, rig.config(SourceType::imds, Exchange::imds));

  rig.fault(R"({"target":"iam","mode":"status","status":400,"count":1})");
  const auto bad = exchange(rig.io, iam, {k_profile_id, "", ""}, cr);
  REQUIRE_FALSE(bad.result.has_value());
  REQUIRE(bad.result.error().http_status == 400);
  REQUIRE(bad.result.error().definitive);
  REQUIRE_FALSE(bad.result.error().cr_token_rejected);

  rig.fault(R"({"target":"iam","mode":"status","status":401,"count":1})");
  const auto rejected = exchange(rig.io, iam, {k_profile_id, "", ""}, cr);
  REQUIRE_FALSE(rejected.result.has_value());
  REQUIRE(rejected.result.error().http_status == 401);
  REQUIRE(rejected.result.error().definitive);
  REQUIRE(rejected.result.error().cr_token_rejected);

  rig.fault(R"({"target":"imds_iam_token","mode":"status","status":401,"count":1})");
  const auto imds_rejected = exchange(rig.io, imds, {k_profile_id, "", ""}, cr);
  REQUIRE_FALSE(imds_rejected.result.has_value());
  REQUIRE(imds_rejected.result.error().cr_token_rejected);
  REQUIRE(imds_rejected.result.error().definitive);
}

TEST_CASE("the services' own refusals map to their codes", "[upstream][e2e]")
{
  Rig rig;
  const Secret cr = rig.identity_token();
  CloudUpstream iam(rig.io, rig.config(SourceType::imds, Exchange::iam));
  CloudUpstream imds(rig.io, rig.config(SourceType::imds, Exchange::imds));

  const auto unknown = exchange(rig.io, iam, {"Profile-00000000-0000-4000-8000-00000000ffff", "", ""}, cr);
  REQUIRE_FALSE(unknown.result.has_value());
  REQUIRE(unknown.result.error().http_status == 400);
  REQUIRE(unknown.result.error().code == "BXNIM0398E");
  REQUIRE(unknown.result.error().definitive);
  REQUIRE_FALSE(unknown.result.error().request_id.empty());
  REQUIRE(unknown.result.error().message.find("BXNIM0398E") != std::string::npos);

  const Secret forged("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
  const auto invalid = exchange(rig.io, iam, {k_profile_id, "", ""}, forged);
  REQUIRE_FALSE(invalid.result.has_value());
  REQUIRE(invalid.result.error().code == "BXNIM0407E");
  REQUIRE(invalid.result.error().cr_token_rejected);
  REQUIRE(invalid.result.error().message.find(forged.expose()) == std::string::npos);

  const auto imds_invalid = exchange(rig.io, imds, {k_profile_id, "", ""}, forged);
  REQUIRE_FALSE(imds_invalid.result.has_value());
  REQUIRE(imds_invalid.result.error().http_status == 401);
  REQUIRE(imds_invalid.result.error().code == "unauthenticated");
  REQUIRE(imds_invalid.result.error().cr_token_rejected);
}

TEST_CASE("a hanging IMDS times out within the deadline while the io_context keeps running",
          "[upstream][e2e]")
{
  Rig rig;
  auto config = rig.config(SourceType::imds, Exchange::iam);
  config.refresh.timeout = 1s;
  CloudUpstream upstream(rig.io, config);
  rig.fault(R"({"target":"imds_token","mode":"hang","count":1})");

  LagProbe probe(rig.io);
  const auto outcome = fetch(rig.io, upstream);
  probe.stop();
  REQUIRE_FALSE(outcome.result.has_value());
  REQUIRE(outcome.result.error().failure == Failure::timeout);
  REQUIRE(outcome.result.error().message.starts_with(
    "IMDS did not answer: is the metadata service enabled on this instance, and is the hop limit large enough?"));
  // Not before the deadline (curl counts whole milliseconds: 100 ms of slack);
  // that it was this deadline and no other shows in the failure: timeout.
  REQUIRE(outcome.elapsed >= config.refresh.timeout - 100ms);
  // The io_context kept running throughout the hang: its timer fired again
  // and again, and never as late as a thread blocked for the whole hang
  // would make it (the timeout).
  REQUIRE(probe.ticks() >= 5);
  REQUIRE(probe.worst() < config.refresh.timeout);
}

TEST_CASE("a hanging IAM times out with a message naming IAM", "[upstream][e2e]")
{
  Rig rig;
  const Secret cr = rig.identity_token();
  auto config = rig.config(SourceType::imds, Exchange::iam);
  config.refresh.timeout = 1s;
  CloudUpstream upstream(rig.io, config);
  rig.fault(R"({"target":"iam","mode":"hang","count":1})");
  const auto outcome = exchange(rig.io, upstream, {k_profile_id, "", ""}, cr);
  REQUIRE_FALSE(outcome.result.has_value());
  REQUIRE(outcome.result.error().failure == Failure::timeout);
  REQUIRE(outcome.result.error().message.starts_with("IAM did not answer within 1000 ms"));
}

TEST_CASE("a reset connection is a transport error and garbage is malformed", "[upstream][e2e]")
{
  Rig rig;
  const Secret cr = rig.identity_token();
  CloudUpstream upstream(rig.io, rig.config(SourceType::imds, Exchange::iam));

  rig.fault(R"({"target":"imds_token","mode":"reset","count":1})");
  const auto reset = fetch(rig.io, upstream);
  REQUIRE_FALSE(reset.result.has_value());
  REQUIRE(reset.result.error().failure == Failure::transport);
  REQUIRE(reset.result.error().http_status == 0);

  rig.fault(R"({"target":"iam","mode":"reset","count":1})");
  const auto iam_reset = exchange(rig.io, upstream, {k_profile_id, "", ""}, cr);
  REQUIRE_FALSE(iam_reset.result.has_value());
  REQUIRE(iam_reset.result.error().failure == Failure::transport);

  rig.fault(R"({"target":"iam","mode":"garbage","count":1})");
  const auto garbage = exchange(rig.io, upstream, {k_profile_id, "", ""}, cr);
  REQUIRE_FALSE(garbage.result.has_value());
  REQUIRE(garbage.result.error().failure == Failure::malformed);
  REQUIRE(garbage.result.error().http_status == 200);
  REQUIRE(garbage.result.error().message.find("not JSON") == std::string::npos); // no body in messages

  rig.fault(R"({"target":"imds_token","mode":"garbage","count":1})");
  const auto imds_garbage = fetch(rig.io, upstream);
  REQUIRE_FALSE(imds_garbage.result.has_value());
  REQUIRE(imds_garbage.result.error().failure == Failure::malformed);
}

TEST_CASE("a refused connection is a transport error", "[upstream][e2e]")
{
  asio::io_context io;
  // A port that was just free: nothing listens there.
  std::uint16_t port = 0;
  {
    asio::ip::tcp::acceptor probe(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = probe.local_endpoint().port();
  }
  Config config;
  config.source.imds.endpoint = "http://127.0.0.1:" + std::to_string(port);
  CloudUpstream upstream(io, config);
  const auto outcome = fetch(io, upstream);
  REQUIRE_FALSE(outcome.result.has_value());
  REQUIRE(outcome.result.error().failure == Failure::transport);
  REQUIRE(outcome.result.error().message.find("IMDS token request failed") == 0);
}

TEST_CASE("a slow answer still succeeds, just later", "[upstream][e2e]")
{
  Rig rig;
  const Secret cr = rig.identity_token();
  CloudUpstream upstream(rig.io, rig.config(SourceType::imds, Exchange::iam));
  rig.fault(R"({"target":"iam","mode":"slow","delay_ms":400,"count":1})");
  const auto outcome = exchange(rig.io, upstream, {k_profile_id, "", ""}, cr);
  REQUIRE(outcome.result.has_value());
  REQUIRE(outcome.elapsed >= 400ms);
}

TEST_CASE("sequential requests reuse one kept-alive connection", "[upstream][e2e]")
{
  Rig rig;
  CloudUpstream upstream(rig.io, rig.config(SourceType::imds, Exchange::iam));
  rig.control("POST", "/sim/reset");
  for (int i = 0; i < 5; ++i) {
    const auto cr = fetch(rig.io, upstream);
    REQUIRE(cr.result.has_value());
    REQUIRE(exchange(rig.io, upstream, {k_profile_id, "", ""}, cr.result->token).result.has_value());
  }
  const auto stats = rig.stats();
  REQUIRE(stats.imds_token == 5);
  REQUIRE(stats.iam == 5);
  // The upstream's own connection; the control client's was opened before the reset.
  REQUIRE(stats.connections == 1);
}

TEST_CASE("concurrent requests run in parallel on one thread", "[upstream][e2e]")
{
  constexpr auto k_latency = 1000ms;
  Rig rig({"--latency-ms", std::to_string(k_latency.count())});
  const Secret cr = rig.identity_token();
  CloudUpstream upstream(rig.io, rig.config(SourceType::imds, Exchange::iam));
  constexpr int k_requests = 20;
  int ok = 0;
  int calls = 0;
  LagProbe probe(rig.io);
  const auto started = Clock::now();
  for (int i = 0; i < k_requests; ++i) {
    upstream.exchange({k_profile_id, "", ""}, cr, [&](UpstreamResult result) {
      ++calls;
      ok += result.has_value() ? 1 : 0;
    });
  }
  pump(rig.io, [&] { return calls == k_requests; }, k_requests * k_latency);
  const auto elapsed = Clock::now() - started;
  probe.stop();
  REQUIRE(calls == k_requests);
  REQUIRE(ok == k_requests);
  // One after another they would take k_requests x k_latency (20 s): less
  // shows they overlapped. A thread blocked on one request would make the
  // probe's timer at least k_latency late.
  REQUIRE(elapsed < k_requests * k_latency);
  REQUIRE(probe.worst() < k_latency);
}

TEST_CASE("a request can be cancelled, which ends its transfer", "[upstream][e2e]")
{
  using namespace asio::experimental::awaitable_operators;
  Rig rig;
  rig.fault(R"({"target":"imds_token","mode":"hang","count":1})");
  HttpClient client(rig.io);
  HttpRequest request;
  request.method = "PUT";
  request.url = rig.sim.url() + "/identity/v1/token?version=2025-08-26";
  request.headers = {"Metadata-Flavor: ibm", "Content-Type: application/json"};
  request.body = "{}";
  constexpr auto k_request_timeout = 10s;
  request.timeout = k_request_timeout;

  const auto started = Clock::now();
  auto race = [&]() -> asio::awaitable<bool> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 200ms);
    auto winner = co_await (client.request(std::move(request)) || timer.async_wait(asio::use_awaitable));
    co_return winner.index() == 1;
  };
  const bool timer_won = run(rig.io, race());
  REQUIRE(timer_won);
  // `||` waits for the loser to finish: the cancellation ended it, not its own timeout.
  REQUIRE(Clock::now() - started < k_request_timeout);
  REQUIRE(client.in_flight() == 0);
}

TEST_CASE("replies larger than 64 KiB are refused as malformed", "[upstream][e2e]")
{
  asio::io_context io;
  const std::string body(100 * 1024, 'x');
  ScriptedServer server(io, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                              + std::to_string(body.size()) + "\r\n\r\n" + body);
  HttpClient client(io);
  HttpRequest request;
  request.url = server.url() + "/big";
  const auto result = run(io, client.request(std::move(request)));
  REQUIRE_FALSE(result.has_value());
  REQUIRE(result.error().failure == Failure::malformed);
  REQUIRE(result.error().message.find("64 KiB") != std::string::npos);
}

TEST_CASE("the Retry-After header is captured as sent, an HTTP-date included", "[upstream][e2e]")
{
  asio::io_context io;
  ScriptedServer server(io, "HTTP/1.1 429 Too Many Requests\r\nretry-AFTER:  Wed, 21 Oct 2099 07:28:00 GMT \r\n"
                            "Content-Length: 0\r\nConnection: close\r\n\r\n");
  HttpClient client(io);
  HttpRequest request;
  request.url = server.url() + "/";
  const auto result = run(io, client.request(std::move(request)));
  REQUIRE(result.has_value());
  REQUIRE(result->status == 429);
  REQUIRE(result->retry_after == "Wed, 21 Oct 2099 07:28:00 GMT");
}

TEST_CASE("IAM requests honour the proxy variables and IMDS requests ignore them", "[upstream][e2e]")
{
  Rig rig;
  const Secret cr = rig.identity_token();
  ScriptedServer proxy(rig.io, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  const ScopedEnv http_proxy("http_proxy", proxy.url().c_str());
  const ScopedEnv no_proxy("no_proxy", nullptr);
  const ScopedEnv no_proxy_upper("NO_PROXY", nullptr);

  CloudUpstream upstream(rig.io, rig.config(SourceType::imds, Exchange::iam));
  // IMDS: straight to the sim.
  REQUIRE(fetch(rig.io, upstream).result.has_value());
  REQUIRE(proxy.heads().empty());
  // IAM: through the proxy, which answers 503.
  const auto outcome = exchange(rig.io, upstream, {k_profile_id, "", ""}, cr);
  REQUIRE_FALSE(outcome.result.has_value());
  REQUIRE(outcome.result.error().http_status == 503);
  REQUIRE(proxy.heads().size() == 1);
  REQUIRE(proxy.heads()[0].starts_with("POST " + rig.sim.url() + "/identity/token HTTP/1.1\r\n"));

  // The IMDS exchange ignores the proxy too.
  CloudUpstream imds(rig.io, rig.config(SourceType::imds, Exchange::imds));
  REQUIRE(exchange(rig.io, imds, {k_profile_id, "", ""}, cr).result.has_value());
  REQUIRE(proxy.heads().size() == 1);
}

TEST_CASE("destroying the upstream with calls in flight abandons them cleanly", "[upstream][e2e]")
{
  Rig rig;
  rig.fault(R"({"target":"imds_token","mode":"hang","count":2})");
  int calls = 0;
  {
    CloudUpstream upstream(rig.io, rig.config(SourceType::imds, Exchange::iam));
    upstream.fetch_cr_token([&](UpstreamResult) { ++calls; });
    // One started (the simulator has it), one not yet.
    bool arrived = false;
    pump(rig.io, [&] {
      arrived = arrived || rig.stats().imds_token == 1;
      return arrived;
    });
    REQUIRE(arrived);
    upstream.fetch_cr_token([&](UpstreamResult) { ++calls; });
  }
  rig.io.restart();
  rig.io.run_for(200ms);
  REQUIRE(calls == 0);
  // The control client still works on the same io_context.
  REQUIRE(rig.stats().imds_token == 1);
}

// --- following IBM's current services -----------------------------------------

TEST_CASE("a profile with no selector asks IMDS for the instance's default trusted profile", "[upstream][e2e]")
{
  SECTION("the instance has a default")
  {
    Rig rig({"--default-profile", k_profile_id});
    const Secret cr = rig.identity_token();
    CloudUpstream imds(rig.io, rig.config(SourceType::imds, Exchange::imds));
    const auto outcome = exchange(rig.io, imds, {"", "", ""}, cr);
    REQUIRE(outcome.result.has_value());
    REQUIRE(rig.stats().profile == 1); // minted for the default profile
  }
  SECTION("the instance has none: missing_field, definitive")
  {
    Rig rig;
    const Secret cr = rig.identity_token();
    CloudUpstream imds(rig.io, rig.config(SourceType::imds, Exchange::imds));
    const auto outcome = exchange(rig.io, imds, {"", "", ""}, cr);
    REQUIRE_FALSE(outcome.result.has_value());
    REQUIRE(outcome.result.error().http_status == 400);
    REQUIRE(outcome.result.error().code == "missing_field");
    REQUIRE(outcome.result.error().definitive);
  }
}

TEST_CASE("IAM's errorDetails reaches the error message", "[upstream][e2e]")
{
  Rig rig;
  const Secret cr = rig.identity_token();
  CloudUpstream iam(rig.io, rig.config(SourceType::imds, Exchange::iam));
  const auto unknown = exchange(rig.io, iam, {"Profile-00000000-0000-4000-8000-00000000ffff", "", ""}, cr);
  REQUIRE_FALSE(unknown.result.has_value());
  INFO(unknown.result.error().message);
  REQUIRE(unknown.result.error().message.find("no trusted profile with that profile_id trusts this compute resource")
          != std::string::npos);
}

TEST_CASE("a redirect is never followed: a definitive error naming the Location", "[upstream][e2e]")
{
  Rig rig;
  const Secret cr = rig.identity_token();
  CloudUpstream iam(rig.io, rig.config(SourceType::imds, Exchange::iam));
  CloudUpstream imds(rig.io, rig.config(SourceType::imds, Exchange::imds));
  // The Location is the sim itself: following it would reach a working endpoint.
  const auto before = rig.stats();
  rig.fault(fmt::format(R"({{"target":"iam","mode":"redirect","status":307,"location":"{}/identity/token","count":1}})",
                        rig.sim.url()));
  const auto moved = exchange(rig.io, iam, {k_profile_id, "", ""}, cr);
  REQUIRE_FALSE(moved.result.has_value());
  REQUIRE(moved.result.error().http_status == 307);
  REQUIRE(moved.result.error().definitive);
  REQUIRE(moved.result.error().message.find("redirect to " + rig.sim.url() + "/identity/token")
          != std::string::npos);
  REQUIRE(rig.stats().iam == before.iam + 1); // one request, not two

  rig.fault(R"({"target":"imds_iam_token","mode":"redirect","count":1})");
  const auto imds_moved = exchange(rig.io, imds, {k_profile_id, "", ""}, cr);
  REQUIRE_FALSE(imds_moved.result.has_value());
  REQUIRE(imds_moved.result.error().http_status == 302);
  REQUIRE(imds_moved.result.error().definitive);
  REQUIRE(imds_moved.result.error().message.find("https://iam.elsewhere.invalid/identity/token") != std::string::npos);
}

TEST_CASE("an HTML error page is transient and keeps the request id from the headers", "[upstream][e2e]")
{
  Rig rig;
  const Secret cr = rig.identity_token();
  CloudUpstream iam(rig.io, rig.config(SourceType::imds, Exchange::iam));
  CloudUpstream imds(rig.io, rig.config(SourceType::imds, Exchange::imds));
  rig.fault(R"({"target":"all","mode":"html","status":502,"count":2})");
  for (auto* upstream : {&iam, &imds}) {
    const auto page = exchange(rig.io, *upstream, {k_profile_id, "", ""}, cr);
    REQUIRE_FALSE(page.result.has_value());
    const auto& error = page.result.error();
    INFO(error.message);
    REQUIRE(error.http_status == 502);
    REQUIRE_FALSE(error.definitive);
    REQUIRE(error.request_id.size() == 36); // the sim's uuid, from Transaction-Id / X-Request-Id
    REQUIRE(error.message.find("request id " + error.request_id) != std::string::npos);
  }
}

TEST_CASE("a token whose JWT exp comes before expires_in says carries its shorter JWT lifetime",
          "[upstream][e2e]")
{
  Rig rig;
  const Secret cr = rig.identity_token();
  CloudUpstream imds(rig.io, rig.config(SourceType::imds, Exchange::imds));
  rig.fault(R"({"target":"imds_iam_token","mode":"short_jwt","jwt_lifetime_s":7,"count":1})");
  const auto outcome = exchange(rig.io, imds, {k_profile_id, "", ""}, cr);
  REQUIRE(outcome.result.has_value());
  REQUIRE(outcome.result->expires_in == std::chrono::seconds(k_iam_lifetime));
  REQUIRE(outcome.result->jwt_lifetime == 7s);
  REQUIRE(outcome.result->issued_at.has_value());
}

TEST_CASE("a JSON body without a JSON content type is accepted by the sim's IMDS", "[upstream][e2e]")
{
  Rig rig;
  HttpRequest request;
  request.method = "PUT";
  request.url = rig.sim.url() + "/identity/v1/token?version=2025-08-26";
  request.headers = {"Metadata-Flavor: ibm"}; // curl then sends its form content type
  request.body = R"({"expires_in":60})";
  const auto reply = run(rig.io, rig.http.request(std::move(request)));
  REQUIRE(reply.has_value());
  REQUIRE(reply->status == 200);
  REQUIRE_FALSE(reply->request_id.empty()); // X-Request-Id
}

namespace {

// openssl s_server on loopback with a self-signed certificate no CA vouches for.
struct UntrustedTlsServer
{
  explicit UntrustedTlsServer(const TempDir& dir)
  {
    const auto key = (dir / "key.pem").string();
    const auto cert = (dir / "cert.pem").string();
    {
      iamtok::test::Process make_cert({"/usr/bin/openssl",
                                       {"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                                        "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
                                        "-days", "2"},
                                       {},
                                       {}});
      REQUIRE(make_cert.wait(30s) == 0);
    }
    server.emplace(iamtok::test::ProcessOptions{
      "/usr/bin/openssl", {"s_server", "-accept", "127.0.0.1:0", "-cert", cert, "-key", key, "-www"}, {}, {}});
    REQUIRE(server->wait_for_output("ACCEPT 127.0.0.1:", iamtok::test::Process::Stream::out, 30s));
    const auto text = server->stdout_text();
    const auto at = text.find("ACCEPT 127.0.0.1:") + std::string_view("ACCEPT 127.0.0.1:").size();
    url = "https://127.0.0.1:" + std::to_string(std::stoi(text.substr(at)));
  }

  std::optional<iamtok::test::Process> server;
  std::string url;
};

} // namespace

TEST_CASE("a certificate that does not verify is definitive, with curl's reason", "[upstream][e2e]")
{
  if (!std::filesystem::exists("/usr/bin/openssl")) {
    WARN("no /usr/bin/openssl: skipped");
    return;
  }
  TempDir dir;
  UntrustedTlsServer tls(dir);
  asio::io_context io;
  Config config;
  config.source.type = SourceType::imds;
  config.exchange = Exchange::iam;
  config.iam.endpoint = tls.url;
  config.refresh.timeout = 10s;
  ScopedEnv https_proxy{"https_proxy", nullptr};
  ScopedEnv https_proxy_upper{"HTTPS_PROXY", nullptr};
  CloudUpstream upstream(io, config);
  const auto outcome = exchange(io, upstream, {k_profile_id, "", ""}, Secret("cr.token.value"));
  REQUIRE_FALSE(outcome.result.has_value());
  const auto& error = outcome.result.error();
  INFO(error.message);
  REQUIRE(error.failure == Failure::transport);
  REQUIRE(error.definitive);
  REQUIRE(error.message.find("certificate") != std::string::npos); // curl's own words
  REQUIRE(error.message.find("cr.token.value") == std::string::npos);
}

TEST_CASE("the connect timeout is the configured one", "[upstream][e2e]")
{
  // A listener whose accept queue is full drops new SYNs, so a connect never
  // completes: listen(0) plus connections queued ahead of ours (raw
  // non-blocking connects: they must not wait themselves).
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  acceptor.listen(0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(acceptor.local_endpoint().port());
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::vector<int> fillers;
  for (int i = 0; i < 3; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address); // EINPROGRESS or done
    fillers.push_back(fd);
  }
  Config config;
  config.source.type = SourceType::imds;
  config.source.imds.endpoint = "http://127.0.0.1:" + std::to_string(acceptor.local_endpoint().port());
  config.refresh.timeout = 20s;
  config.refresh.connect_timeout = 5s; // neither the 2 s default nor the 20 s request timeout
  CloudUpstream upstream(io, config);
  const auto outcome = await_upstream(
    io, [&](engine::UpstreamCallback done) { upstream.fetch_cr_token(std::move(done)); }, 30s);
  for (const int fd : fillers) {
    ::close(fd);
  }
  REQUIRE_FALSE(outcome.result.has_value());
  INFO(outcome.result.error().message);
  REQUIRE(outcome.result.error().failure == Failure::timeout);
  REQUIRE(outcome.elapsed >= 4500ms);
  REQUIRE(outcome.elapsed < 15s);
}
