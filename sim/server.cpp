#include "sim/server.hpp"

#include "proto/json.hpp"

#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

namespace iamtok::sim {

namespace {

using asio::ip::tcp;
using namespace std::chrono_literals;

constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);

// A hanging request is dropped after this long even if the client waits on.
constexpr auto k_hang_cap = 5min;

// How long a closing connection keeps reading what the client still sends.
constexpr auto k_linger = 2s;

constexpr std::string_view k_continue = "HTTP/1.1 100 Continue\r\n\r\n";

bool is_loopback(const tcp::endpoint& endpoint)
{
  const auto address = endpoint.address();
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).is_loopback();
  }
  return address.is_loopback();
}

// Waits until the peer closes (or the connection fails), discarding input.
asio::awaitable<void> wait_for_close(tcp::socket& socket)
{
  std::array<char, 4096> sink{};
  for (;;) {
    const auto [ec, n] = co_await socket.async_read_some(asio::buffer(sink), use_nothrow);
    if (ec) {
      co_return;
    }
  }
}

// A graceful close after the last reply: stop sending, then discard what the
// client still sends (a body we refused) until it closes or `linger` passes,
// so closing with unread input does not reset the reply away.
asio::awaitable<void> lingering_close(tcp::socket& socket, std::chrono::milliseconds linger)
{
  using namespace asio::experimental::awaitable_operators;
  asio::error_code ec;
  socket.shutdown(tcp::socket::shutdown_send, ec);
  asio::steady_timer timer(co_await asio::this_coro::executor, linger);
  co_await (wait_for_close(socket) || timer.async_wait(use_nothrow));
  socket.close(ec);
}

asio::awaitable<void> sleep_for(std::chrono::steady_clock::duration d)
{
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(use_nothrow);
}

// The path without control characters and at most 128 bytes, for the log.
std::string printable_path(std::string_view path)
{
  std::string out;
  for (const char c : path.substr(0, 128)) {
    out.push_back(c > 0x20 && c < 0x7F ? c : '?');
  }
  return out;
}

void write_port_file(const std::string& path, std::uint16_t port)
{
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << port << '\n';
    if (!out.flush()) {
      throw std::runtime_error(fmt::format("cannot write {}", temp));
    }
  }
  std::filesystem::rename(temp, path);
}

} // namespace

Server::Server(asio::io_context& io, Simulator& simulator, const tcp::endpoint& endpoint, bool quiet)
  : m_io(io),
    m_simulator(simulator),
    m_acceptor(io, endpoint),
    m_quiet(quiet)
{
}

std::uint16_t Server::port() const
{
  return m_acceptor.local_endpoint().port();
}

void Server::start()
{
  asio::co_spawn(m_io, accept_loop(), [](std::exception_ptr e) {
    if (e) {
      std::fputs("iamtoken-sim: accept loop failed\n", stderr);
    }
  });
}

void Server::stop()
{
  asio::error_code ignored;
  m_acceptor.close(ignored);
}

asio::awaitable<void> Server::accept_loop()
{
  while (m_acceptor.is_open()) {
    auto [ec, socket] = co_await m_acceptor.async_accept(use_nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || !m_acceptor.is_open()) {
        co_return;
      }
      // EMFILE and the like: back off briefly instead of spinning.
      co_await sleep_for(50ms);
      continue;
    }
    m_simulator.note_connection();
    asio::co_spawn(m_io, session(std::move(socket)), [](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& error) {
          fmt::print(stderr, "iamtoken-sim: connection failed: {}\n", error.what());
        }
      }
    });
  }
}

void Server::log_request(const Request& request, std::string_view outcome) const
{
  if (!m_quiet) {
    fmt::print(stderr, "iamtoken-sim: {} {} {}\n", printable_path(request.method), printable_path(request.path),
               outcome);
  }
}

asio::awaitable<void> Server::session(tcp::socket socket)
{
  using namespace asio::experimental::awaitable_operators;
  asio::error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  const bool loopback = !ec && is_loopback(peer);
  socket.set_option(tcp::no_delay(true), ec);

  RequestReader reader;
  std::array<char, 16 * 1024> buffer{};
  for (;;) {
    const auto [read_error, n] = co_await socket.async_read_some(asio::buffer(buffer), use_nothrow);
    if (read_error) {
      co_return;
    }
    for (auto& event : reader.feed({buffer.data(), n})) {
      if (event.kind == ReaderEvent::Kind::expect_continue) {
        const auto [write_error, written] = co_await asio::async_write(socket, asio::buffer(k_continue), use_nothrow);
        if (write_error) {
          co_return;
        }
        continue;
      }
      if (event.kind == ReaderEvent::Kind::error) {
        Response response;
        response.status = event.status;
        response.body = "{\"error\":" + json::quoted(event.message) + "}";
        const auto out = serialize(response, false);
        co_await asio::async_write(socket, asio::buffer(out), use_nothrow);
        if (!m_quiet) {
          fmt::print(stderr, "iamtoken-sim: bad request: {} ({})\n", event.message, event.status);
        }
        co_await lingering_close(socket, k_linger);
        co_return;
      }

      Request& request = event.request;
      request.from_loopback = loopback;
      Action action = m_simulator.handle(request);
      if (action.kind == Action::Kind::hang) {
        log_request(request, "hang");
        asio::steady_timer cap(co_await asio::this_coro::executor, k_hang_cap);
        co_await (wait_for_close(socket) || cap.async_wait(use_nothrow));
        co_return;
      }
      if (action.delay > 0ms) {
        co_await sleep_for(action.delay);
      }
      if (action.kind == Action::Kind::reset) {
        log_request(request, "reset");
        socket.set_option(asio::socket_base::linger(true, 0), ec);
        socket.close(ec);
        co_return;
      }
      log_request(request, std::to_string(action.response.status));
      const auto out = serialize(action.response, request.keep_alive);
      const auto [write_error, written] = co_await asio::async_write(socket, asio::buffer(out), use_nothrow);
      if (write_error) {
        co_return;
      }
      if (!request.keep_alive) {
        co_await lingering_close(socket, k_linger);
        co_return;
      }
    }
  }
}

int run(const Options& options)
{
  SimConfig config = options.sim;
  if (!options.seed_given) {
    std::random_device device;
    config.seed = (static_cast<std::uint64_t>(device()) << 32) | device();
  }
  Simulator simulator(std::move(config));
  asio::io_context io;
  try {
    // The signal handlers go in before anything announces readiness (the
    // port file, the "listening on" line): a stop at once after either is
    // then a clean one. A signal caught before async_wait is kept for it.
    asio::signal_set signals(io, SIGINT, SIGTERM);
    const tcp::endpoint endpoint(asio::ip::make_address(options.listen_host), options.listen_port);
    Server server(io, simulator, endpoint, options.quiet);
    signals.async_wait([&](const asio::error_code& error, int) {
      if (!error) {
        server.stop();
        io.stop();
      }
    });
    if (!options.port_file.empty()) {
      write_port_file(options.port_file, server.port());
    }
    const auto host = endpoint.address().is_v6() ? fmt::format("[{}]", options.listen_host) : options.listen_host;
    fmt::print("listening on {}:{}\n", host, server.port());
    std::fflush(stdout);

    server.start();
    io.run();
  } catch (const std::exception& error) {
    fmt::print(stderr, "iamtoken-sim: {}\n", error.what());
    return 1;
  }
  return 0;
}

} // namespace iamtok::sim
