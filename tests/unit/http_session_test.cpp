// http::serve() on a real loopback connection: keep-alive and pipelining,
// and the three deadlines (partial request, idle, response write). Bounds:
// a deadline may never close earlier than it says (the lower bounds are
// exact); the upper bounds only prove which deadline closed the connection,
// so they sit far above it, below the other deadline.

#include "http/session.hpp"
#include "util/fd.hpp"

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>

using namespace iamtok;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// One server connection served by http::serve() on its own thread; the
// handler answers every request with `body` (its target when empty).
class Server
{
public:
  Server(http::SessionOptions options, std::string body = {})
    : m_acceptor(m_io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)), m_body(std::move(body))
  {
    asio::co_spawn(m_io, accept_and_serve(options), [this](std::exception_ptr) { m_done = true; });
    m_thread = std::thread([this] { m_io.run(); });
  }
  ~Server()
  {
    m_io.stop();
    m_thread.join();
  }

  unsigned short port() const { return m_acceptor.local_endpoint().port(); }
  bool done() const { return m_done; }
  std::optional<bool> timed_out_partial() const
  {
    const int t = m_timeout;
    return t < 0 ? std::nullopt : std::optional<bool>(t == 1);
  }

  // True once serve() has returned, false if `limit` passes first.
  bool wait_done(std::chrono::milliseconds limit) const
  {
    const auto until = Clock::now() + limit;
    while (!m_done && Clock::now() < until) {
      std::this_thread::sleep_for(10ms);
    }
    return m_done;
  }

private:
  asio::awaitable<void> accept_and_serve(http::SessionOptions options)
  {
    auto socket = co_await m_acceptor.async_accept(asio::use_awaitable);
    auto handler = [this](http::Request& request) -> asio::awaitable<http::Answer> {
      http::Answer answer;
      answer.response.emplace();
      answer.response->content_type = "text/plain";
      answer.response->body = m_body.empty() ? request.target : m_body;
      co_return answer;
    };
    auto on_error = [](const http::ReaderEvent& event) {
      http::Response r;
      r.status = event.status;
      return r;
    };
    auto on_timeout = [this](bool partial) { m_timeout = partial ? 1 : 0; };
    co_await http::serve(socket, options, handler, on_error, on_timeout);
  }

  asio::io_context m_io;
  asio::ip::tcp::acceptor m_acceptor;
  std::string m_body;
  std::atomic<bool> m_done{false};
  std::atomic<int> m_timeout{-1}; // -1 none, 0 idle, 1 partial
  std::thread m_thread;
};

util::Fd connect_to(unsigned short port, int receive_buffer = 0)
{
  util::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd);
  if (receive_buffer > 0) {
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  return fd;
}

void send_all(const util::Fd& fd, std::string_view data)
{
  while (!data.empty()) {
    const auto n = ::send(fd.get(), data.data(), data.size(), MSG_NOSIGNAL);
    REQUIRE(n > 0);
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Reads until what was read holds `marker` `count` times, the peer closes
// or `limit` passes; returns what was read.
std::string read_until(const util::Fd& fd, std::string_view marker, int count, std::chrono::milliseconds limit)
{
  std::string got;
  const auto until = Clock::now() + limit;
  auto seen = [&] {
    int n = 0;
    for (auto at = got.find(marker); at != std::string::npos; at = got.find(marker, at + marker.size())) {
      ++n;
    }
    return n;
  };
  while (seen() < count && Clock::now() < until) {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) {
      continue;
    }
    char buffer[4096];
    const auto n = ::recv(fd.get(), buffer, sizeof(buffer), 0);
    if (n <= 0) {
      break;
    }
    got.append(buffer, static_cast<std::size_t>(n));
  }
  return got;
}

// How long until the peer closes (EOF or reset), reading and dropping what
// it sends; nullopt if `limit` passes first.
std::optional<Clock::duration> time_to_close(const util::Fd& fd, Clock::time_point from,
                                             std::chrono::milliseconds limit)
{
  const auto until = from + limit;
  while (Clock::now() < until) {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) {
      continue;
    }
    char buffer[4096];
    if (::recv(fd.get(), buffer, sizeof(buffer), 0) <= 0) {
      return Clock::now() - from;
    }
  }
  return std::nullopt;
}

http::SessionOptions with_deadlines(std::chrono::milliseconds idle, std::chrono::milliseconds partial)
{
  http::SessionOptions options;
  options.idle_timeout = idle;
  options.partial_timeout = partial;
  return options;
}

// The server closes `fd` no earlier than `deadline` after `sent`, and its
// serve() returns having reported a timeout of that kind.
void check_timed_out(const util::Fd& fd, const Server& server, Clock::time_point sent,
                     std::chrono::milliseconds deadline, bool partial)
{
  const auto closed = time_to_close(fd, sent, 60s);
  REQUIRE(closed);
  CHECK(*closed >= deadline);
  REQUIRE(server.wait_done(30s));
  CHECK(server.timed_out_partial() == std::optional<bool>(partial));
}

} // namespace

TEST_CASE("a session answers pipelined keep-alive requests in order", "[http][session]")
{
  Server server(with_deadlines(60s, 60s));
  const auto fd = connect_to(server.port());
  send_all(fd, "GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n");
  const auto got = read_until(fd, "HTTP/1.1 200", 2, 30s);
  const auto one = got.find("/one");
  const auto two = got.find("/two");
  REQUIRE(one != std::string::npos);
  REQUIRE(two != std::string::npos);
  CHECK(one < two);
  CHECK_FALSE(server.done());

  // Still open for a third one after both.
  send_all(fd, "GET /three HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(read_until(fd, "/three", 1, 30s).find("/three") != std::string::npos);
}

TEST_CASE("a partial request is closed at the partial-request deadline, not the later idle one", "[http][session]")
{
  Server server(with_deadlines(120s, 300ms));
  const auto fd = connect_to(server.port());
  const auto sent = Clock::now();
  send_all(fd, "GET /slow HTTP/1.1\r\nHo");
  check_timed_out(fd, server, sent, 300ms, true);
}

TEST_CASE("an idle keep-alive connection is closed at the idle deadline after its last response", "[http][session]")
{
  Server server(with_deadlines(300ms, 120s));
  const auto fd = connect_to(server.port());
  const auto sent = Clock::now();
  send_all(fd, "GET /once HTTP/1.1\r\nHost: x\r\n\r\n");
  REQUIRE(read_until(fd, "/once", 1, 30s).find("/once") != std::string::npos);
  check_timed_out(fd, server, sent, 300ms, false);
}

TEST_CASE("a client that does not read its response is cut off once the write limit passes", "[http][session]")
{
  // Far more than the loopback send and receive buffers can hold.
  Server server(with_deadlines(300ms, 300ms), std::string(32u << 20, 'x'));
  const auto fd = connect_to(server.port(), 4096);
  const auto sent = Clock::now();
  send_all(fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  REQUIRE(server.wait_done(60s));
  CHECK(Clock::now() - sent >= 300ms);
  // A write cut off is not an idle or partial-request timeout.
  CHECK_FALSE(server.timed_out_partial().has_value());
}
