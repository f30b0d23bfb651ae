// The daemon's loopback HTTP endpoint (docs/http.md) against the real
// iamtokend and iamtoken-sim: the IAM-style and IMDS-style calls an IBM SDK
// makes, over a real TCP socket with a plain HTTP client written here, hand
// out the socket's cached token with no extra upstream exchange; health,
// readiness and metrics; and hostile clients (wrong Host, Origin, unknown
// paths, smuggling framing, slowloris, a connection flood). Tokens are
// compared, never printed.

#include "tests/e2e/daemon_fixture.hpp"

#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <grp.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

using namespace iamtok;
using namespace iamtok::test;
using namespace std::chrono_literals;

namespace {

// The endpoint's partial-request deadline (docs/http.md, "Limits").
constexpr auto k_partial_deadline = 10s;

struct Response
{
  int status = 0; // 0: no response (closed, timed out, unparsable)
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body; // may hold a token: never print it

  std::string header(std::string_view name) const
  {
    for (const auto& [n, v] : headers) {
      if (n.size() == name.size() && std::equal(n.begin(), n.end(), name.begin(), [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
          })) {
        return v;
      }
    }
    return {};
  }
};

// A TCP connection to 127.0.0.1:port (closed on destruction).
class Connection
{
public:
  explicit Connection(std::uint16_t port)
  {
    m_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (m_fd < 0 || ::connect(m_fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
      if (m_fd >= 0) {
        ::close(m_fd);
      }
      throw std::runtime_error("cannot connect to the HTTP endpoint");
    }
  }
  ~Connection() { ::close(m_fd); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool send(std::string_view bytes) { return write_all(m_fd, bytes); }

  // Reads one response (status line, headers, Content-Length body) within
  // `timeout`; status 0 if the connection closes or the time runs out first.
  Response read(std::chrono::milliseconds timeout = 15s)
  {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    Response r;
    std::size_t head_end = std::string::npos;
    while ((head_end = m_buffer.find("\r\n\r\n")) == std::string::npos) {
      if (!fill(deadline)) {
        return r;
      }
    }
    const std::string head = m_buffer.substr(0, head_end);
    m_buffer.erase(0, head_end + 4);
    std::size_t line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    if (status_line.size() < 12 || !status_line.starts_with("HTTP/1.1 ")) {
      return r;
    }
    const int status = std::atoi(status_line.c_str() + 9);
    while (line_end != std::string::npos) {
      const auto start = line_end + 2;
      line_end = head.find("\r\n", start);
      const auto line = head.substr(start, line_end == std::string::npos ? std::string::npos : line_end - start);
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        auto value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        r.headers.emplace_back(line.substr(0, colon), value);
      }
    }
    const auto length = static_cast<std::size_t>(std::strtoul(r.header("Content-Length").c_str(), nullptr, 10));
    while (m_buffer.size() < length) {
      if (!fill(deadline)) {
        return r;
      }
    }
    r.body = m_buffer.substr(0, length);
    m_buffer.erase(0, length);
    r.status = status;
    return r;
  }

  // True if the daemon closes the connection within `timeout` (what it still
  // sends before is discarded).
  bool closed_within(std::chrono::milliseconds timeout)
  {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (fill(deadline)) {
    }
    return m_eof;
  }

private:
  // Appends what arrives before `deadline`; false on EOF, error or timeout.
  bool fill(std::chrono::steady_clock::time_point deadline)
  {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd entry{m_fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&entry, 1, static_cast<int>(left.count())) <= 0) {
      return false;
    }
    char chunk[4096];
    const auto n = ::read(m_fd, chunk, sizeof(chunk));
    if (n <= 0) {
      m_eof = true;
      return false;
    }
    m_buffer.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int m_fd = -1;
  std::string m_buffer;
  bool m_eof = false;
};

// One request on a new connection, its response.
Response one_request(std::uint16_t port, std::string_view request)
{
  Connection c(port);
  REQUIRE(c.send(request));
  return c.read();
}

std::string post(std::string_view path, std::string_view content_type, std::string_view body,
                 std::string_view extra_headers = {})
{
  return fmt::format("POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {}\r\n{}Content-Length: {}\r\n\r\n{}", path,
                     content_type, extra_headers, body.size(), body);
}

std::string get(std::string_view path, std::string_view host = "localhost:8911")
{
  return fmt::format("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", path, host);
}

// The string value of "key" in a flat JSON object (no escapes in it); "" if absent.
std::string json_string(const std::string& json, std::string_view key)
{
  const auto needle = fmt::format("\"{}\":\"", key);
  const auto at = json.find(needle);
  if (at == std::string::npos) {
    return {};
  }
  const auto start = at + needle.size();
  return json.substr(start, json.find('"', start) - start);
}

DaemonConfig http_config(std::string_view http = R"({"listen":["127.0.0.1:0"]})")
{
  DaemonConfig config;
  config.http = std::string(http);
  return config;
}

// Starts the daemon and waits until both profiles hold a token; returns the port.
std::uint16_t start_ready(DaemonFixture& fixture, const DaemonConfig& config = http_config())
{
  fixture.start(config);
  REQUIRE(eventually([&] { return fixture.state_of("reader") == "fresh" && fixture.state_of("deployer") == "fresh"; },
                     config.attempt_limit()));
  return fixture.http_port();
}

constexpr std::string_view k_form = "application/x-www-form-urlencoded";

// What ContainerAuthenticator sends for `profile_id`, with the placeholder CR token.
std::string iam_token_request(std::string_view profile_id)
{
  return post("/identity/token", k_form,
              fmt::format("grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Acr-token"
                          "&cr_token=placeholder&profile_id={}",
                          profile_id));
}

// A daemon whose profiles hold tokens, the socket's token for `profile`, and
// the simulator's stats before any HTTP request.
struct Ready
{
  explicit Ready(const std::string& profile)
    : port(start_ready(fixture)), socket_token(fixture.token(profile)), stats_before(fixture.sim_stats())
  {
    REQUIRE(socket_token.ok);
  }
  DaemonFixture fixture;
  std::uint16_t port;
  proto::Reply socket_token;
  std::string stats_before;
};

// The simulator counted no token call since `before` (its earlier stats).
void check_no_upstream_call_since(DaemonFixture& fixture, const std::string& before)
{
  const auto after = fixture.sim_stats();
  CHECK(json_count(after, "imds_iam_token") == json_count(before, "imds_iam_token"));
  CHECK(json_count(after, "imds_token") == json_count(before, "imds_token"));
}

} // namespace

TEST_CASE("the IAM-style call hands out the socket's cached token with no extra upstream exchange", "[http]")
{
  Ready ready("reader");
  auto& [fixture, port, socket_token, before] = ready;

  const auto r = one_request(port, iam_token_request(k_reader_id));
  REQUIRE(r.status == 200);
  CHECK(json_string(r.body, "access_token") == socket_token.access_token.expose());
  CHECK(json_string(r.body, "refresh_token") == "not_supported");
  CHECK(json_string(r.body, "token_type") == "Bearer");
  CHECK(json_string(r.body, "scope") == "ibm openid");
  CHECK(json_count(r.body, "expiration") == socket_token.expires_at);
  CHECK(json_count(r.body, "expires_in") > 0);

  check_no_upstream_call_since(fixture, before);
}

TEST_CASE("the IMDS-style calls trade a local handle for the socket's token, on both API generations", "[http]")
{
  Ready ready("deployer");
  auto& [fixture, port, socket_token, before] = ready;

  for (const auto& [token_path, iam_path] : {std::pair{"/instance_identity/v1/token?version=2021-09-20",
                                                       "/instance_identity/v1/iam_token?version=2021-09-20"},
                                             std::pair{"/identity/v1/token?version=2025-08-26",
                                                       "/identity/v1/iam_tokens?version=2025-08-26"}}) {
    INFO(token_path);
    const std::string body = R"({"expires_in":120})";
    Connection d(port);
    REQUIRE(d.send(fmt::format("PUT {} HTTP/1.1\r\nHost: 127.0.0.1\r\nMetadata-Flavor: ibm\r\n"
                               "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                               token_path, body.size(), body)));
    const auto minted = d.read();
    REQUIRE(minted.status == 200);
    const auto handle = json_string(minted.body, "access_token");
    CHECK(handle.size() == 64);
    CHECK(handle != socket_token.access_token.expose());
    CHECK(json_count(minted.body, "expires_in") == 120);
    CHECK(json_string(minted.body, "created_at").ends_with("Z"));
    CHECK(json_string(minted.body, "expires_at").ends_with("Z"));

    const std::string select = R"({"trusted_profile":{"name":"deployer"}})";
    REQUIRE(d.send(post(iam_path, "application/json", select, fmt::format("Authorization: Bearer {}\r\n", handle))));
    const auto token = d.read();
    REQUIRE(token.status == 200);
    CHECK(json_string(token.body, "access_token") == socket_token.access_token.expose());
    CHECK(json_count(token.body, "expires_in") > 0);
    CHECK(json_string(token.body, "created_at").ends_with("Z"));
    CHECK(json_string(token.body, "expires_at").ends_with("Z"));

    REQUIRE(d.send(post(iam_path, "application/json", select, "Authorization: Bearer 0123\r\n")));
    const auto refused = d.read();
    CHECK(refused.status == 401);
    CHECK(refused.body.find(R"("code":"unauthenticated")") != std::string::npos);
  }
  check_no_upstream_call_since(fixture, before);
}

TEST_CASE("healthz, readyz and metrics answer over HTTP and the metrics count HTTP requests", "[http]")
{
  DaemonFixture fixture;
  const auto port = start_ready(fixture);
  const auto health = one_request(port, get("/healthz"));
  CHECK(health.status == 200);
  CHECK(health.body == "ok\n");
  CHECK(one_request(port, get("/readyz", "[::1]:8911")).status == 200);
  const auto metrics = one_request(port, get("/metrics", "127.0.0.1"));
  REQUIRE(metrics.status == 200);
  CHECK(metrics.header("Content-Type").starts_with("text/plain; version=0.0.4"));
  CHECK(metrics.body.find(R"(iamtokend_requests_total{op="ping",result="ok",via="http"} 1)") != std::string::npos);
  // This connection at least (earlier ones may not have been seen closing yet).
  const auto gauge = metrics.body.find(R"(iamtokend_connections{via="http"} )");
  REQUIRE(gauge != std::string::npos);
  CHECK(std::strtod(metrics.body.c_str() + gauge + 34, nullptr) >= 1);
  // The same exposition as the socket's metrics op (both list the http transport).
  const auto line = fixture.request(R"({"op":"metrics"})");
  CHECK(line.find(R"(iamtokend_requests_total{op=\"metrics\",result=\"ok\",via=\"http\"} 1)") != std::string::npos);
}

TEST_CASE("requests naming another host, from a web page, or for unknown paths are refused", "[http][hostile]")
{
  DaemonFixture fixture;
  const auto port = start_ready(fixture);
  CHECK(one_request(port, get("/healthz", "attacker.example:8911")).status == 403);
  CHECK(one_request(port, get("/healthz", "10.0.0.1")).status == 403);
  CHECK(one_request(port, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nOrigin: http://localhost\r\n\r\n").status == 403);
  CHECK(one_request(port, get("/admin")).status == 404);
  const auto wrong = one_request(port, "DELETE /identity/token HTTP/1.1\r\nHost: localhost\r\n\r\n");
  CHECK(wrong.status == 405);
  CHECK(wrong.header("Allow") == "POST");
  CHECK(one_request(port, "GET /healthz HTTP/1.1\r\n\r\n").status == 400); // no Host
}

TEST_CASE("ambiguous framing gets 400 and the connection closes, while pipelined and HTTP/1.0 requests are served", "[http][hostile]")
{
  DaemonFixture fixture;
  const auto port = start_ready(fixture);
  for (const auto* smuggle :
       {"POST /identity/token HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "POST /identity/token HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd",
        "POST /identity/token HTTP/1.1\r\nHost: localhost\r\nContent-Length: +4\r\n\r\nabcd"}) {
    Connection c(port);
    REQUIRE(c.send(smuggle));
    CHECK(c.read().status == 400);
    CHECK(c.closed_within(5s));
  }
  {
    Connection c(port);
    REQUIRE(c.send(fmt::format("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n", std::string(9000, 'a'))));
    CHECK(c.read().status == 431);
  }
  {
    Connection c(port);
    REQUIRE(c.send(post("/identity/token", k_form, std::string(8193, 'a'))));
    CHECK(c.read().status == 413);
  }
  {
    Connection c(port);
    REQUIRE(c.send(get("/healthz") + get("/nope") + get("/readyz")));
    CHECK(c.read().status == 200);
    CHECK(c.read().status == 404);
    CHECK(c.read().status == 200);
    REQUIRE(c.send(get("/healthz"))); // still open: keep-alive
    CHECK(c.read().status == 200);
  }
  {
    Connection c(port);
    REQUIRE(c.send("GET /healthz HTTP/1.0\r\n\r\n"));
    const auto r = c.read();
    CHECK(r.status == 200);
    CHECK(r.header("Connection") == "close");
    CHECK(c.closed_within(5s));
  }
}

TEST_CASE("a request held partial is closed after the partial-request deadline", "[http][hostile]")
{
  DaemonFixture fixture;
  const auto port = start_ready(fixture);
  Connection c(port);
  REQUIRE(c.send("GET /healthz HTTP/1.1\r\nHost: local"));
  CHECK_FALSE(c.closed_within(1s)); // well inside the deadline
  CHECK(c.closed_within(k_partial_deadline + k_start_limit));
  CHECK(one_request(port, get("/healthz")).status == 200); // others are served meanwhile and after
}

TEST_CASE("past max_connections a connection gets one 503 and is closed, and a freed slot serves again", "[http][hostile]")
{
  DaemonFixture fixture;
  const auto config = http_config(R"({"listen":["127.0.0.1:0"],"max_connections":3})");
  const auto port = start_ready(fixture, config);
  std::vector<std::unique_ptr<Connection>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::make_unique<Connection>(port));
    REQUIRE(held.back()->send(get("/healthz")));
    REQUIRE(held.back()->read().status == 200); // accepted and open
  }
  Connection extra(port);
  const auto busy = extra.read();
  CHECK(busy.status == 503);
  CHECK(busy.header("Retry-After") == "1");
  CHECK(extra.closed_within(5s));

  held.pop_back();
  // The freed slot is taken again once the daemon has seen the close.
  CHECK(eventually([&] {
    Connection next(port);
    return next.send(get("/healthz")) && next.read().status == 200;
  }, 10s));
}

TEST_CASE("a reload applies http.max_connections and logs that a changed listen needs a restart", "[http]")
{
  DaemonFixture fixture;
  auto config = http_config(R"({"listen":["127.0.0.1:0"],"max_connections":1})");
  const auto port = start_ready(fixture, config);
  Connection first(port);
  REQUIRE(first.send(get("/healthz")));
  REQUIRE(first.read().status == 200);
  {
    Connection refused(port);
    CHECK(refused.read().status == 503);
  }

  config.http = R"({"listen":["127.0.0.1:0","[::1]:0"],"max_connections":2})";
  fixture.write_config(config);
  fixture.daemon().signal(SIGHUP);
  REQUIRE(fixture.daemon().wait_for_output("http.listen changed: restart iamtokend to apply", Process::Stream::err,
                                           k_start_limit));
  REQUIRE(fixture.daemon().wait_for_output("reloaded:", Process::Stream::err, k_start_limit));
  Connection second(port);
  REQUIRE(second.send(get("/healthz")));
  CHECK(second.read().status == 200);
  REQUIRE(first.send(get("/healthz")));
  CHECK(first.read().status == 200);
}

namespace {

// The TCP sockets `pid` holds that are listening (state 0A in
// /proc/net/tcp and tcp6), as "local_address" fields.
std::vector<std::string> tcp_listeners_of(pid_t pid)
{
  std::set<std::string> inodes;
  const auto fd_dir = std::filesystem::path("/proc") / std::to_string(pid) / "fd";
  for (const auto& entry : std::filesystem::directory_iterator(fd_dir)) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(entry.path(), ec).string();
    if (!ec && target.starts_with("socket:[")) {
      inodes.insert(target.substr(8, target.size() - 9));
    }
  }
  std::vector<std::string> out;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line); // the header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
      if (state == "0A" && inodes.contains(inode)) {
        out.push_back(local);
      }
    }
  }
  return out;
}

// As uid/gid 65534 in a child process: one IAM-style request for `profile_id`
// on 127.0.0.1:port; the HTTP status the daemon answered (0: none).
int status_as_nobody(std::uint16_t port, std::string_view profile_id)
{
  const std::string request = iam_token_request(profile_id);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (!become_other_user()) {
      ::_exit(100);
    }
    try {
      Connection c(port);
      if (!c.send(request)) {
        ::_exit(101);
      }
      const auto r = c.read();
      ::_exit(r.status == 200 ? 2 : r.status == 403 ? 3 : 102);
    } catch (...) {
      ::_exit(103);
    }
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  switch (WEXITSTATUS(status)) {
  case 2: return 200;
  case 3: return 403;
  default: FAIL("the child as uid 65534 got no usable answer (exit " << WEXITSTATUS(status) << ")"); return 0;
  }
}

} // namespace

TEST_CASE("a caller over HTTP is the user owning its socket: the allow lists apply as on the Unix socket", "[http][hostile]")
{
  if (::geteuid() != 0) {
    WARN("skipped: acting as uid 65534 needs root");
    return;
  }
  DaemonFixture fixture;
  DaemonConfig config = http_config();
  // reader: root only (by uid list); deployer: no allow list, anyone.
  config.profiles = fmt::format(R"([{{"name":"reader","profile_id":"{}","allow":{{"uids":[0]}}}},)"
                                R"({{"name":"deployer","profile_id":"{}"}}])",
                                k_reader_id, k_deployer_id);
  const auto port = start_ready(fixture, config);
  CHECK(status_as_nobody(port, k_reader_id) == 403);
  CHECK(status_as_nobody(port, k_deployer_id) == 200);
  // The daemon's own caller, root, may use both.
  const auto r = one_request(port, iam_token_request(k_reader_id));
  CHECK(r.status == 200);
}

TEST_CASE("without an http section iamtokend listens on no TCP socket, with one only where told", "[http]")
{
  {
    DaemonFixture fixture;
    fixture.start();
    CHECK(tcp_listeners_of(fixture.daemon().pid()).empty());
  }
  DaemonFixture fixture;
  const auto port = start_ready(fixture);
  const auto listeners = tcp_listeners_of(fixture.daemon().pid());
  REQUIRE(listeners.size() == 1);
  // 127.0.0.1 in /proc/net/tcp's little-endian hex, then the port.
  CHECK(listeners.front() == fmt::format("0100007F:{:04X}", port));
}

TEST_CASE("iamtokend serves HTTP on a socket systemd passes as http instead of binding its listen address",
          "[http][systemd]")
{
  const std::string activate = "/usr/bin/systemd-socket-activate";
  if (!std::filesystem::exists(activate)) {
    WARN("systemd-socket-activate not installed; skipped");
    return;
  }
  // Two ports the kernel has just handed out: one systemd passes, one the config names.
  const auto free_port = [] {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    ::close(fd);
    return ntohs(address.sin_port);
  };
  const auto passed_port = free_port();
  auto configured_port = free_port();
  while (configured_port == passed_port) {
    configured_port = free_port();
  }
  DaemonFixture fixture;
  fixture.write_config(http_config(fmt::format(R"({{"listen":["127.0.0.1:{}"]}})", configured_port)));
  ProcessOptions options;
  options.binary = activate;
  options.args = {"-l", fmt::format("127.0.0.1:{}", passed_port), "--fdname=http", IAMTOKEND_BINARY, "--config",
                  fixture.config_path()};
  options.unset_env = {"JOURNAL_STREAM", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"};
  Process daemon(std::move(options));
  // systemd-socket-activate starts iamtokend at the first connection.
  REQUIRE(eventually(
    [&] {
      try {
        Connection first(passed_port);
        return true;
      } catch (const std::runtime_error&) {
        return false;
      }
    },
    k_start_limit));
  REQUIRE(daemon.wait_for_output(fmt::format("http endpoint listening on 127.0.0.1:{} (passed by systemd)", passed_port),
                                 Process::Stream::err, k_start_limit));
  const auto socket_token = fixture.token("reader");
  REQUIRE(socket_token.ok);

  const auto r = one_request(passed_port, iam_token_request(k_reader_id));
  REQUIRE(r.status == 200);
  CHECK(json_string(r.body, "access_token") == socket_token.access_token.expose());
  // Only the passed socket listens: the configured address is not bound.
  CHECK(tcp_listeners_of(daemon.pid()) == std::vector<std::string>{fmt::format("0100007F:{:04X}", passed_port)});

  daemon.signal(SIGTERM);
  const auto code = daemon.wait(k_stop_limit);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
}
