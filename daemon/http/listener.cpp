#include "daemon/http/listener.hpp"

#include "daemon/log/log.hpp"
#include "daemon/server/inet_peer.hpp"
#include "http/session.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include <unistd.h>

#include <set>
#include <utility>

namespace iamtok::http {

namespace {

using asio::ip::tcp;
constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);
constexpr auto k_accept_pause = std::chrono::milliseconds(100);
constexpr auto k_busy_write_timeout = std::chrono::seconds(1);
constexpr std::string_view k_busy =
  "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

std::string describe(const tcp::endpoint& endpoint)
{
  const auto address = endpoint.address();
  return address.is_v6() ? fmt::format("[{}]:{}", address.to_string(), endpoint.port())
                         : fmt::format("{}:{}", address.to_string(), endpoint.port());
}

bool is_loopback(const asio::ip::address& address)
{
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).is_loopback();
  }
  return address.is_loopback();
}

} // namespace

struct Listener::Impl : std::enable_shared_from_this<Listener::Impl>
{
  Impl(asio::io_context& io_, engine::Engine& engine, const config::Config& config, ListenerLimits limits_)
    : io(io_),
      limits(limits_),
      dispatcher(engine, config, ::geteuid(), [this] { return server::Counters{0, 0, connections.size()}; },
                 server::Via::http),
      routes(dispatcher, engine),
      max_connections(config.http ? config.http->max_connections : 256)
  {
    options.limits = ReaderLimits{limits.max_head_bytes, limits.max_body_bytes, true};
    options.idle_timeout = limits.idle_timeout;
    options.partial_timeout = limits.partial_timeout;
  }

  asio::awaitable<void> accept_loop(tcp::acceptor& acceptor);
  asio::awaitable<void> session(std::shared_ptr<tcp::socket> socket, std::optional<server::Caller> caller);
  asio::awaitable<void> send_busy(tcp::socket socket);

  asio::io_context& io;
  ListenerLimits limits;
  SessionOptions options;
  server::Dispatcher dispatcher;
  Routes routes;
  std::uint32_t max_connections;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::set<std::shared_ptr<tcp::socket>> connections;
  bool stopping = false;
};

asio::awaitable<void> Listener::Impl::accept_loop(tcp::acceptor& acceptor)
{
  auto self = shared_from_this();
  asio::steady_timer pause(io);
  while (!stopping && acceptor.is_open()) {
    auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
    if (stopping || ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) {
      co_return;
    }
    if (ec) {
      log::debug("http accept: {}", ec.message());
      pause.expires_after(k_accept_pause);
      co_await pause.async_wait(use_nothrow);
      continue;
    }
    if (connections.size() >= max_connections) {
      log::debug("http connection refused: {} connections open", connections.size());
      routes.count({std::nullopt, proto::ErrorCode::busy});
      asio::co_spawn(io, send_busy(std::move(socket)), asio::detached);
      continue;
    }
    std::optional<server::Caller> caller;
    if (auto found = server::tcp_peer_credentials(socket.native_handle())) {
      caller = std::move(*found);
    } else {
      log::debug("http connection: the calling user is unknown: {}", found.error());
    }
    std::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto shared = std::make_shared<tcp::socket>(std::move(socket));
    connections.insert(shared);
    asio::co_spawn(io, session(shared, std::move(caller)), [self, shared](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& error) {
          log::debug("http connection: internal error: {}", error.what());
        }
      }
      std::error_code ignored_close;
      shared->close(ignored_close);
      self->connections.erase(shared);
    });
  }
}

asio::awaitable<void> Listener::Impl::send_busy(tcp::socket socket)
{
  using namespace asio::experimental::awaitable_operators;
  auto self = shared_from_this();
  asio::steady_timer timer(io, k_busy_write_timeout);
  co_await (asio::async_write(socket, asio::buffer(k_busy), use_nothrow) || timer.async_wait(use_nothrow));
  std::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

asio::awaitable<void> Listener::Impl::session(std::shared_ptr<tcp::socket> socket, std::optional<server::Caller> caller)
{
  auto self = shared_from_this();
  auto handler = [this, &caller](Request& request) -> asio::awaitable<Answer> {
    struct Pending
    {
      explicit Pending(asio::io_context& io_) : wake(io_) { wake.expires_at(asio::steady_timer::time_point::max()); }
      asio::steady_timer wake;
      std::optional<Response> response;
    };
    auto pending = std::make_shared<Pending>(io);
    routes.handle(request, caller ? &*caller : nullptr, [pending](Response r) {
      pending->response = std::move(r);
      pending->wake.cancel();
    });
    while (!pending->response) {
      co_await pending->wake.async_wait(use_nothrow);
    }
    Answer answer;
    answer.response = std::move(pending->response);
    co_return answer;
  };
  auto on_error = [this](const ReaderEvent& event) {
    log::debug("http request refused: {} ({})", event.message, event.status);
    routes.count({std::nullopt, event.status == 400 ? proto::ErrorCode::bad_request
                                                    : proto::ErrorCode::request_too_large});
    Response r;
    r.status = event.status;
    r.content_type = "text/plain; charset=utf-8";
    r.body = event.message + "\n";
    return r;
  };
  auto on_timeout = [](bool partial) {
    log::debug("http connection closed: {} timeout", partial ? "partial request" : "idle");
  };
  co_await serve(*socket, options, handler, on_error, on_timeout);
}

Listener::Listener(asio::io_context& io, engine::Engine& engine, const config::Config& config, ListenerLimits limits)
  : m_impl(std::make_shared<Impl>(io, engine, config, limits))
{
}

Listener::~Listener()
{
  stop();
}

tl::expected<void, std::string> Listener::listen()
{
  Impl& impl = *m_impl;
  const auto& http = impl.dispatcher.config().http;
  if (!http) {
    return {};
  }
  for (const auto& entry : http->listen) {
    std::error_code ec;
    const auto address = asio::ip::make_address(entry.address, ec);
    if (ec) {
      return tl::unexpected(fmt::format("{}: {}", config::to_string(entry), ec.message()));
    }
    const tcp::endpoint endpoint(address, entry.port);
    auto acceptor = std::make_unique<tcp::acceptor>(impl.io);
    auto fail = [&](std::string_view what) {
      return tl::unexpected(fmt::format("cannot {} {}: {}", what, config::to_string(entry), ec.message()));
    };
    if (acceptor->open(endpoint.protocol(), ec); ec) {
      return fail("open a socket for");
    }
    acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
    if (address.is_v6()) {
      acceptor->set_option(asio::ip::v6_only(true), ec);
    }
    if (acceptor->bind(endpoint, ec); ec) {
      return fail("bind");
    }
    if (acceptor->listen(asio::socket_base::max_listen_connections, ec); ec) {
      return fail("listen on");
    }
    impl.acceptors.push_back(std::move(acceptor));
  }
  return {};
}

tl::expected<void, std::string> Listener::adopt(const std::vector<int>& fds)
{
  Impl& impl = *m_impl;
  for (const int fd : fds) {
    auto acceptor = std::make_unique<tcp::acceptor>(impl.io);
    std::error_code ec;
    sockaddr_storage storage{};
    socklen_t length = sizeof(storage);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0
        || (storage.ss_family != AF_INET && storage.ss_family != AF_INET6)) {
      return tl::unexpected(fmt::format("socket {} passed by systemd is not a TCP socket", fd));
    }
    const auto protocol = storage.ss_family == AF_INET ? tcp::v4() : tcp::v6();
    if (acceptor->assign(protocol, fd, ec); ec) {
      return tl::unexpected(fmt::format("cannot use socket {} passed by systemd: {}", fd, ec.message()));
    }
    const auto local = acceptor->local_endpoint(ec);
    if (ec || !is_loopback(local.address())) {
      return tl::unexpected(fmt::format("the http socket passed by systemd is bound to {}, not a loopback address",
                                        ec ? std::string("an unknown address") : describe(local)));
    }
    impl.acceptors.push_back(std::move(acceptor));
  }
  return {};
}

std::vector<std::string> Listener::local_addresses() const
{
  std::vector<std::string> out;
  for (const auto& acceptor : m_impl->acceptors) {
    std::error_code ec;
    const auto local = acceptor->local_endpoint(ec);
    if (!ec) {
      out.push_back(describe(local));
    }
  }
  return out;
}

void Listener::start()
{
  for (const auto& acceptor : m_impl->acceptors) {
    asio::co_spawn(m_impl->io, m_impl->accept_loop(*acceptor), asio::detached);
  }
}

void Listener::reconfigure(const config::Config& config)
{
  m_impl->dispatcher.set_config(config);
  if (config.http) {
    m_impl->max_connections = config.http->max_connections;
  }
}

void Listener::stop()
{
  Impl& impl = *m_impl;
  impl.stopping = true;
  std::error_code ignored;
  for (const auto& acceptor : impl.acceptors) {
    acceptor->close(ignored);
  }
  for (const auto& socket : impl.connections) {
    socket->shutdown(tcp::socket::shutdown_both, ignored);
    socket->close(ignored);
  }
}

void Listener::set_metrics(std::function<std::string()> exposition)
{
  m_impl->dispatcher.set_metrics(std::move(exposition));
}

const metrics::RequestCounts& Listener::request_counts() const
{
  return m_impl->routes.request_counts();
}

std::uint64_t Listener::connections() const
{
  return m_impl->connections.size();
}

} // namespace iamtok::http
