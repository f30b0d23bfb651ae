#pragma once

// End-to-end fixture for iamtokend: an iamtoken-sim on loopback, a generated
// configuration in a temporary directory, and the real iamtokend started on
// it. Helpers send protocol lines over the socket, run iamtoken-get (also as
// another user) and talk to the simulator's control endpoints. Every wait is
// bounded. Needs IAMTOK_SIM_BINARY, IAMTOKEND_BINARY and IAMTOKEN_GET_BINARY.

#include "proto/codec.hpp"
#include "tests/e2e/sim_process.hpp"
#include "tests/support/other_user.hpp"

#include <curl/curl.h>
#include <fmt/format.h>

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace iamtok::test {

inline constexpr std::string_view k_reader_id = "Profile-00000000-0000-4000-8000-000000000001";
inline constexpr std::string_view k_deployer_id = "Profile-00000000-0000-4000-8000-000000000002";

// reader by profile_id, deployer by profile_name (the simulator's demo profiles).
inline std::string default_profiles()
{
  return fmt::format(R"([{{"name":"reader","profile_id":"{}"}},{{"name":"deployer","profile_name":"deployer"}}])",
                     k_reader_id);
}

struct DaemonConfig
{
  std::string profiles = default_profiles(); // the JSON array
  double at_fraction = 0.8;
  int timeout_s = 10;
  int min_valid_s = 60;
  std::string socket_mode = "0600";
  std::string upstream_url; // IMDS and IAM endpoint; empty: the fixture's simulator
  std::string exchange;     // "iam" or "imds"; empty: the default (imds)
  // The "http" section's JSON object, e.g. {"listen":["127.0.0.1:0"]}; empty:
  // no HTTP endpoint. Port 0 binds an ephemeral port (see http_port()).
  std::string http;

  // The longest one refresh attempt may take: a CR token and an exchange,
  // each bounded by refresh.timeout_s, plus k_react_limit.
  std::chrono::milliseconds attempt_limit() const { return 2 * std::chrono::seconds(timeout_s) + k_react_limit; }
};

// Polls `done` every 20 ms until it returns true or `timeout` passes.
template<typename Predicate>
bool eventually(Predicate done, std::chrono::milliseconds timeout)
{
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

struct ClientResult
{
  int exit_code = -1;
  std::string out; // may hold a token: never print it
  std::string err;
};

struct HttpResult
{
  long status = 0;
  std::string body;
};

// One HTTP request with libcurl (GET, POST with a JSON body, DELETE); status 0 on failure.
inline HttpResult http(const std::string& method, const std::string& url, const std::string& body = {})
{
  HttpResult result;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    return result;
  }
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
  if (method == "POST") {
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t count, void* out) {
    static_cast<std::string*>(out)->append(data, size * count);
    return size * count;
  });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &result.body);
  if (curl_easy_perform(curl) == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result.status);
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return result;
}

// Connects to a Unix socket; -1 on failure.
inline int connect_unix(const std::string& path)
{
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0) {
    return fd;
  }
  if (fd >= 0) {
    ::close(fd);
  }
  return -1;
}

// Reads one line (without '\n') from `fd` within `timeout`; nullopt on EOF,
// error or timeout.
inline std::optional<std::string> read_line(int fd, std::chrono::milliseconds timeout = std::chrono::seconds(10))
{
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string line;
  char c = 0;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd entry{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&entry, 1, static_cast<int>(left.count())) <= 0) {
      return std::nullopt;
    }
    if (::read(fd, &c, 1) != 1) {
      return std::nullopt;
    }
    if (c == '\n') {
      return line;
    }
    line += c;
  }
}

inline bool write_all(int fd, std::string_view text)
{
  while (!text.empty()) {
    const auto n = ::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      return false;
    }
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Runs `binary args...` to completion, as `as_uid` (and its gid, no
// supplementary groups) when set; `env` entries are added to the
// environment. Captures stdout and stderr. A run that has not ended after
// iamtoken-get's default --timeout (15 s) plus k_start_limit is killed
// (exit_code -1).
inline ClientResult run_program(const std::string& binary, const std::vector<std::string>& args,
                                std::optional<uid_t> as_uid = std::nullopt,
                                const std::vector<std::string>& env = {})
{
  TempDir dir;
  const auto out_path = (dir / "out").string();
  const auto err_path = (dir / "err").string();
  std::vector<std::string> argv_strings{binary};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings) {
    argv.push_back(s.data());
  }
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).starts_with("IAMTOKEN_SOCKET=")) {
      continue;
    }
    env_strings.emplace_back(*e);
  }
  env_strings.insert(env_strings.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (auto& s : env_strings) {
    envp.push_back(s.data());
  }
  envp.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) {
    throw std::runtime_error("fork failed");
  }
  if (pid == 0) {
    const int in = ::open("/dev/null", O_RDONLY);
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || out < 0 || err < 0 || ::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) {
      ::_exit(125);
    }
    if (as_uid) {
      const gid_t gid = *as_uid;
      if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(*as_uid) != 0) {
        ::_exit(126);
      }
    }
    ::execve(binary.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  ClientResult result;
  int status = 0;
  const bool ended = eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; },
                                std::chrono::seconds(15) + k_start_limit);
  if (!ended) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  result.exit_code = ended && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.out = read_file(out_path);
  result.err = read_file(err_path);
  return result;
}

class DaemonFixture
{
public:
  // Starts the simulator with `sim_args` (no daemon yet).
  explicit DaemonFixture(std::vector<std::string> sim_args = {})
    : m_sim(std::move(sim_args), IAMTOK_SIM_BINARY)
  {
    // Other users (the forbidden test) must be able to reach the socket.
    std::filesystem::permissions(m_dir.path(), std::filesystem::perms(0755));
  }

  SimProcess& sim() { return m_sim; }
  Process& daemon() { return *m_daemon; }
  std::string socket_path() const { return (m_dir / "iamtokend.sock").string(); }
  std::string config_path() const { return (m_dir / "config.json").string(); }
  const TempDir& dir() const { return m_dir; }

  std::string config_json(const DaemonConfig& config) const
  {
    return fmt::format(R"({{"socket":{{"path":"{}","mode":"{}"}},)"
                       R"("source":{{"type":"imds","imds":{{"endpoint":"{}"}}}},)"
                       R"({}{}"iam":{{"endpoint":"{}"}},)"
                       R"("refresh":{{"at_fraction":{},"timeout_s":{},"min_valid_s":{}}},)"
                       R"("profiles":{}}})",
                       socket_path(), config.socket_mode, upstream(config),
                       config.exchange.empty() ? std::string() : fmt::format(R"("exchange":"{}",)", config.exchange),
                       config.http.empty() ? std::string() : fmt::format(R"("http":{},)", config.http),
                       upstream(config), config.at_fraction,
                       config.timeout_s, config.min_valid_s, config.profiles);
  }

  std::string upstream(const DaemonConfig& config) const
  {
    return config.upstream_url.empty() ? m_sim.url() : config.upstream_url;
  }

  void write_config(const DaemonConfig& config) { write_text(config_json(config)); }

  void write_text(const std::string& text)
  {
    const auto temporary = config_path() + ".new";
    std::ofstream(temporary) << text;
    std::filesystem::rename(temporary, config_path());
  }

  // Writes `config` and starts iamtokend on it; returns once the socket
  // exists (throws if it does not within k_start_limit).
  void start(const DaemonConfig& config = {})
  {
    m_config = config;
    write_config(config);
    launch();
  }

  // Starts iamtokend on the config file as it is (see write_text); returns
  // once the socket exists (throws if it does not within k_start_limit).
  void launch()
  {
    m_daemon.emplace(daemon_options());
    if (!eventually([&] { return std::filesystem::exists(socket_path()) || !m_daemon->running(); },
                    k_start_limit) ||
        !m_daemon->running()) {
      throw std::runtime_error("iamtokend did not start: " + m_daemon->stderr_text());
    }
  }

  // iamtokend on config_path(), outside systemd (`notify_socket`: the
  // NOTIFY_SOCKET it gets, none if empty).
  ProcessOptions daemon_options(const std::string& notify_socket = {}) const
  {
    ProcessOptions options;
    options.binary = IAMTOKEND_BINARY;
    options.args = {"--config", config_path(), "--log-level", "debug"};
    options.unset_env = {"JOURNAL_STREAM", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "WATCHDOG_USEC",
                         "IAMTOKEND_CONFIG"};
    if (!notify_socket.empty()) {
      options.env = {{"NOTIFY_SOCKET", notify_socket}};
    }
    return options;
  }

  // Sends one request line and returns the reply line ("" on failure); a
  // token request waits at most refresh.timeout_s in the daemon.
  std::string request(std::string_view line) const
  {
    const int fd = connect_unix(socket_path());
    if (fd < 0) {
      return {};
    }
    std::string text(line);
    text += '\n';
    std::string reply;
    if (write_all(fd, text)) {
      reply = read_line(fd, m_config.attempt_limit()).value_or("");
    }
    ::close(fd);
    return reply;
  }

  // A token request for `profile` over the socket, parsed (an empty Reply
  // if the line is not a reply).
  proto::Reply token(const std::string& profile, std::optional<std::int64_t> min_valid_s = std::nullopt) const
  {
    proto::Request request_object;
    request_object.op = proto::Op::token;
    request_object.profile = profile;
    request_object.min_valid_s = min_valid_s;
    auto line = request(proto::format_request(request_object));
    auto reply = proto::parse_reply(line);
    return reply ? std::move(*reply) : proto::Reply{};
  }

  std::optional<proto::StatusInfo> status() const
  {
    const auto reply = proto::parse_status_reply(request(R"({"op":"status"})"));
    return reply ? std::optional<proto::StatusInfo>(*reply) : std::nullopt;
  }

  // `profile` in the status reply; nullopt if absent or no reply.
  std::optional<proto::ProfileInfo> profile_status(const std::string& profile) const
  {
    if (const auto info = status()) {
      for (const auto& p : info->profiles) {
        if (p.name == profile) {
          return p;
        }
      }
    }
    return std::nullopt;
  }

  // The state of `profile` in the status reply ("" if absent).
  std::string state_of(const std::string& profile) const
  {
    const auto info = profile_status(profile);
    return info ? info->state : std::string();
  }

  // After the upstream has healed: true once `profile` is fresh, within the
  // bound the engine's own schedule gives. An attempt in flight may still
  // have met the fault; it ends within config.attempt_limit(). The first
  // next attempt status shows (refresh_at) starts after the healing, so it
  // and its calls must succeed: it is waited for until refresh_at plus
  // attempt_limit(). False if the profile is not fresh by then.
  bool fresh_by_schedule(const std::string& profile, const DaemonConfig& config) const
  {
    using Clock = std::chrono::steady_clock;
    auto deadline = Clock::now() + config.attempt_limit();
    bool scheduled = false;
    while (Clock::now() < deadline) {
      const auto info = profile_status(profile);
      // (refreshing: a valid token from a successful attempt, and the next one out)
      if (info && (info->state == "fresh" || info->state == "refreshing")) {
        return true;
      }
      if (info && info->refresh_at && !scheduled) {
        scheduled = true;
        // Whole seconds: the attempt is due before refresh_at + 1.
        const auto due = std::chrono::seconds(*info->refresh_at + 1 - static_cast<std::int64_t>(std::time(nullptr)));
        deadline = std::max(deadline, Clock::now() + std::max<std::chrono::seconds>(due, std::chrono::seconds(0)) +
                                        config.attempt_limit());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  // iamtoken-get with `--socket <ours>` and `args`.
  ClientResult get(std::vector<std::string> args) const
  {
    args.insert(args.begin(), {"--socket", socket_path()});
    return run_program(IAMTOKEN_GET_BINARY, args);
  }

  // The same as user `uid`, running `binary` (an ExecutableCopy of
  // iamtoken-get that user may execute).
  ClientResult get_as(uid_t uid, const std::string& binary, std::vector<std::string> args) const
  {
    args.insert(args.begin(), {"--socket", socket_path()});
    return run_program(binary, args, uid);
  }

  // The port of the daemon's first HTTP listen address, as its log names it
  // ("http endpoint listening on 127.0.0.1:PORT"); throws if the line does
  // not appear within k_start_limit.
  std::uint16_t http_port() const
  {
    constexpr std::string_view k_line = "http endpoint listening on 127.0.0.1:";
    std::string text;
    if (!eventually([&] {
          text = m_daemon->stderr_text();
          return text.find(k_line) != std::string::npos;
        },
        k_start_limit)) {
      throw std::runtime_error("iamtokend did not log its HTTP port: " + text);
    }
    return static_cast<std::uint16_t>(std::strtoul(text.c_str() + text.find(k_line) + k_line.size(), nullptr, 10));
  }

  HttpResult sim_fault(const std::string& json) { return http("POST", m_sim.url() + "/sim/faults", json); }
  HttpResult sim_clear_faults() { return http("DELETE", m_sim.url() + "/sim/faults"); }
  std::string sim_stats() { return http("GET", m_sim.url() + "/sim/stats").body; }

private:
  TempDir m_dir;
  SimProcess m_sim;
  DaemonConfig m_config; // the last one start() used
  std::optional<Process> m_daemon;
};

// The number after "\"key\":" in a flat JSON text such as /sim/stats; -1 if absent.
inline long json_count(const std::string& json, std::string_view key)
{
  const auto needle = fmt::format("\"{}\":", key);
  const auto at = json.find(needle);
  if (at == std::string::npos) {
    return -1;
  }
  return std::strtol(json.c_str() + at + needle.size(), nullptr, 10);
}

} // namespace iamtok::test
