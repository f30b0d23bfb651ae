#include "bench/floor.hpp"

#include "http/session.hpp"

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>

namespace iamtok::bench {

namespace {

using asio::ip::tcp;
constexpr auto k_use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

// The same framing limits as the daemon's endpoint: 8 KiB head and body,
// strict Content-Length framing.
http::SessionOptions session_options()
{
  http::SessionOptions options;
  options.limits.max_header_bytes = 8 * 1024;
  options.limits.max_body_bytes = 8 * 1024;
  options.limits.strict = true;
  return options;
}

asio::awaitable<void> session(tcp::socket socket, const http::Response& response)
{
  asio::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  const auto options = session_options();
  auto handler = [&response](http::Request&) -> asio::awaitable<http::Answer> {
    co_return http::Answer{response, false};
  };
  auto on_error = [](const http::ReaderEvent& event) {
    http::Response error;
    error.status = event.status;
    return error;
  };
  co_await http::serve(socket, options, handler, on_error);
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, const http::Response& response)
{
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(k_use_tuple);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
      co_return;
    }
    if (!ec) {
      asio::co_spawn(acceptor.get_executor(), session(std::move(socket), response), asio::detached);
    }
  }
}

// The response http_floor_response() serializes: a JSON body padded so the
// whole response is `bytes` long.
http::Response floor_response(std::size_t bytes)
{
  http::Response response;
  const std::string head = R"({"access_token":")";
  const std::string tail = "\"}";
  response.body = head + tail;
  // The head's length depends on the Content-Length digits: settle it in a
  // few rounds.
  for (int round = 0; round < 4; ++round) {
    const std::size_t size = http::serialize(response, true).size();
    if (size == bytes) {
      break;
    }
    const std::size_t pad = response.body.size() - head.size() - tail.size();
    const std::size_t want = size < bytes ? pad + (bytes - size) : pad - std::min(pad, size - bytes);
    response.body = head + std::string(want, 'x') + tail;
  }
  return response;
}

} // namespace

std::string http_floor_response(std::size_t bytes)
{
  return http::serialize(floor_response(std::max<std::size_t>(bytes, 128)), true);
}

int run_http_floor(const FloorOptions& options)
{
  asio::io_context io;
  const http::Response response = floor_response(std::max<std::size_t>(options.reply_bytes, 128));
  tcp::acceptor acceptor(io);
  std::error_code ec;
  const auto address = asio::ip::make_address(options.http_host, ec);
  if (!ec) {
    const tcp::endpoint endpoint(address, options.http_port);
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) {
      acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
      acceptor.bind(endpoint, ec);
    }
  }
  if (!ec) {
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    std::fprintf(stderr, "iamtok-floor: cannot listen on %s:%u: %s\n", options.http_host.c_str(),
                 static_cast<unsigned>(options.http_port), ec.message().c_str());
    return 1;
  }
  const auto port = acceptor.local_endpoint().port();
  if (!options.port_file.empty()) {
    const auto temporary = options.port_file + ".new";
    std::ofstream(temporary) << port << '\n';
    std::rename(temporary.c_str(), options.port_file.c_str());
  }
  asio::signal_set signals(io, SIGINT, SIGTERM);
  asio::steady_timer lifetime(io, options.lifetime);
  auto stop = [&io](const std::error_code&, auto&&...) { io.stop(); };
  signals.async_wait(stop);
  lifetime.async_wait(stop);
  asio::co_spawn(io, accept_loop(acceptor, response), asio::detached);
  std::printf("listening on %s:%u\n", options.http_host.c_str(), static_cast<unsigned>(port));
  std::fflush(stdout);
  io.run();
  return 0;
}

} // namespace iamtok::bench
