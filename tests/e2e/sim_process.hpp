#pragma once

// RAII helpers for end-to-end tests: a temporary directory, a child process
// (any binary, args and env; stdout and stderr captured to files; stopped
// with SIGTERM, then SIGKILL after a bounded wait) and SimProcess, which
// starts iamtoken-sim on an ephemeral port and waits until it listens.
// Header-only; every wait is bounded.

#include "tests/support/temp_dir.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace iamtok::test {


// The whole content of a file, or "" if it cannot be read.
inline std::string read_file(const std::filesystem::path& path)
{
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

struct ProcessOptions
{
  std::string binary;                                   // path to the executable
  std::vector<std::string> args;                        // without argv[0]
  std::vector<std::pair<std::string, std::string>> env; // set on top of the test's environment
  std::vector<std::string> unset_env;                   // removed from it
};

// A child process with stdout and stderr captured to files in its own
// temporary directory; stdin is /dev/null. The destructor stops it.
class Process
{
public:
  enum class Stream { out, err };

  // Starts the process; throws std::runtime_error if it cannot be spawned.
  explicit Process(ProcessOptions options)
    : m_options(std::move(options)),
      m_stdout(m_dir / "stdout"),
      m_stderr(m_dir / "stderr")
  {
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string_view entry(*e);
      const auto name = entry.substr(0, entry.find('='));
      const auto overridden = [&](std::string_view n) {
        for (const auto& [k, v] : m_options.env) {
          if (k == n) {
            return true;
          }
        }
        for (const auto& k : m_options.unset_env) {
          if (k == n) {
            return true;
          }
        }
        return false;
      };
      if (!overridden(name)) {
        env_strings.emplace_back(entry);
      }
    }
    for (const auto& [k, v] : m_options.env) {
      env_strings.push_back(k + "=" + v);
    }
    std::vector<char*> envp;
    for (auto& s : env_strings) {
      envp.push_back(s.data());
    }
    envp.push_back(nullptr);

    std::vector<std::string> argv_strings{m_options.binary};
    argv_strings.insert(argv_strings.end(), m_options.args.begin(), m_options.args.end());
    std::vector<char*> argv;
    for (auto& s : argv_strings) {
      argv.push_back(s.data());
    }
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, m_stdout.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, 2, m_stderr.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigset_t defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGHUP);
    sigaddset(&defaults, SIGPIPE);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    const int rc = posix_spawn(&m_pid, m_options.binary.c_str(), &actions, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
      throw std::runtime_error("cannot start " + m_options.binary);
    }
  }

  ~Process() { stop(); }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return m_pid; }
  const TempDir& dir() const { return m_dir; }
  std::string stdout_text() const { return read_file(m_stdout); }
  std::string stderr_text() const { return read_file(m_stderr); }

  // The exit status once the process has ended (its exit code, or 128 +
  // the signal that killed it); nullopt while it runs.
  std::optional<int> poll()
  {
    if (!m_status && m_pid > 0) {
      int status = 0;
      if (waitpid(m_pid, &status, WNOHANG) == m_pid) {
        m_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
    }
    return m_status;
  }

  bool running() { return !poll().has_value(); }

  // The exit status if the process ends within `timeout`, else nullopt.
  std::optional<int> wait(std::chrono::milliseconds timeout)
  {
    return wait_until([&] { return poll().has_value(); }, timeout) ? m_status : std::nullopt;
  }

  // Sends `sig` unless the process has already ended.
  void signal(int sig)
  {
    if (running()) {
      ::kill(m_pid, sig);
    }
  }

  // SIGTERM, then SIGKILL if it has not ended after `grace`. Returns the exit
  // status (see poll()).
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(5))
  {
    if (m_pid <= 0) {
      return -1;
    }
    signal(SIGTERM);
    if (!wait(grace)) {
      signal(SIGKILL);
      wait(std::chrono::seconds(10));
    }
    return m_status.value_or(-1);
  }

  // True once `path` exists and ends with a newline (a complete line);
  // false if the process ends without writing it or `timeout` passes first.
  bool wait_for_file(const std::filesystem::path& path, std::chrono::milliseconds timeout = std::chrono::seconds(10))
  {
    const auto complete = [&] {
      const auto text = read_file(path);
      return !text.empty() && text.back() == '\n';
    };
    return wait_until([&] { return complete() || !running(); }, timeout) && complete();
  }

  // True once the captured stream contains `needle`; false if the process
  // ends without it or `timeout` passes first.
  bool wait_for_output(std::string_view needle, Stream stream = Stream::err,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10))
  {
    const auto contains = [&] {
      return (stream == Stream::out ? stdout_text() : stderr_text()).find(needle) != std::string::npos;
    };
    return wait_until([&] { return contains() || !running(); }, timeout) && contains();
  }

private:
  template<typename Predicate>
  static bool wait_until(Predicate done, std::chrono::milliseconds timeout)
  {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) {
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  ProcessOptions m_options;
  TempDir m_dir;
  std::filesystem::path m_stdout;
  std::filesystem::path m_stderr;
  pid_t m_pid = -1;
  std::optional<int> m_status;
};

// iamtoken-sim on 127.0.0.1 and an ephemeral port, started with
// `--listen 127.0.0.1:0 --port-file <tmp>` plus `args`. The constructor
// returns once the port file is written; throws std::runtime_error if the
// simulator exits or does not listen within 10 s.
class SimProcess
{
public:
#ifdef IAMTOK_SIM_BINARY
  explicit SimProcess(std::vector<std::string> args = {}, std::string binary = IAMTOK_SIM_BINARY)
#else
  SimProcess(std::vector<std::string> args, std::string binary)
#endif
    : m_port_file(m_dir / "port"),
      m_process(make_options(std::move(args), std::move(binary), m_port_file))
  {
    if (!m_process.wait_for_file(m_port_file)) {
      throw std::runtime_error("iamtoken-sim did not start: " + m_process.stderr_text());
    }
    m_port = static_cast<std::uint16_t>(std::stoi(read_file(m_port_file)));
  }

  std::uint16_t port() const { return m_port; }
  // "http://127.0.0.1:PORT": both imds.endpoint and iam.endpoint.
  std::string url() const { return "http://127.0.0.1:" + std::to_string(m_port); }
  Process& process() { return m_process; }

private:
  static ProcessOptions make_options(std::vector<std::string> args, std::string binary,
                                     const std::filesystem::path& port_file)
  {
    ProcessOptions options;
    options.binary = std::move(binary);
    options.args = {"--listen", "127.0.0.1:0", "--port-file", port_file.string()};
    options.args.insert(options.args.end(), args.begin(), args.end());
    return options;
  }

  TempDir m_dir;
  std::filesystem::path m_port_file;
  Process m_process;
  std::uint16_t m_port = 0;
};

} // namespace iamtok::test
