#include "daemon/server/server.hpp"

#include "daemon/log/log.hpp"
#include "daemon/server/line_reader.hpp"
#include "daemon/server/peer.hpp"
#include "proto/codec.hpp"
#include "util/error.hpp"
#include "util/fd.hpp"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>
#include <set>
#include <utility>

namespace iamtok::server {

namespace {

using Protocol = asio::local::stream_protocol;
using SteadyClock = std::chrono::steady_clock;
constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);
// Bytes read per readiness wakeup (a request line is at most 4096 + '\n').
constexpr std::size_t k_read_chunk = 4096;

// A watcher keeps at most this many renewals queued when it does not read:
// older token lines are dropped (a newer token supersedes them).
constexpr std::size_t k_max_pending_renewals = 4;
// Paused this long when accept fails for lack of file descriptors or memory.
constexpr auto k_accept_pause = std::chrono::milliseconds(100);
// A `busy` line gets this long to be written.
constexpr auto k_busy_write_timeout = std::chrono::seconds(1);

// EMFILE, ENFILE, ENOBUFS, ENOMEM. Compares plain values (no virtual calls,
// no allocation): it runs when the process is out of descriptors.
bool is_resource_shortage(const std::error_code& ec)
{
  if (ec.category() != asio::error::get_system_category()) {
    return false;
  }
  const int value = ec.value();
  return value == EMFILE || value == ENFILE || value == ENOBUFS || value == ENOMEM;
}

// Stale or live: connects to the socket at `path`. Returns true if someone
// answers, false if the connection is refused (a stale file), or a message.
tl::expected<bool, std::string> probe_socket(const std::string& path)
{
  const util::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    return tl::unexpected(fmt::format("socket: {}", util::errno_text(errno)));
  }
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), std::min(path.size(), sizeof(address.sun_path) - 1));
  const int rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  const int error = errno;
  if (rc == 0) {
    return true;
  }
  if (error == ECONNREFUSED) {
    return false;
  }
  return tl::unexpected(fmt::format("cannot probe existing socket {}: {}", path, util::errno_text(error)));
}

} // namespace

struct Connection
{
  explicit Connection(Protocol::socket s)
    : socket(std::move(s)),
      wake(socket.get_executor()),
      timer(socket.get_executor()),
      watchdog(socket.get_executor())
  {
    wake.expires_at(SteadyClock::time_point::max());
    watchdog.expires_at(SteadyClock::time_point::max());
  }

  // Queues a reply and wakes the session. In watch mode, keeps at most a
  // few renewals: the oldest token line is dropped first.
  void push(ReplyLine reply)
  {
    if (closed) {
      return;
    }
    if (watching && !reply.last && out.size() >= k_max_pending_renewals) {
      const auto it = std::find_if(out.begin(), out.end(), [](const ReplyLine& r) { return !r.last; });
      if (it != out.end()) {
        out.erase(it);
        log::debug("watch connection (pid {}): dropped a renewal it did not read", caller.pid);
      }
    }
    out.push_back(std::move(reply));
    wake.cancel();
  }

  void close()
  {
    if (closed) {
      return;
    }
    closed = true;
    std::error_code ignored;
    socket.shutdown(Protocol::socket::shutdown_both, ignored);
    socket.close(ignored);
    wake.cancel();
    timer.cancel();
    watchdog.cancel();
  }

  Protocol::socket socket;
  asio::steady_timer wake;  // never expires: cancelled to wake the session
  asio::steady_timer timer; // the deadline of a write that did not complete at once
  // Enforces read_deadline (timeout_watchdog.cpp's pattern): re-armed only when
  // it wakes or the deadline moves earlier, not for every request.
  asio::steady_timer watchdog;
  SteadyClock::time_point read_deadline = SteadyClock::time_point::max();
  // serve() waits for request bytes by reading into this: a request line
  // usually fits, a longer or pipelined one is drained into the line buffer.
  std::array<char, 64> first_bytes{};
  bool reading = false;   // serve() is waiting for request bytes
  bool timed_out = false; // the watchdog cancelled that wait
  Caller caller;
  std::deque<ReplyLine> out;  // replies waiting to be written
  bool closed = false;
  bool idle = false;      // waiting for a request: may be closed at once on stop
  bool watching = false;
  std::string watched;    // the watched profile
  proto::RequestId watch_id;
  Watch watch;
};

struct Server::Impl : std::enable_shared_from_this<Server::Impl>
{
  Impl(asio::io_context& io_, engine::Engine& engine, const config::Config& config, Limits limits_)
    : io(io_),
      acceptor(io_),
      pause_timer(io_),
      drain_timer(io_),
      limits(limits_),
      line_limits{proto::k_max_line_bytes, limits_.idle_timeout, limits_.partial_line_timeout},
      dispatcher(engine, config, ::geteuid(), [this] { return counters; })
  {
    apply_limits(config);
  }

  void apply_limits(const config::Config& config)
  {
    max_connections = config.socket.max_connections;
    if (limits.max_connections != 0) {
      max_connections = std::min(max_connections, limits.max_connections);
    }
  }

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> session(std::shared_ptr<Connection> c);
  asio::awaitable<void> serve(std::shared_ptr<Connection> c);
  asio::awaitable<void> watchdog(std::shared_ptr<Connection> c);
  asio::awaitable<bool> answer(std::shared_ptr<Connection> c, std::string_view line);
  asio::awaitable<void> run_watch(std::shared_ptr<Connection> c, const Dispatcher::Handled& handled);
  asio::awaitable<void> watch_writer(std::shared_ptr<Connection> c);
  asio::awaitable<void> watch_reader(std::shared_ptr<Connection> c);
  asio::awaitable<void> send_busy(Protocol::socket socket);
  asio::awaitable<bool> write(Connection& c, std::string_view line);
  asio::awaitable<std::optional<ReplyLine>> next_reply(std::shared_ptr<Connection> c);
  void finish_stop();
  void remove_socket_file();

  asio::io_context& io;
  Protocol::acceptor acceptor;
  asio::steady_timer pause_timer;
  asio::steady_timer drain_timer;
  Limits limits;
  LineLimits line_limits; // the request framing's share of `limits`
  std::uint32_t max_connections = 1024;
  Dispatcher dispatcher;
  Traffic counters;
  metrics::RequestCounts requests; // by op and result, for the metrics
  std::set<std::shared_ptr<Connection>> connections;
  bool stopping = false;
  bool stopped = false;
  std::function<void()> on_stopped;
  // The socket file we created (never an adopted one), to remove on stop.
  std::string socket_path;
  std::optional<std::pair<dev_t, ino_t>> socket_identity;
};

asio::awaitable<bool> Server::Impl::write(Connection& c, std::string_view line)
{
  using namespace asio::experimental::awaitable_operators;
  if (c.closed) {
    co_return false;
  }
  // Most replies fit the socket buffer: write at once (the socket is
  // non-blocking) and wait only for what is left.
  std::error_code sync_ec;
  const std::size_t sent = c.socket.write_some(asio::buffer(line.data(), line.size()), sync_ec);
  if (!sync_ec && sent == line.size()) {
    co_return true;
  }
  if (sync_ec && sync_ec != asio::error::would_block && sync_ec != asio::error::try_again) {
    log::debug("connection (pid {}): write failed: {}", c.caller.pid, sync_ec.message());
    co_return false;
  }
  line.remove_prefix(sync_ec ? 0 : sent);
  // A client that stops reading gets idle_timeout to drain its socket buffer.
  c.timer.expires_after(limits.idle_timeout);
  auto result = co_await (asio::async_write(c.socket, asio::buffer(line.data(), line.size()), use_nothrow)
                          || c.timer.async_wait(use_nothrow));
  if (result.index() == 1) {
    log::debug("connection (pid {}): write timed out", c.caller.pid);
    co_return false;
  }
  const auto [ec, n] = std::get<0>(result);
  if (ec) {
    log::debug("connection (pid {}): write failed: {}", c.caller.pid, ec.message());
    co_return false;
  }
  co_return true;
}

asio::awaitable<std::optional<ReplyLine>> Server::Impl::next_reply(std::shared_ptr<Connection> c)
{
  while (c->out.empty() && !c->closed) {
    co_await c->wake.async_wait(use_nothrow);
  }
  if (c->closed) {
    co_return std::nullopt;
  }
  ReplyLine reply = std::move(c->out.front());
  c->out.pop_front();
  co_return reply;
}

asio::awaitable<void> Server::Impl::accept_loop()
{
  auto self = shared_from_this();
  bool paused = false;
  while (!stopping && acceptor.is_open()) {
    auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
    if (stopping || ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) {
      break;
    }
    if (ec) {
      if (is_resource_shortage(ec)) {
        if (!paused) {
          log::warn("accept: {}; pausing new connections", util::errno_text(ec.value()));
        }
        paused = true;
        pause_timer.expires_after(k_accept_pause);
        co_await pause_timer.async_wait(use_nothrow);
      } else {
        log::debug("accept: {}", ec.message());
      }
      continue;
    }
    if (paused) {
      log::info("accepting connections again");
      paused = false;
    }
    if (connections.size() >= max_connections) {
      log::debug("connection refused: {} connections open", connections.size());
      asio::co_spawn(io, send_busy(std::move(socket)), asio::detached);
      continue;
    }
    auto caller = peer_credentials(socket.native_handle());
    if (!caller) {
      log::debug("connection dropped: {}", caller.error());
      continue;
    }
    std::error_code nb_ec;
    socket.non_blocking(true, nb_ec); // serve() drains reads and write() tries sends without blocking
    auto c = std::make_shared<Connection>(std::move(socket));
    c->caller = std::move(*caller);
    connections.insert(c);
    counters.connections = connections.size();
    asio::co_spawn(io, session(c), asio::detached);
  }
}

asio::awaitable<void> Server::Impl::send_busy(Protocol::socket socket)
{
  using namespace asio::experimental::awaitable_operators;
  auto self = shared_from_this();
  ++counters.errors;
  requests.add(std::nullopt, proto::ErrorCode::busy);
  const ReplyLine reply = error_reply({}, {proto::ErrorCode::busy, "too many connections", 1, {}});
  const std::string& line = reply.line;
  asio::steady_timer timer(io);
  timer.expires_after(k_busy_write_timeout);
  co_await (asio::async_write(socket, asio::buffer(line), use_nothrow) || timer.async_wait(use_nothrow));
  std::error_code ignored;
  socket.shutdown(Protocol::socket::shutdown_both, ignored);
  socket.close(ignored);
}

asio::awaitable<void> Server::Impl::session(std::shared_ptr<Connection> c)
{
  auto self = shared_from_this();
  bool failed = false;
  asio::co_spawn(io, watchdog(c), asio::detached);
  try {
    co_await serve(c);
  } catch (const std::exception& e) {
    log::debug("connection (pid {}): internal error: {}", c->caller.pid, e.what());
    failed = true;
  }
  if (failed) {
    // A bug ends this connection with a JSON error, never the process.
    try {
      ++counters.errors;
      requests.add(std::nullopt, proto::ErrorCode::internal);
      const ReplyLine reply = error_reply({}, {proto::ErrorCode::internal, "internal error", {}, {}});
      co_await write(*c, reply.line);
    } catch (const std::exception&) {
    }
  }
  c->watch = Watch();
  c->close();
  c->out.clear();
  connections.erase(c);
  counters.connections = connections.size();
  if (stopping && connections.empty()) {
    finish_stop();
  }
}

asio::awaitable<void> Server::Impl::serve(std::shared_ptr<Connection> c)
{
  using namespace asio::experimental::awaitable_operators;
  // Holds bytes only while a request is being read or answered: an idle
  // connection keeps no read buffer (see benchmarks: RssAnon per connection).
  LineReader reader(line_limits, SteadyClock::now());

  for (;;) {
    // Answer every complete line, in order.
    while (reader.has_line()) {
      const std::string line = reader.take_line(SteadyClock::now());
      if (!co_await answer(c, line) || c->closed || stopping) {
        co_return;
      }
    }
    if (reader.too_long()) {
      ++counters.requests;
      ++counters.errors;
      requests.add(std::nullopt, proto::ErrorCode::request_too_large);
      const ReplyLine reply =
        error_reply({}, {proto::ErrorCode::request_too_large, "request line longer than 4096 bytes", {}, {}});
      co_await write(*c, reply.line);
      co_return;
    }
    const auto deadline = reader.wait(SteadyClock::now());
    c->idle = reader.empty();
    c->read_deadline = deadline;
    if (deadline < c->watchdog.expiry()) {
      c->watchdog.expires_at(deadline); // wakes the watchdog to re-arm earlier
    }
    // Wait with a small read into the connection's first_bytes (an idle
    // connection holds no bigger buffer; async_wait would cost an epoll_ctl
    // per request), then drain the rest straight into the line buffer.
    c->reading = true;
    auto [ec, n] = co_await c->socket.async_read_some(asio::buffer(c->first_bytes), use_nothrow);
    c->reading = false;
    c->idle = false;
    if (c->timed_out) {
      log::debug("connection (pid {}): {} timeout", c->caller.pid, reader.partial() ? "partial line" : "idle");
      co_return;
    }
    reader.append(std::string_view(c->first_bytes.data(), n));
    if (!ec && n == c->first_bytes.size()) {
      reader.fill(k_read_chunk, [&c, &ec](char* data, std::size_t size) {
        return c->socket.read_some(asio::buffer(data, size), ec);
      });
      if (ec == asio::error::would_block || ec == asio::error::try_again || ec == asio::error::eof) {
        ec = {}; // nothing more yet; an end of stream shows up on the next read
      }
    }
    if (ec == asio::error::eof) {
      // Half-close: every complete line has been answered; a last line
      // without its '\n' is answered too (bad_request if it is cut short).
      if (!reader.empty()) {
        co_await answer(c, reader.rest());
      }
      co_return;
    }
    if (ec) {
      log::debug("connection (pid {}): read failed: {}", c->caller.pid, ec.message());
      co_return;
    }
  }
}

asio::awaitable<void> Server::Impl::watchdog(std::shared_ptr<Connection> c)
{
  for (;;) {
    co_await c->watchdog.async_wait(use_nothrow);
    if (c->closed) {
      co_return;
    }
    const auto now = SteadyClock::now();
    if (c->watchdog.expiry() > now) {
      continue; // serve() moved the deadline earlier: wait for the new one
    }
    if (c->reading && now >= c->read_deadline) {
      c->timed_out = true;
      std::error_code ignored;
      c->socket.cancel(ignored);
      co_return;
    }
    // Not reading (answering, watching) or the deadline moved on: sleep until
    // it, or until serve() reads again and moves it earlier.
    c->watchdog.expires_at(c->reading ? c->read_deadline : SteadyClock::time_point::max());
  }
}

asio::awaitable<bool> Server::Impl::answer(std::shared_ptr<Connection> c, std::string_view line)
{
  ++counters.requests;
  std::weak_ptr<Connection> weak = c;
  const Dispatcher::Handled handled = dispatcher.handle(
    line, c->caller,
    [weak](ReplyLine r) {
      if (auto conn = weak.lock()) {
        conn->push(std::move(r));
      }
    },
    &c->watch);
  if (handled.op == proto::Op::watch) {
    co_await run_watch(c, handled);
    co_return false;
  }
  std::optional<ReplyLine> reply = co_await next_reply(c);
  if (!reply) {
    co_return false;
  }
  if (reply->error) {
    ++counters.errors;
  }
  requests.add(handled.op, reply->error ? std::optional(reply->code) : std::nullopt);
  co_return co_await write(*c, reply->line) && !reply->last;
}

// The session in watch mode: the dispatcher started the watch (its replies
// reach c->out) and c->watch keeps it.
asio::awaitable<void> Server::Impl::run_watch(std::shared_ptr<Connection> c, const Dispatcher::Handled& handled)
{
  using namespace asio::experimental::awaitable_operators;
  c->watching = true;
  c->watched = handled.watched;
  c->watch_id = handled.watch_id;
  co_await (watch_writer(c) || watch_reader(c));
  c->watch = Watch();
}

asio::awaitable<void> Server::Impl::watch_writer(std::shared_ptr<Connection> c)
{
  bool first = true; // the watch request's own answer; renewals are not requests
  for (;;) {
    auto reply = co_await next_reply(c);
    if (!reply) {
      co_return;
    }
    if (reply->error) {
      ++counters.errors;
    }
    if (std::exchange(first, false)) {
      requests.add(proto::Op::watch, reply->error ? std::optional(reply->code) : std::nullopt);
    }
    if (!co_await write(*c, reply->line) || reply->last) {
      co_return;
    }
  }
}

asio::awaitable<void> Server::Impl::watch_reader(std::shared_ptr<Connection> c)
{
  // A watch connection takes no further requests: read only to see it close.
  std::array<char, 512> discard;
  for (;;) {
    auto [ec, n] = co_await c->socket.async_read_some(asio::buffer(discard), use_nothrow);
    if (ec) {
      co_return;
    }
  }
}

void Server::Impl::remove_socket_file()
{
  if (!socket_identity) {
    return;
  }
  struct stat st = {};
  if (::lstat(socket_path.c_str(), &st) == 0 && st.st_dev == socket_identity->first
      && st.st_ino == socket_identity->second) {
    if (::unlink(socket_path.c_str()) != 0) {
      log::warn("cannot remove socket {}: {}", socket_path, util::errno_text(errno));
    }
  }
  socket_identity.reset();
}

void Server::Impl::finish_stop()
{
  if (stopped) {
    return;
  }
  stopped = true;
  drain_timer.cancel();
  remove_socket_file();
  if (on_stopped) {
    asio::post(io, std::exchange(on_stopped, nullptr));
  }
}

Server::Server(asio::io_context& io, engine::Engine& engine, const config::Config& config, Limits limits)
  : m_impl(std::make_shared<Impl>(io, engine, config, limits))
{
}

Server::~Server()
{
  // The engine may be gone once we are: end every watch and waiter now.
  Impl& impl = *m_impl;
  std::error_code ignored;
  impl.acceptor.close(ignored);
  impl.pause_timer.cancel();
  impl.drain_timer.cancel();
  for (const auto& c : impl.connections) {
    c->watch = Watch();
    c->close();
  }
  impl.remove_socket_file();
}

tl::expected<void, std::string> Server::listen()
{
  Impl& impl = *m_impl;
  const config::SocketConfig& socket = impl.dispatcher.config().socket;
  const std::string& path = socket.path;
  if (path.empty() || path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return tl::unexpected(fmt::format("socket path {} is empty or too long", path));
  }

  struct stat st = {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return tl::unexpected(fmt::format("{} exists and is not a socket; not replacing it", path));
    }
    auto live = probe_socket(path);
    if (!live) {
      return tl::unexpected(live.error());
    }
    if (*live) {
      return tl::unexpected(fmt::format("{} is in use: another daemon is answering on it", path));
    }
    log::info("removing stale socket {}", path);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return tl::unexpected(fmt::format("cannot remove stale socket {}: {}", path, util::errno_text(errno)));
    }
  } else if (errno != ENOENT) {
    return tl::unexpected(fmt::format("cannot check {}: {}", path, util::errno_text(errno)));
  }

  std::error_code ec;
  impl.acceptor.open(Protocol(), ec);
  if (ec) {
    return tl::unexpected(fmt::format("cannot create socket: {}", ec.message()));
  }
  // Bound under a temporary name next to `path`, created with mode 0000 (a
  // process-wide umask for the bind call only), given its group and mode,
  // listening, and only then renamed to `path`: a client never finds a
  // socket there that refuses it or has the wrong mode. (A path too long
  // for the temporary name is bound in place.)
  std::string bound = path + ".new";
  if (bound.size() >= sizeof(sockaddr_un{}.sun_path)) {
    bound = path;
  }
  ::unlink(bound.c_str()); // a leftover of a daemon killed at this point
  const mode_t old_umask = ::umask(0777);
  impl.acceptor.bind(Protocol::endpoint(bound), ec);
  ::umask(old_umask);
  if (ec) {
    impl.acceptor.close(ec);
    return tl::unexpected(fmt::format("cannot bind {}: {}", bound, ec.message()));
  }
  auto fail = [&](std::string message) -> tl::expected<void, std::string> {
    std::error_code ignored;
    impl.acceptor.close(ignored);
    ::unlink(bound.c_str());
    return tl::unexpected(std::move(message));
  };
  if (socket.group && ::chown(bound.c_str(), static_cast<uid_t>(-1), socket.group->id) != 0) {
    return fail(fmt::format("cannot give {} group {}: {}", bound, socket.group->name, util::errno_text(errno)));
  }
  if (::chmod(bound.c_str(), socket.mode) != 0) {
    return fail(fmt::format("cannot set mode {:o} on {}: {}", socket.mode, bound, util::errno_text(errno)));
  }
  if (::lstat(bound.c_str(), &st) != 0) {
    return fail(fmt::format("cannot stat {}: {}", bound, util::errno_text(errno)));
  }
  impl.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return fail(fmt::format("cannot listen on {}: {}", bound, ec.message()));
  }
  if (bound != path && ::rename(bound.c_str(), path.c_str()) != 0) {
    return fail(fmt::format("cannot move {} to {}: {}", bound, path, util::errno_text(errno)));
  }
  impl.socket_path = path;
  impl.socket_identity = std::make_pair(st.st_dev, st.st_ino);
  return {};
}

tl::expected<void, std::string> Server::adopt(int fd)
{
  std::error_code ec;
  m_impl->acceptor.assign(Protocol(), fd, ec);
  if (ec) {
    return tl::unexpected(fmt::format("cannot use socket passed by systemd: {}", ec.message()));
  }
  return {};
}

void Server::start()
{
  asio::co_spawn(m_impl->io, m_impl->accept_loop(), asio::detached);
}

void Server::reconfigure(const config::Config& config)
{
  Impl& impl = *m_impl;
  impl.dispatcher.set_config(config);
  impl.apply_limits(config);
  for (const auto& c : impl.connections) {
    if (!c->watching || c->closed) {
      continue;
    }
    if (auto denied = impl.dispatcher.authorize(c->watched, c->caller)) {
      c->watch = Watch();
      c->out.clear();
      c->push(error_reply(c->watch_id, *denied, true));
    }
  }
}

void Server::stop(std::function<void()> done)
{
  Impl& impl = *m_impl;
  impl.on_stopped = std::move(done);
  if (impl.stopping) {
    if (impl.stopped && impl.on_stopped) {
      asio::post(impl.io, std::exchange(impl.on_stopped, nullptr));
    }
    return;
  }
  impl.stopping = true;
  std::error_code ignored;
  impl.acceptor.close(ignored);
  impl.pause_timer.cancel();
  // Idle and watch connections go now; the others after their reply.
  for (const auto& c : impl.connections) {
    if (c->idle || c->watching) {
      c->close();
    }
  }
  if (impl.connections.empty()) {
    impl.finish_stop();
    return;
  }
  impl.drain_timer.expires_after(impl.limits.drain_timeout);
  impl.drain_timer.async_wait([self = impl.shared_from_this()](std::error_code ec) {
    if (ec) {
      return;
    }
    for (const auto& c : self->connections) {
      c->close();
    }
    self->finish_stop();
  });
}

Traffic Server::counters() const
{
  return m_impl->counters;
}

metrics::RequestCounts Server::request_counts() const
{
  return m_impl->requests;
}

void Server::set_metrics(std::function<std::string()> exposition)
{
  m_impl->dispatcher.set_metrics(std::move(exposition));
}

} // namespace iamtok::server
