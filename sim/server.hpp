#pragma once

// iamtoken-sim's transport: the shared HTTP/1.1 session (http/session.hpp), one
// coroutine per connection (keep-alive and pipelining in order), all on one
// io_context thread. Each request's Action is carried out on its own
// connection, so a delayed or hanging request holds up no other connection.

#include "sim/options.hpp"
#include "sim/simulator.hpp"

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>

namespace iamtok::sim {

class Server
{
public:
  // Binds and listens on `endpoint`; throws std::system_error if it cannot.
  Server(asio::io_context& io, Simulator& simulator, const asio::ip::tcp::endpoint& endpoint, bool quiet);

  // The bound port (the ephemeral one when asked for port 0).
  std::uint16_t port() const;

  // Starts accepting connections; they are served while `io` runs.
  void start();

  // Stops accepting; connections already open end when `io` stops.
  void stop();

private:
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> session(asio::ip::tcp::socket socket);
  void log_request(const Request& request, std::string_view outcome) const;

  asio::io_context& m_io;
  Simulator& m_simulator;
  asio::ip::tcp::acceptor m_acceptor;
  bool m_quiet;
};

// Runs iamtoken-sim with `options` until SIGTERM or SIGINT: listens, writes
// the port file, prints "listening on HOST:PORT". Returns the exit code
// (0 on a clean stop, 1 if it cannot listen or write the port file).
int run(const Options& options);

} // namespace iamtok::sim
