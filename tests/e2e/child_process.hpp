#pragma once

// A child process for the exec and credential-helper tests: its pid is known
// before it runs anything, stdin comes from a given text, stdout and stderr
// go to files, and the raw wait status is kept (an exit code or the signal
// that ended it). Every fd above 2 is closed in the child, so any other fd
// the program under test has open is its own.

#include "tests/e2e/sim_process.hpp"
#include "tests/support/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace iamtok::test {

struct ChildOptions
{
  std::string binary;
  std::vector<std::string> args;
  std::vector<std::string> env;   // NAME=value entries added to the test's environment
  std::string stdin_text;         // what the child reads on stdin (then EOF)
};

class Child
{
public:
  explicit Child(const ChildOptions& options)
  {
    const auto in_path = (m_dir / "in").string();
    {
      std::ofstream(in_path, std::ios::binary) << options.stdin_text;
    }
    CStrings argv(command_line(options.binary, options.args));
    // The test's environment without the variables the programs read, then `env`.
    CStrings envp(environment_without({"IAMTOKEN_SOCKET", "IAMTOKEN_REGISTRY_PROFILE"}, options.env));
    const auto out_path = out_file();
    const auto err_path = err_file();

    m_pid = ::fork();
    if (m_pid < 0) {
      throw std::runtime_error("fork failed");
    }
    if (m_pid == 0) {
      const int in = ::open(in_path.c_str(), O_RDONLY);
      const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (in < 0 || out < 0 || err < 0 || ::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) {
        ::_exit(125);
      }
      for (int fd = 3; fd < 1024; ++fd) {
        ::close(fd);
      }
      // Default dispositions and an empty mask, whatever the test runner set.
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      for (const int signal_number : {SIGPIPE, SIGTERM, SIGINT, SIGHUP}) {
        ::signal(signal_number, SIG_DFL);
      }
      ::execve(argv.data()[0], argv.data(), envp.data());
      ::_exit(124);
    }
  }
  ~Child()
  {
    if (!m_status) {
      ::kill(m_pid, SIGKILL);
      int status = 0;
      ::waitpid(m_pid, &status, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return m_pid; }

  // Waits for the child to end (at most `timeout`, then kills it); returns
  // its wait status, nullopt if it had to be killed.
  std::optional<int> wait(std::chrono::milliseconds timeout = std::chrono::seconds(20))
  {
    if (m_status) {
      return m_status;
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (::waitpid(m_pid, &status, WNOHANG) != m_pid) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(m_pid, SIGKILL);
        ::waitpid(m_pid, &status, 0);
        m_status = status;
        return std::nullopt;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    m_status = status;
    return m_status;
  }

  // The exit code once ended normally; -1 if killed by a signal or by wait().
  int exit_code()
  {
    const auto status = wait();
    return status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
  }

  std::string out() const { return read_file(out_file()); }
  std::string err() const { return read_file(err_file()); }

private:
  std::string out_file() const { return (m_dir / "out").string(); }
  std::string err_file() const { return (m_dir / "err").string(); }

  TempDir m_dir;
  pid_t m_pid = -1;
  std::optional<int> m_status;
};

// True if `text` contains `token` or the start of a JWT.
inline bool leaks_token(const std::string& text, const std::string& token)
{
  return (!token.empty() && text.find(token) != std::string::npos) || text.find("eyJ") != std::string::npos;
}

} // namespace iamtok::test
