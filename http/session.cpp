#include "http/session.hpp"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <string_view>

namespace iamtok::http {

namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);

constexpr std::string_view k_continue = "HTTP/1.1 100 Continue\r\n\r\n";

// The connection's one deadline. The request loop moves it (a plain store:
// no timer is armed or cancelled per request); one watchdog coroutine sleeps
// until it and closes the socket once it has passed. Only a deadline moved
// earlier than the watchdog's alarm wakes the watchdog to re-arm, which
// happens when a request arrives in pieces, not on the keep-alive fast path.
class Watchdog
{
public:
  explicit Watchdog(const asio::any_io_executor& executor) : m_timer(executor) {}

  // Closes `socket` once the deadline has passed; returns when it did, or
  // when stop() was called.
  asio::awaitable<void> run(tcp::socket& socket)
  {
    while (!m_stopped) {
      m_alarm = m_deadline;
      m_timer.expires_at(m_alarm);
      co_await m_timer.async_wait(use_nothrow);
      if (!m_stopped && Clock::now() >= m_deadline) {
        m_fired = true;
        asio::error_code ignored;
        socket.close(ignored);
        co_return;
      }
    }
  }

  // `partial`: the deadline is the partial-request one (for the observer).
  void set(Clock::time_point deadline, bool partial = false)
  {
    m_deadline = deadline;
    m_partial = partial;
    if (deadline < m_alarm) {
      m_timer.cancel();
    }
  }
  void clear() { set(Clock::time_point::max()); }

  void stop()
  {
    m_stopped = true;
    m_timer.cancel();
  }

  bool fired() const { return m_fired; }
  bool partial() const { return m_partial; }

private:
  asio::steady_timer m_timer;
  Clock::time_point m_deadline = Clock::time_point::max();
  Clock::time_point m_alarm = Clock::time_point::max();
  bool m_partial = false;
  bool m_fired = false;
  bool m_stopped = false;
};

// Writes `data`: first straight away (the socket is non-blocking, and a
// response nearly always fits the send buffer), then, for what did not fit,
// asynchronously under the watchdog's `limit` (none without a watchdog).
asio::awaitable<bool> write_all(tcp::socket& socket, std::string_view data, Watchdog* watchdog,
                                std::chrono::milliseconds limit)
{
  asio::error_code ec;
  const std::size_t n = socket.write_some(asio::buffer(data), ec);
  if (!ec && n == data.size()) {
    co_return true;
  }
  if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
    co_return false;
  }
  data.remove_prefix(ec ? 0 : n);
  if (watchdog) {
    watchdog->set(Clock::now() + limit);
  }
  const auto [write_error, written] = co_await asio::async_write(socket, asio::buffer(data), use_nothrow);
  if (watchdog) {
    watchdog->clear();
  }
  co_return !write_error;
}

// The request loop of serve(); `watchdog` is null when there are no deadlines.
asio::awaitable<void> serve_requests(tcp::socket& socket, const SessionOptions& options, const Handler& handler,
                                     const ErrorResponder& on_error, const TimeoutObserver& on_timeout,
                                     Watchdog* watchdog)
{
  // However this ends (an exception too), the watchdog must stop with it.
  struct StopWatchdog
  {
    Watchdog* watchdog;
    ~StopWatchdog()
    {
      if (watchdog) {
        watchdog->stop();
      }
    }
  } stop_watchdog{watchdog};

  const auto write_limit = std::max(options.idle_timeout, options.partial_timeout);
  RequestReader reader(options.limits);
  std::array<char, 16 * 1024> buffer{};
  auto last_answer = Clock::now();
  std::optional<Clock::time_point> partial_since;

  for (;;) {
    if (watchdog) {
      if (partial_since && options.partial_timeout.count() > 0) {
        watchdog->set(*partial_since + options.partial_timeout, true);
      } else if (!partial_since && options.idle_timeout.count() > 0) {
        watchdog->set(last_answer + options.idle_timeout);
      } else {
        watchdog->clear();
      }
    }
    const auto [read_error, n] = co_await socket.async_read_some(asio::buffer(buffer), use_nothrow);
    if (read_error) {
      if (watchdog && watchdog->fired() && on_timeout) {
        on_timeout(watchdog->partial());
      }
      co_return;
    }
    if (watchdog) {
      // Handling a request (it may wait on the engine) has no deadline.
      watchdog->clear();
    }
    for (auto& event : reader.feed({buffer.data(), n})) {
      if (event.kind == ReaderEvent::Kind::expect_continue) {
        if (!co_await write_all(socket, k_continue, watchdog, write_limit)) {
          co_return;
        }
        continue;
      }
      if (event.kind == ReaderEvent::Kind::error) {
        const auto out = serialize(on_error(event), false);
        if (co_await write_all(socket, out, watchdog, write_limit)) {
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
      std::string out = serialize(*answer.response, keep_alive);
      const bool written = co_await write_all(socket, out, watchdog, write_limit);
      // A response may hold a token: zero both copies before they are freed.
      ::explicit_bzero(out.data(), out.size());
      ::explicit_bzero(answer.response->body.data(), answer.response->body.size());
      if (!written) {
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
  asio::error_code ec;
  // write_all() writes straight away and must not block doing it.
  if (socket.non_blocking(true, ec); ec) {
    co_return;
  }
  if (options.idle_timeout.count() == 0 && options.partial_timeout.count() == 0) {
    co_await serve_requests(socket, options, handler, on_error, on_timeout, nullptr);
    co_return;
  }
  Watchdog watchdog(co_await asio::this_coro::executor);
  co_await (serve_requests(socket, options, handler, on_error, on_timeout, &watchdog) && watchdog.run(socket));
}

} // namespace iamtok::http
