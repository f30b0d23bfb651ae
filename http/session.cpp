#include "http/session.hpp"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <array>
#include <string_view>

namespace iamtok::http {

namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);

constexpr std::string_view k_continue = "HTTP/1.1 100 Continue\r\n\r\n";

// Writes `data`, giving up after `limit` (0: no limit). True if all was written.
asio::awaitable<bool> write_all(tcp::socket& socket, std::string_view data, std::chrono::milliseconds limit)
{
  using namespace asio::experimental::awaitable_operators;
  if (limit.count() == 0) {
    const auto [ec, n] = co_await asio::async_write(socket, asio::buffer(data), use_nothrow);
    co_return !ec;
  }
  asio::steady_timer timer(co_await asio::this_coro::executor, limit);
  auto result = co_await (asio::async_write(socket, asio::buffer(data), use_nothrow) || timer.async_wait(use_nothrow));
  co_return result.index() == 0 && !std::get<0>(std::get<0>(result));
}

} // namespace

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

asio::awaitable<void> lingering_close(tcp::socket& socket, std::chrono::milliseconds linger)
{
  using namespace asio::experimental::awaitable_operators;
  asio::error_code ec;
  socket.shutdown(tcp::socket::shutdown_send, ec);
  asio::steady_timer timer(co_await asio::this_coro::executor, linger);
  co_await (wait_for_close(socket) || timer.async_wait(use_nothrow));
  socket.close(ec);
}

asio::awaitable<void> serve(tcp::socket& socket, const SessionOptions& options, Handler handler,
                            ErrorResponder on_error, TimeoutObserver on_timeout)
{
  using namespace asio::experimental::awaitable_operators;
  const bool deadlines = options.idle_timeout.count() > 0 || options.partial_timeout.count() > 0;
  const auto write_limit = std::max(options.idle_timeout, options.partial_timeout);
  RequestReader reader(options.limits);
  std::array<char, 16 * 1024> buffer{};
  auto last_answer = Clock::now();
  std::optional<Clock::time_point> partial_since;
  asio::steady_timer timer(co_await asio::this_coro::executor);

  for (;;) {
    std::size_t n = 0;
    if (!deadlines) {
      const auto [read_error, got] = co_await socket.async_read_some(asio::buffer(buffer), use_nothrow);
      if (read_error) {
        co_return;
      }
      n = got;
    } else {
      auto deadline = Clock::time_point::max();
      if (partial_since && options.partial_timeout.count() > 0) {
        deadline = *partial_since + options.partial_timeout;
      } else if (!partial_since && options.idle_timeout.count() > 0) {
        deadline = last_answer + options.idle_timeout;
      }
      timer.expires_at(deadline);
      auto result = co_await (socket.async_read_some(asio::buffer(buffer), use_nothrow) || timer.async_wait(use_nothrow));
      if (result.index() == 1) {
        if (on_timeout) {
          on_timeout(partial_since.has_value());
        }
        asio::error_code ignored;
        socket.close(ignored);
        co_return;
      }
      const auto [read_error, got] = std::get<0>(result);
      if (read_error) {
        co_return;
      }
      n = got;
    }
    for (auto& event : reader.feed({buffer.data(), n})) {
      if (event.kind == ReaderEvent::Kind::expect_continue) {
        if (!co_await write_all(socket, k_continue, write_limit)) {
          co_return;
        }
        continue;
      }
      if (event.kind == ReaderEvent::Kind::error) {
        const auto out = serialize(on_error(event), false);
        if (co_await write_all(socket, out, write_limit)) {
          co_await lingering_close(socket, options.linger);
        }
        co_return;
      }
      Request& request = event.request;
      Answer answer = co_await handler(request);
      if (!answer.response) {
        co_return;
      }
      const bool keep_alive = request.keep_alive && !answer.close;
      const auto out = serialize(*answer.response, keep_alive);
      if (!co_await write_all(socket, out, write_limit)) {
        co_return;
      }
      last_answer = Clock::now();
      if (!keep_alive) {
        co_await lingering_close(socket, options.linger);
        co_return;
      }
    }
    if (reader.in_request()) {
      if (!partial_since) {
        partial_since = Clock::now();
      }
    } else {
      partial_since.reset();
    }
  }
}

} // namespace iamtok::http
