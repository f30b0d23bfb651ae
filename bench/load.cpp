#include "bench/load.hpp"

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <type_traits>

namespace iamtok::bench {

namespace {

using Clock = std::chrono::steady_clock;
using asio::local::stream_protocol;
constexpr auto k_use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
constexpr std::size_t k_max_reply = 1 << 20;
constexpr std::string_view k_ok_prefix = R"({"ok":true)";

// What one reply was: its size on the wire and whether it reports success.
struct Reply
{
  std::size_t bytes = 0;
  bool ok = false;
};

// Reads one NDJSON reply line from `buffer` + `socket`; nullopt when the
// connection fails.
template<typename Socket>
asio::awaitable<std::optional<Reply>> read_line_reply(Socket& socket, std::string& buffer)
{
  auto [ec, n] = co_await asio::async_read_until(socket, asio::dynamic_buffer(buffer, k_max_reply), '\n',
                                                 k_use_tuple);
  if (ec) {
    co_return std::nullopt;
  }
  const Reply reply{n, std::string_view(buffer).starts_with(k_ok_prefix)};
  buffer.erase(0, n);
  co_return reply;
}

// Reads one HTTP/1.1 response (a head, then a body of its Content-Length)
// from `buffer` + `socket`; nullopt when the connection fails or the head is
// not one this generator understands.
template<typename Socket>
asio::awaitable<std::optional<Reply>> read_http_reply(Socket& socket, std::string& buffer)
{
  auto [ec, head_bytes] = co_await asio::async_read_until(socket, asio::dynamic_buffer(buffer, k_max_reply),
                                                          "\r\n\r\n", k_use_tuple);
  if (ec) {
    co_return std::nullopt;
  }
  std::string head = buffer.substr(0, head_bytes);
  std::transform(head.begin(), head.end(), head.begin(),
                 [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
  constexpr std::string_view k_length = "\r\ncontent-length:";
  const auto at = head.find(k_length);
  if (!head.starts_with("http/1.") || head.size() < 12 || at == std::string::npos) {
    co_return std::nullopt;
  }
  std::size_t length = 0;
  auto digits = head.find_first_not_of(' ', at + k_length.size());
  for (; digits < head.size() && head[digits] >= '0' && head[digits] <= '9'; ++digits) {
    length = length * 10 + static_cast<std::size_t>(head[digits] - '0');
  }
  const std::size_t total = head_bytes + length;
  if (total > k_max_reply) {
    co_return std::nullopt;
  }
  if (buffer.size() < total) {
    auto [rec, rn] = co_await asio::async_read(socket, asio::dynamic_buffer(buffer, k_max_reply),
                                               asio::transfer_exactly(total - buffer.size()), k_use_tuple);
    if (rec) {
      co_return std::nullopt;
    }
  }
  const Reply reply{total, head.compare(9, 3, "200") == 0};
  buffer.erase(0, total);
  co_return reply;
}

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
  std::vector<std::function<void()>> closers; // close each connection (the watchdog)
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

// Drives one connection: `depth` requests (`request`, bytes as sent) in
// flight until the budget is spent, then waits for the outstanding replies
// (in order, so a FIFO of send times). `read_reply` reads one reply.
template<typename Socket, typename ReadReply>
asio::awaitable<void> drive(Run& run, Socket& socket, std::string request, ReadReply read_reply)
{
  std::deque<Clock::time_point> in_flight;
  std::string buffer;
  std::string burst;
  const auto now = Clock::now();
  for (std::uint32_t i = 0; i < run.options.depth && run.take_request(); ++i) {
    burst += request;
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
    const auto reply = co_await read_reply(socket, buffer);
    if (!reply) {
      run.result.errors += in_flight.size();
      break;
    }
    const auto received = Clock::now();
    run.result.latencies_ns.push_back(
        std::chrono::duration_cast<std::chrono::nanoseconds>(received - in_flight.front())
            .count());
    in_flight.pop_front();
    if (reply->ok) {
      ++run.result.ok;
    } else {
      ++run.result.errors;
    }
    if (run.result.reply_bytes == 0) {
      run.result.reply_bytes = reply->bytes;
    }
    run.last_reply = received;
    if (run.take_request()) {
      ++run.result.sent;
      in_flight.push_back(received);
      auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(request), k_use_tuple);
      if (wec) {
        run.result.errors += in_flight.size();
        break;
      }
    }
  }
  connection_done(run);
}

// Connects `options.connections` sockets of `Socket` to `endpoint` and
// spawns one drive() each; they live in `sockets`.
template<typename Socket, typename ReadReply>
void connect_all(Run& run, const typename Socket::endpoint_type& endpoint, std::string request,
                 ReadReply read_reply, std::vector<std::unique_ptr<Socket>>& sockets)
{
  for (std::uint32_t i = 0; i < run.options.connections; ++i) {
    auto socket = std::make_unique<Socket>(run.io);
    std::error_code ec;
    socket->connect(endpoint, ec);
    if (ec) {
      ++run.result.errors;
      continue;
    }
    if constexpr (std::is_same_v<Socket, asio::ip::tcp::socket>) {
      socket->set_option(asio::ip::tcp::no_delay(true), ec);
    }
    run.closers.push_back([s = socket.get()] {
      std::error_code ignored;
      s->close(ignored);
    });
    sockets.push_back(std::move(socket));
  }
  run.result.connected = static_cast<std::uint32_t>(sockets.size());
  run.active = run.result.connected;
  for (auto& socket : sockets) {
    asio::co_spawn(run.io, drive(run, *socket, request, read_reply), asio::detached);
  }
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

  // Every connection is made before the clock starts; the drivers spawned
  // meanwhile start together once run() runs.
  std::vector<std::unique_ptr<stream_protocol::socket>> unix_sockets;
  std::vector<std::unique_ptr<asio::ip::tcp::socket>> tcp_sockets;
  if (options.http_port != 0) {
    std::error_code ec;
    const auto address = asio::ip::make_address(options.http_host, ec);
    if (ec) {
      run.result.errors += options.connections;
    } else {
      connect_all(run, asio::ip::tcp::endpoint(address, options.http_port), options.http_request,
                  [](auto& socket, std::string& buffer) { return read_http_reply(socket, buffer); }, tcp_sockets);
    }
  } else {
    connect_all(run, stream_protocol::endpoint(options.socket_path), options.request_line + '\n',
                [](auto& socket, std::string& buffer) { return read_line_reply(socket, buffer); }, unix_sockets);
  }
  run.start = Clock::now();
  run.last_reply = run.start;
  run.stop_issuing = run.start + options.duration;

  // Replies still missing a grace period after the last send are lost.
  run.watchdog.expires_at(run.stop_issuing + options.grace);
  run.watchdog.async_wait([&run](const std::error_code& ec) {
    if (!ec) {
      for (auto& close : run.closers) {
        close();
      }
    }
  });
  if (run.active == 0) {
    run.watchdog.cancel();
  }
  run.io.run();

  run.result.seconds = std::chrono::duration<double>(run.last_reply - run.start).count();
  std::sort(run.result.latencies_ns.begin(), run.result.latencies_ns.end());
  return std::move(run.result);
}

std::string iam_token_request(const std::string& host, std::uint16_t port, const std::string& profile_id)
{
  const std::string body = "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Acr-token"
                           "&cr_token=iamtokend-placeholder-not-a-secret&profile_id=" + profile_id;
  return "POST /identity/token HTTP/1.1\r\nHost: " + host + ":" + std::to_string(port) +
         "\r\nContent-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\n"
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

} // namespace iamtok::bench
