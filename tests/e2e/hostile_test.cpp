// Hostile local clients against the real iamtokend and iamtoken-sim (docs/protocol.md
// limits, docs/security.md): oversized and endless lines, slowloris, a
// pipelining client that never reads, connection floods, half-closed sockets,
// garbage, deep nesting, huge numbers, duplicate keys. Throughout, a
// well-behaved client keeps getting tokens and the daemon stays alive; at the
// end no token it handed out appears in its log. Tokens are never printed.

#include "proto/codec.hpp"
#include "tests/e2e/sim_process.hpp"
#include "tests/support/other_user.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using iamtok::test::k_react_limit;
using iamtok::test::k_start_limit;
using iamtok::test::Process;
using iamtok::test::ProcessOptions;
using iamtok::test::SimProcess;
using iamtok::test::TempDir;
using Clock = std::chrono::steady_clock;

constexpr std::string_view k_reader_id = "Profile-00000000-0000-4000-8000-000000000001";

// One client connection to the daemon's socket, non-blocking after connect;
// every wait is bounded by a timeout.
class Conn
{
public:
  // Connects to `path`; throws std::runtime_error if the daemon does not accept.
  explicit Conn(const std::string& path)
  {
    sockaddr_un addr{};
    if (path.size() >= sizeof(addr.sun_path)) {
      throw std::runtime_error("socket path too long");
    }
    m_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (m_fd < 0 || ::connect(m_fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
      const int err = errno;
      close();
      throw std::runtime_error(std::string("connect: ") + std::strerror(err));
    }
    const int flags = ::fcntl(m_fd, F_GETFL);
    ::fcntl(m_fd, F_SETFL, flags | O_NONBLOCK);
  }
  ~Conn() { close(); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  int fd() const { return m_fd; }
  bool eof() const { return m_eof; }

  void close()
  {
    if (m_fd >= 0) {
      ::close(m_fd);
      m_fd = -1;
    }
  }

  // True once all of `data` is written; false if the peer closed or `timeout`
  // passed first.
  bool send_all(std::string_view data, std::chrono::milliseconds timeout = 5s)
  {
    const auto deadline = Clock::now() + timeout;
    while (!data.empty()) {
      const auto n = ::send(m_fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n > 0) {
        data.remove_prefix(static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return false;
      }
      if (!wait_for(POLLOUT, deadline)) {
        return false;
      }
    }
    return true;
  }

  // The next line without its '\n'; nullopt on end of stream (eof() is then
  // true) or when `timeout` passes first.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout = 10s)
  {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (const auto nl = m_buffer.find('\n'); nl != std::string::npos) {
        std::string line = m_buffer.substr(0, nl);
        m_buffer.erase(0, nl + 1);
        return line;
      }
      if (m_eof || !fill(deadline)) {
        return std::nullopt;
      }
    }
  }

  // True if the daemon closes the connection within `timeout` (anything it
  // sends first is kept for read_line()).
  bool wait_eof(std::chrono::milliseconds timeout = k_react_limit)
  {
    const auto deadline = Clock::now() + timeout;
    while (!m_eof && fill(deadline)) {
    }
    return m_eof;
  }

  std::size_t buffered() const { return m_buffer.size(); }

private:
  // Reads what is available, waiting until `deadline`. Returns false on timeout.
  bool fill(Clock::time_point deadline)
  {
    for (;;) {
      char chunk[8192];
      const auto n = ::recv(m_fd, chunk, sizeof(chunk), 0);
      if (n > 0) {
        m_buffer.append(chunk, static_cast<std::size_t>(n));
        return true;
      }
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        m_eof = true;
        return true;
      }
      if (!wait_for(POLLIN, deadline)) {
        return false;
      }
    }
  }

  bool wait_for(short events, Clock::time_point deadline) const
  {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() < 0) {
      return false;
    }
    pollfd p{m_fd, events, 0};
    return ::poll(&p, 1, static_cast<int>(left.count())) > 0;
  }

  int m_fd = -1;
  bool m_eof = false;
  std::string m_buffer;
};

// "ok" for an ok reply, the error code for an error reply, "<unparsable>"
// otherwise. Never contains the token a reply may carry.
std::string code_of(std::string_view line)
{
  const auto reply = iamtok::proto::parse_reply(line);
  if (!reply) {
    return "<unparsable>";
  }
  return reply->ok ? std::string("ok") : reply->code;
}

std::optional<std::int64_t> int_id_of(std::string_view line)
{
  const auto reply = iamtok::proto::parse_reply(line);
  if (!reply || !std::holds_alternative<std::int64_t>(reply->id)) {
    return std::nullopt;
  }
  return std::get<std::int64_t>(reply->id);
}

// The resident set of process `pid` in KiB (VmRSS), or -1.
long vm_rss_kb(pid_t pid)
{
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      long kb = -1;
      in >> kb;
      return kb;
    }
    in.ignore(1 << 16, '\n');
  }
  return -1;
}

struct DaemonOptions
{
  std::uint32_t max_connections = 50;
  std::string mode = "0600";
  // Run the daemon as uid/gid 65534 through setpriv, from this copy of it
  // (one that user may execute).
  const iamtok::test::ExecutableCopy* as_other_user = nullptr;
};

// iamtoken-sim plus iamtokend (profile `reader`) on a socket in a temporary
// directory. The constructor returns once a well-behaved client got a token.
class Hostile
{
public:
  explicit Hostile(DaemonOptions options = {})
    : m_sim({"--quiet", "--iam-lifetime", "3600"}),
      m_socket((m_dir / "d.sock").string()),
      m_daemon(make_daemon(options))
  {
    // Start-up, then the first token: a CR token and an exchange, each
    // within the default refresh.timeout_s (10 s).
    const auto deadline = Clock::now() + k_start_limit + 2 * 10s;
    while (Clock::now() < deadline && m_daemon.running() && !std::filesystem::exists(m_socket)) {
      std::this_thread::sleep_for(20ms);
    }
    bool ready = false;
    while (!ready && Clock::now() < deadline && m_daemon.running()) {
      ready = good_client_gets_token();
      if (!ready) {
        std::this_thread::sleep_for(100ms);
      }
    }
    if (!ready) {
      throw std::runtime_error("iamtokend did not serve a token: " + m_daemon.stderr_text());
    }
  }

  ~Hostile()
  {
    for (auto& t : m_tokens) {
      iamtok::wipe_string(t);
    }
  }

  const std::string& socket() const { return m_socket; }
  Process& daemon() { return m_daemon; }
  SimProcess& sim() { return m_sim; }

  // True if a fresh connection gets a valid, unexpired token for `reader`.
  // Remembers the token for leaked_token_in_log().
  bool good_client_gets_token()
  {
    try {
      Conn conn(m_socket);
      if (!conn.send_all("{\"op\":\"token\",\"profile\":\"reader\",\"id\":1}\n")) {
        return false;
      }
      // The daemon answers within refresh.timeout_s (10 s by default).
      auto line = conn.read_line(10s + k_react_limit);
      if (!line) {
        return false;
      }
      const auto reply = iamtok::proto::parse_reply(*line);
      iamtok::wipe_string(*line);
      if (!reply || !reply->is_token() || reply->expires_at <= std::time(nullptr)) {
        return false;
      }
      m_tokens.emplace_back(reply->access_token.expose());
      return true;
    } catch (const std::runtime_error&) {
      return false;
    }
  }

  // True if the daemon's log holds any token it handed out, or the payload or
  // signature part of one.
  bool leaked_token_in_log() const
  {
    const std::string log = m_daemon.stderr_text();
    for (const auto& token : m_tokens) {
      const auto first_dot = token.find('.');
      const auto last_dot = token.rfind('.');
      if (log.find(token) != std::string::npos) {
        return true;
      }
      if (first_dot != std::string::npos && last_dot > first_dot + 1) {
        const auto payload = token.substr(first_dot + 1, last_dot - first_dot - 1);
        const auto signature = token.substr(last_dot + 1);
        if (log.find(payload) != std::string::npos || (signature.size() >= 16 && log.find(signature) != std::string::npos)) {
          return true;
        }
      }
    }
    return false;
  }

  std::size_t tokens_seen() const { return m_tokens.size(); }

  // The connections the daemon has open, the asking one included, from a
  // status request; nullopt if it did not answer with a status.
  std::optional<std::uint64_t> open_connections() const
  {
    try {
      Conn conn(m_socket);
      if (!conn.send_all("{\"op\":\"status\"}\n")) {
        return std::nullopt;
      }
      const auto line = conn.read_line(k_react_limit);
      if (!line) {
        return std::nullopt;
      }
      const auto status = iamtok::proto::parse_status_reply(*line);
      return status ? std::optional<std::uint64_t>(status->counters.connections) : std::nullopt;
    } catch (const std::runtime_error&) {
      return std::nullopt;
    }
  }

  // True once the daemon has no connection open but the asking one (it
  // has seen every earlier client close), within k_react_limit.
  bool wait_until_no_connections() const
  {
    const auto deadline = Clock::now() + k_react_limit;
    while (open_connections() != std::optional<std::uint64_t>(1)) {
      if (Clock::now() >= deadline) {
        return false;
      }
      std::this_thread::sleep_for(20ms);
    }
    return true;
  }

private:
  Process make_daemon(const DaemonOptions& options)
  {
    const auto config_path = m_dir / "config.json";
    std::ofstream(config_path) << "{\"socket\":{\"path\":\"" << m_socket << "\",\"mode\":\"" << options.mode
                               << "\",\"max_connections\":" << options.max_connections << "},"
                               << "\"source\":{\"type\":\"imds\",\"imds\":{\"endpoint\":\"" << m_sim.url() << "\"}},"
                               << "\"iam\":{\"endpoint\":\"" << m_sim.url() << "\"},"
                               << "\"profiles\":[{\"name\":\"reader\",\"profile_id\":\"" << k_reader_id << "\"}]}\n";
    ProcessOptions process;
    process.binary = IAMTOKEND_BINARY;
    process.args = {"--config", config_path.string(), "--log-level", "debug"};
    if (options.as_other_user != nullptr) {
      if (::chown(m_dir.path().c_str(), iamtok::test::k_other_uid, iamtok::test::k_other_gid) != 0 ||
          ::chmod(config_path.c_str(), 0644) != 0) {
        throw std::runtime_error("cannot hand the test directory to uid 65534");
      }
      process.binary = "/usr/bin/setpriv";
      process.args.insert(process.args.begin(), {"--reuid=65534", "--regid=65534", "--clear-groups", "--",
                                                 options.as_other_user->path()});
    }
    // A small ASan quarantine so that VmRSS reflects live memory.
    const char* asan = std::getenv("ASAN_OPTIONS");
    process.env = {{"ASAN_OPTIONS", std::string(asan != nullptr ? asan : "") + ":quarantine_size_mb=8"}};
    process.unset_env = {"IAMTOKEND_CONFIG", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "WATCHDOG_USEC",
                         "JOURNAL_STREAM"};
    return Process(std::move(process));
  }

  TempDir m_dir;
  SimProcess m_sim;
  std::string m_socket;
  Process m_daemon;
  std::vector<std::string> m_tokens;
};

// Checks that end every test: still alive, still serving, no sanitizer
// report, nothing leaked.
void require_healthy(Hostile& h)
{
  REQUIRE(h.good_client_gets_token());
  REQUIRE(h.daemon().running());
  const auto log = h.daemon().stderr_text();
  CHECK(log.find("Sanitizer") == std::string::npos);
  CHECK(log.find("runtime error:") == std::string::npos);
  REQUIRE_FALSE(h.leaked_token_in_log());
}

std::string ping_line_of_size(std::size_t size)
{
  const std::string head = "{\"op\":\"ping\",\"id\":5,\"pad\":\"";
  const std::string tail = "\"}";
  return head + std::string(size - head.size() - tail.size(), 'a') + tail;
}

} // namespace

TEST_CASE("A request line of exactly 4096 bytes is served and one byte more is request_too_large and closes",
          "[hostile]")
{
  Hostile h;
  {
    Conn conn(h.socket());
    REQUIRE(conn.send_all(ping_line_of_size(4096) + "\n"));
    const auto line = conn.read_line();
    REQUIRE(line.has_value());
    CHECK(code_of(*line) == "ok");
    CHECK(int_id_of(*line) == 5);
  }
  {
    Conn conn(h.socket());
    REQUIRE(conn.send_all(ping_line_of_size(4097) + "\n"));
    const auto line = conn.read_line();
    REQUIRE(line.has_value());
    CHECK(code_of(*line) == "request_too_large");
    CHECK(conn.wait_eof());
  }
  REQUIRE(h.good_client_gets_token());
  {
    // A megabyte without any newline: the daemon stops at the limit, answers
    // once and closes (our writes may fail once it has).
    Conn conn(h.socket());
    conn.send_all(std::string(1 << 20, 'x'), 5s);
    const auto line = conn.read_line();
    REQUIRE(line.has_value());
    CHECK(code_of(*line) == "request_too_large");
    CHECK(conn.wait_eof());
  }
  require_healthy(h);
}

TEST_CASE("A slowloris client dripping a partial line is closed after the partial-line timeout while others are served",
          "[hostile][slow]")
{
  // The daemon's limits (docs/protocol.md): a partial line is held at most
  // 10 s, a connection without a complete request at most 60 s.
  constexpr auto k_partial_line_timeout = 10s;
  constexpr auto k_idle_timeout = 60s;
  Hostile h;
  Conn slow(h.socket());
  const auto start = Clock::now();
  REQUIRE(slow.send_all("{\"op\":\"ping\",\"pad\":\""));
  int served = 0;
  auto next_good = start;
  // One byte every 500 ms never completes the line: the connection is closed
  // once it has held a partial line for 10 s, however it trickles. Closing
  // before the idle timeout shows it is the partial-line timer that did it.
  while (Clock::now() - start < k_idle_timeout && !slow.eof()) {
    if (!slow.send_all("a", 100ms)) {
      slow.wait_eof(1s);
      break;
    }
    if (Clock::now() >= next_good) {
      REQUIRE(h.good_client_gets_token());
      ++served;
      next_good = Clock::now() + 2s;
    }
    slow.wait_eof(500ms);
  }
  const auto elapsed = Clock::now() - start;
  REQUIRE(slow.eof());
  // The daemon saw the first bytes after `start`: it cannot close earlier.
  CHECK(elapsed >= k_partial_line_timeout);
  CHECK(elapsed < k_idle_timeout);
  // Good clients were served while the slow one held its partial line.
  CHECK(served >= 2);
  require_healthy(h);
}

TEST_CASE("A client that pipelines thousands of requests and never reads does not grow the daemon's memory",
          "[hostile]")
{
  Hostile h;
  const pid_t pid = h.daemon().pid();
  // Warm up, then measure.
  for (int i = 0; i < 20; ++i) {
    REQUIRE(h.good_client_gets_token());
  }
  const long before = vm_rss_kb(pid);
  REQUIRE(before > 0);

  Conn hog(h.socket());
  const int small = 4096;
  ::setsockopt(hog.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  std::string batch;
  for (int i = 0; i < 1000; ++i) {
    batch += "{\"op\":\"token\",\"profile\":\"reader\"}\n";
  }
  // Up to 200000 token requests (each reply holds a ~1 KB token) for at most
  // 4 s: a daemon that keeps reading without sending would buffer ~200 MB.
  std::size_t requests_sent = 0;
  const auto deadline = Clock::now() + 4s;
  while (requests_sent < 200'000 && Clock::now() < deadline) {
    if (!hog.send_all(batch, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()))) {
      break;
    }
    requests_sent += 1000;
  }
  INFO("requests written before the daemon stopped reading: about " << requests_sent);

  // The hog is still connected and not reading: others are served.
  for (int i = 0; i < 3; ++i) {
    REQUIRE(h.good_client_gets_token());
  }
  const long after = vm_rss_kb(pid);
  INFO("VmRSS before " << before << " KiB, after " << after << " KiB");
  CHECK(after - before < 48 * 1024);
  hog.close();
  require_healthy(h);
}

TEST_CASE("Connections past max_connections get one busy line and are closed, and the daemon serves again after",
          "[hostile]")
{
  Hostile h; // max_connections 50
  REQUIRE(h.wait_until_no_connections()); // the fixture's own clients are gone
  std::vector<std::unique_ptr<Conn>> conns;
  for (int i = 0; i < 200; ++i) {
    conns.push_back(std::make_unique<Conn>(h.socket()));
  }
  int busy = 0;
  int other = 0;
  std::vector<bool> done(conns.size(), false);
  const auto deadline = Clock::now() + k_react_limit;
  while (busy + other < 150 && Clock::now() < deadline) {
    for (std::size_t i = 0; i < conns.size(); ++i) {
      if (done[i]) {
        continue;
      }
      if (const auto line = conns[i]->read_line(0ms)) {
        done[i] = true;
        if (code_of(*line) == "busy") {
          ++busy;
          CHECK(conns[i]->wait_eof());
          CHECK(conns[i]->buffered() == 0); // exactly one line
        } else {
          ++other;
        }
      }
    }
    std::this_thread::sleep_for(20ms);
  }
  CHECK(busy == 150);
  CHECK(other == 0);
  // The 50 admitted connections stay open and silent.
  std::this_thread::sleep_for(300ms);
  int silent_open = 0;
  for (std::size_t i = 0; i < conns.size(); ++i) {
    if (!done[i] && !conns[i]->read_line(0ms) && !conns[i]->eof()) {
      ++silent_open;
    }
  }
  CHECK(silent_open == 50);
  // An admitted connection still works.
  for (std::size_t i = 0; i < conns.size(); ++i) {
    if (!done[i]) {
      REQUIRE(conns[i]->send_all("{\"op\":\"ping\",\"id\":3}\n"));
      const auto line = conns[i]->read_line();
      REQUIRE(line.has_value());
      CHECK(code_of(*line) == "ok");
      break;
    }
  }
  conns.clear();
  REQUIRE(h.wait_until_no_connections());
  require_healthy(h);
}

TEST_CASE("A client that shuts down its sending side after three requests gets three replies and then end of stream",
          "[hostile]")
{
  Hostile h;
  Conn conn(h.socket());
  REQUIRE(conn.send_all("{\"op\":\"ping\",\"id\":1}\n"
                        "{\"op\":\"token\",\"profile\":\"reader\",\"id\":2}\n"
                        "{\"op\":\"status\",\"id\":3}\n"));
  REQUIRE(::shutdown(conn.fd(), SHUT_WR) == 0);
  for (std::int64_t id = 1; id <= 3; ++id) {
    const auto line = conn.read_line();
    REQUIRE(line.has_value());
    CHECK(code_of(*line) == "ok");
    CHECK(int_id_of(*line) == id);
  }
  CHECK(conn.wait_eof());
  CHECK(conn.buffered() == 0);
  require_healthy(h);
}

TEST_CASE("Invalid UTF-8, binary garbage, deep nesting, huge numbers and duplicate keys are bad_request on a connection that stays open",
          "[hostile]")
{
  Hostile h;
  Conn conn(h.socket());
  std::string binary;
  for (int i = 0; i < 1000; ++i) {
    const char c = static_cast<char>((i * 37 + 11) % 256);
    binary += c == '\n' ? '\x01' : c;
  }
  const std::vector<std::pair<std::string, std::string>> cases = {
    {"invalid UTF-8 in a string", "{\"op\":\"ping\",\"x\":\"\xff\xfe\xc3\"}"},
    {"overlong UTF-8", "{\"op\":\"ping\",\"x\":\"\xc0\xaf\"}"},
    {"a NUL byte", std::string("{\"op\":\"ping\"}\0", 14)},
    {"binary garbage", binary},
    {"2000 nested arrays", "{\"op\":\"ping\",\"x\":" + std::string(2000, '[') + std::string(2000, ']') + "}"},
    {"4000 unclosed arrays", std::string(4000, '[')},
    {"4000 nested objects opened", std::string(2000, '{') + std::string(1000, '"')},
    {"a huge min_valid_s", "{\"op\":\"token\",\"profile\":\"reader\",\"min_valid_s\":99999999999999999999999}"},
    {"a min_valid_s of 1e400", "{\"op\":\"token\",\"profile\":\"reader\",\"min_valid_s\":1e400}"},
    {"a huge integer id", "{\"op\":\"ping\",\"id\":123456789012345678901234567890}"},
    {"a negative min_valid_s", "{\"op\":\"token\",\"profile\":\"reader\",\"min_valid_s\":-1}"},
    {"a duplicate op", "{\"op\":\"ping\",\"op\":\"ping\"}"},
    {"a duplicate profile", "{\"op\":\"token\",\"profile\":\"reader\",\"profile\":\"reader\"}"},
    {"a nested duplicate key", "{\"op\":\"ping\",\"x\":{\"a\":1,\"a\":2}}"},
    {"a trailing second value", "{\"op\":\"ping\"} {\"op\":\"ping\"}"},
    {"not an object", "[\"op\",\"ping\"]"},
  };
  for (const auto& [what, line] : cases) {
    INFO(what);
    REQUIRE(line.size() <= 4096);
    REQUIRE(conn.send_all(line + "\n"));
    const auto reply = conn.read_line();
    REQUIRE(reply.has_value());
    CHECK(code_of(*reply) == "bad_request");
    // The same connection still answers.
    REQUIRE(conn.send_all("{\"op\":\"ping\",\"id\":42}\n"));
    const auto pong = conn.read_line();
    REQUIRE(pong.has_value());
    CHECK(code_of(*pong) == "ok");
    CHECK(int_id_of(*pong) == 42);
  }
  REQUIRE_FALSE(conn.eof());
  require_healthy(h);
}

TEST_CASE("The socket file gets the configured mode", "[hostile][hardening]")
{
  for (const char* mode : {"0600", "0660"}) {
    DaemonOptions options;
    options.mode = mode;
    Hostile h(options);
    struct stat st{};
    REQUIRE(::stat(h.socket().c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 07777) == std::stoul(mode, nullptr, 8));
  }
}

TEST_CASE("The daemon is not dumpable, so its /proc files belong to root even when it runs as another user",
          "[hostile][hardening]")
{
  // /proc/PID/* of a process whose dumpable flag is 0 is owned by root
  // (proc(5)); a dumpable process owns them. Run the daemon as nobody so the
  // difference is visible even when the test itself runs as root.
  const bool root = ::geteuid() == 0;
  if (root && !std::filesystem::exists("/usr/bin/setpriv")) {
    WARN("setpriv not found: cannot run the daemon as another user; not checked");
    return;
  }
  const iamtok::test::ExecutableCopy daemon_copy(IAMTOKEND_BINARY);
  if (root) {
    // Its test directory is created under TMPDIR: that must be reachable too.
    const TempDir probe;
    const auto problem = iamtok::test::other_user_run_problem(daemon_copy, {{probe.path().parent_path().string(), X_OK}});
    if (!problem.empty()) {
      WARN("cannot run the daemon as another user (" << problem << "); not checked");
      return;
    }
  }
  DaemonOptions options;
  options.as_other_user = root ? &daemon_copy : nullptr;
  Hostile h(options);
  const auto proc = "/proc/" + std::to_string(h.daemon().pid());
  struct stat status{};
  REQUIRE(::stat((proc + "/status").c_str(), &status) == 0);
  // Sanity: this is the daemon running as nobody (Uid line), not setpriv.
  const auto text = iamtok::test::read_file(proc + "/status");
  if (root) {
    CHECK(text.find("\nUid:\t65534\t65534\t65534\t65534") != std::string::npos);
  }
  struct stat environ_st{};
  REQUIRE(::stat((proc + "/environ").c_str(), &environ_st) == 0);
  CHECK(environ_st.st_uid == 0);
  CHECK(status.st_uid == 0);
  require_healthy(h);
}
