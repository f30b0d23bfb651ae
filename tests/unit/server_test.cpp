#include "daemon/server/server.hpp"

#include "daemon/engine/system_ports.hpp"
#include "daemon/log/log.hpp"
#include "proto/codec.hpp"
#include "tests/support/dispatch_fixture.hpp"
#include "tests/support/other_user.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/log_capture.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <grp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <optional>
#include <string>
#include <thread>

using namespace iamtok;
using namespace std::chrono_literals;

namespace {

using iamtok::test::TempDir;

// How long the server, on its own thread, may take to react to a client or
// to a call posted to it: scheduling on a loaded machine only, so generous;
// every wait ends as soon as its condition holds.
constexpr std::chrono::milliseconds k_react_limit = 20s;

// Engine timers on the io_context.
class AsioTimers final : public engine::Timers
{
public:
  explicit AsioTimers(asio::io_context& io) : m_io(io) {}

  engine::TimerId start(engine::Duration after, std::function<void()> fire) override
  {
    const engine::TimerId id = ++m_last;
    auto timer = std::make_unique<asio::steady_timer>(m_io, after);
    timer->async_wait([this, id, fire = std::move(fire)](std::error_code ec) {
      if (ec || m_timers.erase(id) == 0) {
        return;
      }
      fire();
    });
    m_timers.emplace(id, std::move(timer));
    return id;
  }

  void cancel(engine::TimerId id) override
  {
    if (auto it = m_timers.find(id); it != m_timers.end()) {
      it->second->cancel();
      m_timers.erase(it);
    }
  }

private:
  asio::io_context& m_io;
  std::map<engine::TimerId, std::unique_ptr<asio::steady_timer>> m_timers;
  engine::TimerId m_last = 0;
};

// Answers every call after a posted hop: CR tokens, then access tokens
// "tok-N" with `lifetime`.
class PostedUpstream final : public engine::Upstream
{
public:
  explicit PostedUpstream(asio::io_context& io) : m_io(io) {}
  std::chrono::seconds lifetime{3600};

  bool cr_token_per_exchange() const override { return false; }
  void fetch_cr_token(engine::UpstreamCallback done) override
  {
    asio::post(m_io, [done = std::move(done)] { done(engine::IssuedToken{Secret("cr"), 3600s}); });
  }
  void exchange(const engine::ProfileTarget&, const Secret&, engine::UpstreamCallback done) override
  {
    auto timer = std::make_shared<asio::steady_timer>(m_io, delay);
    timer->async_wait([this, timer, done = std::move(done)](std::error_code) {
      done(engine::IssuedToken{Secret(fmt::format("tok-{}", ++m_serial)), lifetime});
    });
  }
  std::chrono::milliseconds delay{0}; // before an exchange is answered

private:
  asio::io_context& m_io;
  int m_serial = 0;
};


config::Config make_config(const std::string& socket_path)
{
  config::Config config;
  config.socket.path = socket_path;
  config.profiles = {test::profile("reader", "P1"),
                     test::profile("locked", "P2", {}, {}, config::Allow{{1001}, {}, {}, {}})};
  return config;
}

server::Limits short_limits()
{
  server::Limits limits;
  limits.idle_timeout = 5s;
  limits.partial_line_timeout = 5s;
  limits.drain_timeout = 500ms;
  return limits;
}

// A server with a real engine on an io_context thread.
struct Harness
{
  TempDir dir;
  std::string path = dir.file("d.sock");
  config::Config config = make_config(path);
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  engine::SystemClock clock;
  AsioTimers timers{io};
  engine::SystemRandom random;
  PostedUpstream upstream{io};
  std::optional<engine::Engine> engine;
  std::optional<server::Server> server;
  std::thread thread;
  bool running = false;

  Harness() = default;

  // Creates the server and listens; returns listen()'s result.
  tl::expected<void, std::string> listen(server::Limits limits = short_limits())
  {
    engine.emplace(engine::Ports{clock, timers, random, upstream}, engine::Settings{}, test::specs(make_config(path)));
    server.emplace(io, *engine, config, limits);
    return server->listen();
  }

  void start(server::Limits limits = short_limits())
  {
    auto listening = listen(limits);
    if (!listening) {
      FAIL(listening.error());
    }
    server->start();
    thread = std::thread([this] { io.run(); });
    running = true;
  }

  template<typename F> auto on_io(F f)
  {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    asio::post(io, [&task] { task(); });
    REQUIRE(result.wait_for(k_react_limit) == std::future_status::ready);
    return result.get();
  }

  // Stops the server; true if `done` was called within k_react_limit.
  bool stop()
  {
    if (!running) {
      return true;
    }
    std::promise<void> stopped;
    auto future = stopped.get_future();
    on_io([&] { server->stop([&] { stopped.set_value(); }); });
    const bool ok = future.wait_for(k_react_limit) == std::future_status::ready;
    on_io([&] { engine->stop(); });
    work.reset();
    io.stop();
    thread.join();
    running = false;
    return ok;
  }

  ~Harness()
  {
    stop();
    server.reset();
    engine.reset();
  }
};

// A blocking client whose reads give up after k_react_limit.
struct Client
{
  int fd = -1;
  std::string pending;

  explicit Client(const std::string& path)
  {
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    timeval timeout{std::chrono::duration_cast<std::chrono::seconds>(k_react_limit).count(), 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0);
  }
  ~Client() { ::close(fd); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void send(std::string_view data) const
  {
    REQUIRE(::send(fd, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size()));
  }

  // The next line (without '\n'), or nullopt on EOF, error or timeout.
  std::optional<std::string> line()
  {
    for (int i = 0; i < 100'000; ++i) {
      if (auto nl = pending.find('\n'); nl != std::string::npos) {
        std::string result = pending.substr(0, nl);
        pending.erase(0, nl + 1);
        return result;
      }
      char buffer[4096];
      const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
      if (n <= 0) {
        return std::nullopt;
      }
      pending.append(buffer, static_cast<std::size_t>(n));
    }
    return std::nullopt;
  }

  // True if the daemon closed the connection (EOF or reset) within k_react_limit.
  bool closed()
  {
    char buffer[256];
    for (int i = 0; i < 1000; ++i) {
      const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
      if (n == 0 || (n < 0 && errno == ECONNRESET)) {
        return true;
      }
      if (n < 0) {
        return false; // timeout
      }
    }
    return false;
  }
};

proto::Reply reply_of(const std::optional<std::string>& line)
{
  REQUIRE(line);
  auto reply = proto::parse_reply(*line);
  REQUIRE(reply);
  return std::move(*reply);
}

proto::RequestId int_id(std::int64_t id)
{
  return proto::RequestId(id);
}

// Binds a plain socket at `path`; listening if `listen`, else closed at once (stale).
int bind_raw(const std::string& path, bool listen)
{
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0);
  if (listen) {
    REQUIRE(::listen(fd, 4) == 0);
    return fd;
  }
  ::close(fd);
  return -1;
}

} // namespace

TEST_CASE("pipelined requests are answered in order")
{
  Harness h;
  h.start();
  Client c(h.path);
  c.send("{\"op\":\"ping\",\"id\":1}\n{\"op\":\"token\",\"profile\":\"reader\",\"id\":2}\n"
         "{\"op\":\"status\",\"id\":3}\n{\"op\":\"ping\",\"id\":4}\n");
  const auto first = reply_of(c.line());
  CHECK(first.id == int_id(1));
  const auto token = reply_of(c.line());
  CHECK(token.id == int_id(2));
  CHECK(token.is_token());
  const auto status = c.line();
  REQUIRE(status);
  CHECK(reply_of(status).id == int_id(3));
  auto info = proto::parse_status_reply(*status);
  REQUIRE(info);
  CHECK(info->counters.connections == 1);
  CHECK(info->counters.requests >= 3);
  CHECK(reply_of(c.line()).id == int_id(4));
  const auto counters = h.on_io([&] { return h.server->counters(); });
  CHECK(counters.requests == 4);
  CHECK(counters.errors == 0);
}

TEST_CASE("a line longer than 4096 bytes gets request_too_large and the connection is closed")
{
  Harness h;
  h.start();
  Client c(h.path);
  c.send(std::string(5000, 'x'));
  CHECK(reply_of(c.line()).error_code() == proto::ErrorCode::request_too_large);
  CHECK(c.closed());
}

TEST_CASE("a line of exactly 4096 bytes is read as a request")
{
  Harness h;
  h.start();
  Client c(h.path);
  std::string line = R"({"op":"ping","id":1,"pad":")";
  line += std::string(4096 - line.size() - 2, 'a') + "\"}";
  REQUIRE(line.size() == 4096);
  c.send(line + "\n");
  const auto reply = reply_of(c.line());
  CHECK(reply.ok);
  CHECK(reply.id == int_id(1));
}

TEST_CASE("a malformed request gets bad_request and the connection stays open")
{
  Harness h;
  h.start();
  Client c(h.path);
  c.send("not json\n");
  CHECK(reply_of(c.line()).error_code() == proto::ErrorCode::bad_request);
  c.send("{\"op\":\"ping\",\"id\":2}\n");
  CHECK(reply_of(c.line()).id == int_id(2));
  CHECK(h.on_io([&] { return h.server->counters().errors; }) == 1);
}

TEST_CASE("an idle connection is closed after the idle timeout")
{
  Harness h;
  auto limits = short_limits();
  limits.idle_timeout = 300ms;
  h.start(limits);
  Client c(h.path);
  // Before the request: the server's idle timer cannot start earlier.
  const auto began = std::chrono::steady_clock::now();
  c.send("{\"op\":\"ping\"}\n");
  CHECK(reply_of(c.line()).ok);
  CHECK(c.closed());
  CHECK(std::chrono::steady_clock::now() - began >= limits.idle_timeout);
}

TEST_CASE("a connection holding a partial line is closed after the partial-line timeout")
{
  Harness h;
  auto limits = short_limits();
  limits.partial_line_timeout = 300ms;
  limits.idle_timeout = 10 * k_react_limit; // longer than closed() waits: only the partial line can close it
  h.start(limits);
  Client c(h.path);
  const auto began = std::chrono::steady_clock::now();
  c.send("{\"op\":");
  CHECK(c.closed());
  CHECK(std::chrono::steady_clock::now() - began >= limits.partial_line_timeout);
}

TEST_CASE("a connection past max_connections gets busy and is closed")
{
  Harness h;
  h.config.socket.max_connections = 2;
  h.start();
  Client a(h.path);
  Client b(h.path);
  a.send("{\"op\":\"ping\"}\n");
  b.send("{\"op\":\"ping\"}\n");
  CHECK(reply_of(a.line()).ok);
  CHECK(reply_of(b.line()).ok);
  Client c(h.path);
  CHECK(reply_of(c.line()).error_code() == proto::ErrorCode::busy);
  CHECK(c.closed());
  a.send("{\"op\":\"ping\",\"id\":5}\n");
  CHECK(reply_of(a.line()).id == int_id(5));
}

TEST_CASE("after a half-close the received requests are answered, then the connection closes")
{
  Harness h;
  h.start();
  Client c(h.path);
  c.send("{\"op\":\"ping\",\"id\":1}\n{\"op\":\"token\",\"profile\":\"reader\",\"id\":2}\n{\"op\":\"ping\",\"id\":3}");
  REQUIRE(::shutdown(c.fd, SHUT_WR) == 0);
  CHECK(reply_of(c.line()).id == int_id(1));
  CHECK(reply_of(c.line()).is_token());
  CHECK(reply_of(c.line()).id == int_id(3)); // the unterminated last line
  CHECK(c.closed());
}

TEST_CASE("a line cut short by a half-close gets bad_request, then the connection closes")
{
  Harness h;
  h.start();
  Client c(h.path);
  c.send("{\"op\":\"pi");
  REQUIRE(::shutdown(c.fd, SHUT_WR) == 0);
  CHECK(reply_of(c.line()).error_code() == proto::ErrorCode::bad_request);
  CHECK(c.closed());
}

TEST_CASE("a watch gets the current token at once, then the renewed one")
{
  Harness h;
  h.upstream.lifetime = 2s; // renewed after 1.6 s
  h.start();
  Client c(h.path);
  c.send("{\"op\":\"watch\",\"profile\":\"reader\",\"id\":\"w\"}\n");
  const auto first = reply_of(c.line());
  REQUIRE(first.is_token());
  CHECK(first.id == proto::RequestId(std::string("w")));
  const auto second = reply_of(c.line());
  REQUIRE(second.is_token());
  const bool renewed = !(second.access_token == first.access_token);
  CHECK(renewed);
}

TEST_CASE("a watch connection is exempt from the idle timeout")
{
  Harness h;
  auto limits = short_limits();
  limits.idle_timeout = 200ms;
  h.start(limits);
  Client c(h.path);
  c.send("{\"op\":\"watch\",\"profile\":\"reader\"}\n");
  REQUIRE(reply_of(c.line()).is_token());
  timeval timeout{0, 800'000};
  ::setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  char byte = 0;
  const ssize_t n = ::recv(c.fd, &byte, 1, 0);
  CHECK(n < 0);
  CHECK((errno == EAGAIN || errno == EWOULDBLOCK));
  CHECK(h.on_io([&] { return h.server->counters().connections; }) == 1);
}

TEST_CASE("a watcher that a reload forbids gets one error line and is closed")
{
  Harness h;
  h.start();
  Client c(h.path);
  c.send("{\"op\":\"watch\",\"profile\":\"reader\"}\n");
  REQUIRE(reply_of(c.line()).is_token());
  auto changed = h.config;
  changed.profiles.erase(changed.profiles.begin());
  h.on_io([&] { h.server->reconfigure(changed); });
  CHECK(reply_of(c.line()).error_code() == proto::ErrorCode::unknown_profile);
  CHECK(c.closed());
}

TEST_CASE("a caller outside a profile's allow list is forbidden on the real socket")
{
  Harness h;
  h.config.socket.mode = 0666;
  REQUIRE(::chmod(h.dir.path().c_str(), 0755) == 0);
  if (const auto problem = test::other_user_problem({{h.dir.path().string(), X_OK}}); !problem.empty()) {
    WARN("cannot connect as another user (" << problem << "); skipped");
    return;
  }
  h.start();

  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const std::string request = "{\"op\":\"token\",\"profile\":\"locked\",\"id\":1}\n"
                              "{\"op\":\"token\",\"profile\":\"nope\",\"id\":2}\n";
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, h.path.c_str(), sizeof(address.sun_path) - 1);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Only async-signal-safe calls here.
    ::close(pipe_fds[0]);
    const int fd = test::connect_as_other_user(reinterpret_cast<const sockaddr*>(&address), sizeof(address));
    timeval timeout{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    if (::write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
      ::_exit(4);
    }
    ::shutdown(fd, SHUT_WR);
    char buffer[2048];
    for (int i = 0; i < 100; ++i) {
      const ssize_t n = ::read(fd, buffer, sizeof(buffer));
      if (n <= 0) {
        break;
      }
      if (::write(pipe_fds[1], buffer, static_cast<std::size_t>(n)) != n) {
        ::_exit(5);
      }
    }
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string output;
  char buffer[2048];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof(buffer))) > 0;) {
    output.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(pipe_fds[0]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  const auto nl = output.find('\n');
  REQUIRE(nl != std::string::npos);
  CHECK(reply_of(output.substr(0, nl)).error_code() == proto::ErrorCode::forbidden);
  CHECK(reply_of(output.substr(nl + 1)).error_code() == proto::ErrorCode::unknown_profile);
}

TEST_CASE("the socket file gets the configured mode, and stop removes it")
{
  Harness h;
  h.config.socket.mode = 0640;
  h.start();
  struct stat st = {};
  REQUIRE(::lstat(h.path.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 07777) == 0640);
  CHECK(h.stop());
  CHECK(::lstat(h.path.c_str(), &st) != 0);
}

TEST_CASE("stop closes idle connections at once and lets an in-flight request finish")
{
  Harness h;
  auto limits = short_limits();
  limits.drain_timeout = 10 * k_react_limit; // longer than stop() waits: only the reply can end the drain
  h.upstream.delay = 300ms;
  h.start(limits);
  Client idle(h.path);
  idle.send("{\"op\":\"ping\"}\n");
  CHECK(reply_of(idle.line()).ok);
  Client busy(h.path);
  busy.send("{\"op\":\"token\",\"profile\":\"reader\",\"id\":1}\n{\"op\":\"ping\",\"id\":2}\n");
  // Wait until the token request is in the engine's hands.
  for (int i = 0; i < 200 && h.on_io([&] { return h.server->counters().requests; }) < 2; ++i) {
    std::this_thread::sleep_for(5ms);
  }
  REQUIRE(h.on_io([&] { return h.server->counters().requests; }) == 2);
  CHECK(h.stop());
  CHECK(idle.closed());
  const auto token = reply_of(busy.line());
  CHECK(token.is_token());
  CHECK(token.id == int_id(1));
  CHECK(busy.closed()); // the pipelined ping is not answered after stop
}

TEST_CASE("a stale socket file is replaced")
{
  Harness h;
  bind_raw(h.path, false);
  struct stat st = {};
  REQUIRE(::lstat(h.path.c_str(), &st) == 0);
  h.start();
  Client c(h.path);
  c.send("{\"op\":\"ping\"}\n");
  CHECK(reply_of(c.line()).ok);
}

TEST_CASE("a live socket or a file that is not a socket is refused")
{
  SECTION("live socket")
  {
    Harness h;
    const int fd = bind_raw(h.path, true);
    auto result = h.listen();
    ::close(fd);
    REQUIRE_FALSE(result);
    CHECK(result.error().find("in use") != std::string::npos);
  }
  SECTION("regular file")
  {
    Harness h;
    { std::FILE* file = std::fopen(h.path.c_str(), "w"); REQUIRE(file); std::fclose(file); }
    auto result = h.listen();
    REQUIRE_FALSE(result);
    CHECK(result.error().find("not a socket") != std::string::npos);
    struct stat st = {};
    CHECK(::lstat(h.path.c_str(), &st) == 0); // left alone
  }
}

// Sanitizer runtimes need descriptors of their own (UBSan's vptr check opens
// a pipe), so this runs in builds without them only.
#ifndef __SANITIZE_ADDRESS__
TEST_CASE("out of file descriptors, accepting pauses with one warning and resumes later")
{
  Harness h;
  h.start();
  test::LogCapture capture(log::Level::warn);
  // Unconnected client sockets made while descriptors are still available.
  std::vector<int> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(clients.back() >= 0);
  }
  rlimit original = {};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &original) == 0);
  rlimit lowered = original;
  lowered.rlim_cur = 256;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &lowered) == 0);
  std::vector<int> fillers; // take every descriptor left
  for (int fd; fillers.size() < 1024 && (fd = ::dup(0)) >= 0;) {
    fillers.push_back(fd);
  }
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, h.path.c_str(), sizeof(address.sun_path) - 1);
  for (int fd : clients) {
    CHECK(::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0);
  }
  // The first failed accept warns; then a few pauses of 100 ms must not.
  const auto deadline = std::chrono::steady_clock::now() + k_react_limit;
  while (h.on_io([&] { return capture.lines().empty(); }) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  std::this_thread::sleep_for(350ms);
  const auto warnings = h.on_io([&] { return capture.lines(); });
  for (int fd : fillers) {
    ::close(fd);
  }
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &original) == 0);
  CHECK(warnings.size() == 1);

  const std::string ping = "{\"op\":\"ping\",\"id\":8}\n";
  timeval timeout{5, 0};
  for (int fd : clients) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    REQUIRE(::send(fd, ping.data(), ping.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(ping.size()));
    char buffer[256] = {};
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer) - 1, 0);
    REQUIRE(n > 0);
    CHECK(reply_of(std::string(buffer, static_cast<std::size_t>(n)).substr(0, static_cast<std::size_t>(n) - 1)).id
          == int_id(8));
    ::close(fd);
  }
}
#endif
