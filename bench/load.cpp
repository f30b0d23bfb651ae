#include "bench/load.hpp"

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>

#include <algorithm>
#include <cmath>
#include <deque>
#include <memory>
#include <string_view>

namespace iamtok::bench {

namespace {

using Clock = std::chrono::steady_clock;
using asio::local::stream_protocol;
constexpr auto k_use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
constexpr std::size_t k_max_reply = 1 << 20;
constexpr std::string_view k_ok_prefix = R"({"ok":true)";

struct Run
{
  explicit Run(const LoadOptions& opts) : options(opts), watchdog(io), hold_timer(io) {}

  // Takes one request from the budget; false once the count or time is spent.
  bool take_request()
  {
    if (issued >= options.requests || Clock::now() >= stop_issuing) {
      return false;
    }
    ++issued;
    return true;
  }

  const LoadOptions& options;
  asio::io_context io;
  asio::steady_timer watchdog;
  asio::steady_timer hold_timer;
  std::vector<std::unique_ptr<stream_protocol::socket>> sockets;
  std::uint64_t issued = 0;
  std::uint32_t active = 0;
  Clock::time_point start;
  Clock::time_point stop_issuing;
  Clock::time_point last_reply;
  void (*on_hold)() = nullptr;
  LoadResult result;
};

void connection_done(Run& run)
{
  if (--run.active > 0) {
    return;
  }
  run.watchdog.cancel();
  if (run.options.hold.count() > 0) {
    if (run.on_hold != nullptr) {
      run.on_hold();
    }
    run.hold_timer.expires_after(run.options.hold);
    run.hold_timer.async_wait([](const std::error_code&) {});
  }
}

// Drives one connection: `depth` requests in flight until the budget is spent,
// then waits for the outstanding replies (in order, so a FIFO of send times).
asio::awaitable<void> drive(Run& run, stream_protocol::socket& socket)
{
  const std::string line = run.options.request_line + '\n';
  std::deque<Clock::time_point> in_flight;
  std::string buffer;
  std::string burst;
  const auto now = Clock::now();
  for (std::uint32_t i = 0; i < run.options.depth && run.take_request(); ++i) {
    burst += line;
    in_flight.push_back(now);
  }
  run.result.sent += in_flight.size();
  if (!burst.empty()) {
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(burst), k_use_tuple);
    if (ec) {
      run.result.errors += in_flight.size();
      in_flight.clear();
    }
  }
  while (!in_flight.empty()) {
    auto [ec, n] = co_await asio::async_read_until(
        socket, asio::dynamic_buffer(buffer, k_max_reply), '\n', k_use_tuple);
    if (ec) {
      run.result.errors += in_flight.size();
      break;
    }
    const auto received = Clock::now();
    run.result.latencies_ns.push_back(
        std::chrono::duration_cast<std::chrono::nanoseconds>(received - in_flight.front())
            .count());
    in_flight.pop_front();
    if (std::string_view(buffer).starts_with(k_ok_prefix)) {
      ++run.result.ok;
    } else {
      ++run.result.errors;
    }
    if (run.result.reply_bytes == 0) {
      run.result.reply_bytes = n;
    }
    buffer.erase(0, n);
    run.last_reply = received;
    if (run.take_request()) {
      ++run.result.sent;
      in_flight.push_back(received);
      auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(line), k_use_tuple);
      if (wec) {
        run.result.errors += in_flight.size();
        break;
      }
    }
  }
  connection_done(run);
}

} // namespace

double LoadResult::throughput() const
{
  return seconds > 0 ? static_cast<double>(ok + errors) / seconds : 0.0;
}

double LoadResult::quantile_us(double q) const
{
  if (latencies_ns.empty()) {
    return 0.0;
  }
  const auto last = static_cast<double>(latencies_ns.size() - 1);
  const auto index = static_cast<std::size_t>(std::ceil(std::clamp(q, 0.0, 1.0) * last));
  return static_cast<double>(latencies_ns[index]) / 1000.0;
}

LoadResult run_load(const LoadOptions& options, void (*on_hold)())
{
  Run run(options);
  run.on_hold = on_hold;
  run.result.latencies_ns.reserve(std::min<std::uint64_t>(options.requests, 20'000'000));

  const stream_protocol::endpoint endpoint(options.socket_path);
  for (std::uint32_t i = 0; i < options.connections; ++i) {
    auto socket = std::make_unique<stream_protocol::socket>(run.io);
    std::error_code ec;
    socket->connect(endpoint, ec);
    if (ec) {
      ++run.result.errors;
      continue;
    }
    run.sockets.push_back(std::move(socket));
  }
  run.result.connected = static_cast<std::uint32_t>(run.sockets.size());

  run.start = Clock::now();
  run.last_reply = run.start;
  run.stop_issuing = run.start + options.duration;
  run.active = run.result.connected;
  // Replies still missing a grace period after the last send are lost.
  run.watchdog.expires_at(run.stop_issuing + options.grace);
  run.watchdog.async_wait([&run](const std::error_code& ec) {
    if (!ec) {
      for (auto& socket : run.sockets) {
        std::error_code ignored;
        socket->close(ignored);
      }
    }
  });
  for (auto& socket : run.sockets) {
    asio::co_spawn(run.io, drive(run, *socket), asio::detached);
  }
  if (run.active == 0) {
    run.watchdog.cancel();
  }
  run.io.run();

  run.result.seconds = std::chrono::duration<double>(run.last_reply - run.start).count();
  std::sort(run.result.latencies_ns.begin(), run.result.latencies_ns.end());
  return std::move(run.result);
}

} // namespace iamtok::bench
