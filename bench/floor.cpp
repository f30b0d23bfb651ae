#include "bench/floor.hpp"

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>

#include <cstdio>
#include <memory>

namespace iamtok::bench {

namespace {

using asio::local::stream_protocol;
constexpr auto k_use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
constexpr std::size_t k_max_line = 4096 + 1; // the protocol's line limit, '\n' included

// Answers every request line with `reply` until the peer closes or errs.
asio::awaitable<void> session(stream_protocol::socket socket, const std::string& reply)
{
  std::string buffer;
  for (;;) {
    auto [ec, n] = co_await asio::async_read_until(
        socket, asio::dynamic_buffer(buffer, k_max_line), '\n', k_use_tuple);
    if (ec) {
      co_return;
    }
    buffer.erase(0, n);
    auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(reply), k_use_tuple);
    if (wec) {
      co_return;
    }
  }
}

asio::awaitable<void> accept_loop(stream_protocol::acceptor& acceptor, const std::string& reply)
{
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(k_use_tuple);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
      co_return;
    }
    if (!ec) {
      asio::co_spawn(acceptor.get_executor(), session(std::move(socket), reply), asio::detached);
    }
  }
}

} // namespace

std::string floor_reply(std::size_t bytes)
{
  const std::string head = R"({"ok":true,"pad":")";
  const std::string tail = "\"}\n";
  const std::size_t size = std::max<std::size_t>(bytes, 32);
  return head + std::string(size - head.size() - tail.size(), 'x') + tail;
}

int run_floor(const FloorOptions& options)
{
  asio::io_context io;
  const std::string reply = floor_reply(options.reply_bytes);
  stream_protocol::acceptor acceptor(io);
  std::error_code ec;
  acceptor.open(stream_protocol(), ec);
  if (!ec) {
    acceptor.bind(stream_protocol::endpoint(options.socket_path), ec);
  }
  if (!ec) {
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    std::fprintf(stderr, "iamtok-floor: cannot listen on %s: %s\n", options.socket_path.c_str(),
                 ec.message().c_str());
    return 1;
  }
  asio::signal_set signals(io, SIGINT, SIGTERM);
  asio::steady_timer lifetime(io, options.lifetime);
  auto stop = [&io](const std::error_code&, auto&&...) { io.stop(); };
  signals.async_wait(stop);
  lifetime.async_wait(stop);
  asio::co_spawn(io, accept_loop(acceptor, reply), asio::detached);
  std::printf("listening on %s\n", options.socket_path.c_str());
  std::fflush(stdout);
  io.run();
  std::error_code ignored;
  acceptor.close(ignored);
  std::remove(options.socket_path.c_str());
  return 0;
}

} // namespace iamtok::bench
