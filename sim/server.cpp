#include "sim/server.hpp"

#include "http/session.hpp"
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

bool is_loopback(const tcp::endpoint& endpoint)
{
  const auto address = endpoint.address();
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).is_loopback();
  }
  return address.is_loopback();
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

  http::SessionOptions options;
  options.linger = k_linger;
  auto handler = [this, &socket, loopback](Request& request) -> asio::awaitable<http::Answer> {
    request.from_loopback = loopback;
    Action action = m_simulator.handle(request);
    if (action.kind == Action::Kind::hang) {
      log_request(request, "hang");
      asio::steady_timer cap(co_await asio::this_coro::executor, k_hang_cap);
      co_await (http::wait_for_close(socket) || cap.async_wait(use_nothrow));
      co_return http::Answer{};
    }
    if (action.delay > 0ms) {
      co_await sleep_for(action.delay);
    }
    if (action.kind == Action::Kind::reset) {
      log_request(request, "reset");
      asio::error_code ignored;
      socket.set_option(asio::socket_base::linger(true, 0), ignored);
      socket.close(ignored);
      co_return http::Answer{};
    }
    log_request(request, std::to_string(action.response.status));
    co_return http::Answer{std::move(action.response), false};
  };
  auto on_error = [this](const http::ReaderEvent& event) {
    if (!m_quiet) {
      fmt::print(stderr, "iamtoken-sim: bad request: {} ({})\n", event.message, event.status);
    }
    Response response;
    response.status = event.status;
    response.body = json::ObjectWriter().string("error", event.message).finish();
    return response;
  };
  co_await http::serve(socket, options, handler, on_error);
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
