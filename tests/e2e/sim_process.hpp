#pragma once

// RAII helpers for end-to-end tests: a temporary directory, a child process
// (any binary, args and env; stdout and stderr captured to files; stopped
// with SIGTERM, then SIGKILL after a bounded wait) and SimProcess, which
// starts iamtoken-sim on an ephemeral port and waits until it listens.
// Header-only; every wait is bounded.

#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
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

// How long a child may take to start (listen, write its port file or
// socket) and to exit after SIGTERM. No product timeout bounds either: they
// are process start-up, sanitizer set-up and leak checking at exit on a
// machine that may be loaded, so the bounds are generous. They cost nothing
// when things are well: every wait ends as soon as its condition holds.
// (iamtokend's own graceful stop gives in-flight replies at most 4 s.)
inline constexpr std::chrono::milliseconds k_start_limit = std::chrono::seconds(30);
inline constexpr std::chrono::milliseconds k_stop_limit = std::chrono::seconds(20);
// How long a running process may take to react to a local event that waits
// on no upstream (a signal, a request it answers from memory, a line in its
// log): scheduling on a loaded machine only, so just as generous.
inline constexpr std::chrono::milliseconds k_react_limit = std::chrono::seconds(20);

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
  int stdout_fd = -1; // the child's stdout instead of the capture file, if set
  int stderr_fd = -1; // the same for stderr
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
    std::vector<std::string_view> replaced(m_options.unset_env.begin(), m_options.unset_env.end());
    std::vector<std::string> added;
    for (const auto& [k, v] : m_options.env) {
      replaced.push_back(k);
      added.push_back(k + "=" + v);
    }
    CStrings envp(environment_without(replaced, added));
    CStrings argv(command_line(m_options.binary, m_options.args));

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    if (m_options.stdout_fd >= 0) {
      posix_spawn_file_actions_adddup2(&actions, m_options.stdout_fd, 1);
    } else {
      posix_spawn_file_actions_addopen(&actions, 1, m_stdout.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    }
    if (m_options.stderr_fd >= 0) {
      posix_spawn_file_actions_adddup2(&actions, m_options.stderr_fd, 2);
    } else {
      posix_spawn_file_actions_addopen(&actions, 2, m_stderr.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    }
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
  int stop(std::chrono::milliseconds grace = k_stop_limit)
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
  bool wait_for_file(const std::filesystem::path& path, std::chrono::milliseconds timeout = k_start_limit)
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
                       std::chrono::milliseconds timeout = k_react_limit)
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
    return eventually(done, timeout, std::chrono::milliseconds(5));
  }

  ProcessOptions m_options;
  TempDir m_dir;
  std::filesystem::path m_stdout;
  std::filesystem::path m_stderr;
  pid_t m_pid = -1;
  std::optional<int> m_status;
};

// A pipe whose buffer is full, to hold a child at a known point: given the
// write end as its stdout or stderr, the child blocks in its next write
// there until release() makes room. (A write of up to a page is all or
// nothing: it waits for room for all of it.)
class FullPipe
{
public:
  // Throws std::runtime_error if the pipe cannot be made.
  FullPipe()
  {
    if (::pipe2(m_fds, O_CLOEXEC) != 0) {
      throw std::runtime_error("pipe2 failed");
    }
    ::fcntl(m_fds[1], F_SETPIPE_SZ, 4096); // a page: less to fill and to release
    ::fcntl(m_fds[0], F_SETFL, O_NONBLOCK);
    ::fcntl(m_fds[1], F_SETFL, O_NONBLOCK);
    const std::string filler(4096, '.');
    while (::write(m_fds[1], filler.data(), filler.size()) > 0) {
    }
    while (::write(m_fds[1], filler.data(), 1) > 0) {
    }
    ::fcntl(m_fds[1], F_SETFL, 0); // the child's writes must block, not fail
  }
  ~FullPipe()
  {
    close_write_end();
    ::close(m_fds[0]);
  }
  FullPipe(const FullPipe&) = delete;
  FullPipe& operator=(const FullPipe&) = delete;

  int write_end() const { return m_fds[1]; }
  // Once the child has it: our copy would keep the pipe open after it exits.
  void close_write_end()
  {
    if (m_fds[1] >= 0) {
      ::close(m_fds[1]);
      m_fds[1] = -1;
    }
  }
  // Reads up to `bytes` of what is in the pipe (filler or the child's
  // output), making that much room; returns what it read.
  std::string release(std::size_t bytes)
  {
    std::string out(bytes, '\0');
    const auto n = ::read(m_fds[0], out.data(), bytes);
    out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    return out;
  }

private:
  int m_fds[2] = {-1, -1};
};

// True if process `pid` is inside system call `number` now (blocked in it),
// with `first_argument` if given; nullopt if /proc/PID/syscall cannot be
// read (a kernel without it).
inline std::optional<bool> blocked_in_syscall(pid_t pid, long number, std::optional<long> first_argument = std::nullopt)
{
  // Its first field is the number of the system call the process is in,
  // then the call's arguments, in hex.
  std::ifstream in("/proc/" + std::to_string(pid) + "/syscall");
  std::string line;
  if (!std::getline(in, line)) {
    return std::nullopt;
  }
  std::ostringstream prefix;
  prefix << number << ' ';
  if (first_argument) {
    prefix << "0x" << std::hex << *first_argument << ' ';
  }
  return line.starts_with(prefix.str());
}

// iamtoken-sim on 127.0.0.1 and an ephemeral port, started with
// `--listen 127.0.0.1:0 --port-file <tmp>` plus `args`. The constructor
// returns once the port file is written; throws std::runtime_error if the
// simulator exits or does not listen within k_start_limit.
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
