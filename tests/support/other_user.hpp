#pragma once

// For tests that act as another user (uid and gid 65534, "nobody" on
// Debian): running a binary as that user needs a copy it may execute, since
// a checkout in a private directory (a 0700 home, a mktemp -d clone) is not
// traversable by it. Such a test asks other_user_problem() first and skips
// with its message when the answer is not empty: never a false failure.
// Shared by the unit and e2e tests.

#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace iamtok::test {

inline constexpr uid_t k_other_uid = 65534;
inline constexpr gid_t k_other_gid = 65534;

// In a forked child: drops every group and becomes k_other_uid/k_other_gid.
// Async-signal-safe; false if the kernel refused.
inline bool become_other_user() noexcept
{
  return ::setgroups(0, nullptr) == 0 && ::setgid(k_other_gid) == 0 && ::setuid(k_other_uid) == 0;
}

// In a forked child: becomes the other user and connects a new stream
// socket to `address`; the descriptor, else _exit(2) if it cannot become the
// user and _exit(3) if it cannot connect. Async-signal-safe.
inline int connect_as_other_user(const sockaddr* address, socklen_t length) noexcept
{
  if (!become_other_user()) {
    ::_exit(2);
  }
  const int fd = ::socket(address->sa_family, SOCK_STREAM, 0);
  if (fd < 0 || ::connect(fd, address, length) != 0) {
    ::_exit(3);
  }
  return fd;
}

// What the other user must be able to do with a path: access(2) modes.
struct Reach
{
  std::string path;
  int mode = X_OK; // R_OK, W_OK, X_OK (search, for a directory) or a mix
};

// Returns "" if this process can act as k_other_uid (it runs as root) and
// that user may access each of `paths` as asked; else why not, for a skip
// message. Tries it for real, in a child that drops to that user.
inline std::string other_user_problem(const std::vector<Reach>& paths)
{
  if (::geteuid() != 0) {
    return "not root: cannot act as another user";
  }
  const pid_t child = ::fork();
  if (child < 0) {
    return "fork failed";
  }
  if (child == 0) {
    // Only async-signal-safe calls here.
    if (!become_other_user()) {
      ::_exit(255);
    }
    for (std::size_t i = 0; i < paths.size() && i < 250; ++i) {
      if (::access(paths[i].path.c_str(), paths[i].mode) != 0) {
        ::_exit(static_cast<int>(i) + 1);
      }
    }
    ::_exit(0);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status)) {
    return "the probe for another user did not finish";
  }
  const int code = WEXITSTATUS(status);
  if (code == 0) {
    return {};
  }
  if (code == 255) {
    return "cannot switch to uid 65534";
  }
  return "uid 65534 may not reach " + paths[static_cast<std::size_t>(code) - 1].path +
         " (a directory above it is private, e.g. a 0700 home or TMPDIR)";
}

// A copy of an executable in a fresh directory under /tmp (0755, the copy
// 0755), so another user may run it wherever the build tree lives; removed
// with its directory. path() is "" if the copy could not be made (then
// problem() says why).
class ExecutableCopy
{
public:
  explicit ExecutableCopy(const std::string& binary)
  {
    std::string pattern = "/tmp/iamtok-exec-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      m_problem = std::string("cannot create a directory in /tmp: ") + std::strerror(errno);
      return;
    }
    m_dir = pattern;
    std::error_code error;
    const auto target = m_dir / std::filesystem::path(binary).filename();
    std::filesystem::copy_file(binary, target, error);
    if (error || ::chmod(m_dir.c_str(), 0755) != 0 || ::chmod(target.c_str(), 0755) != 0) {
      m_problem = "cannot copy " + binary + " to " + m_dir.string() + (error ? ": " + error.message() : "");
      return;
    }
    m_path = target.string();
  }
  ~ExecutableCopy()
  {
    if (!m_dir.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(m_dir, ignored);
    }
  }
  ExecutableCopy(const ExecutableCopy&) = delete;
  ExecutableCopy& operator=(const ExecutableCopy&) = delete;

  const std::string& path() const { return m_path; }
  const std::string& problem() const { return m_problem; }

private:
  std::filesystem::path m_dir;
  std::string m_path;
  std::string m_problem;
};

// Returns "" if k_other_uid can run `copy` and reach each of `paths`, else
// why not (see other_user_problem()).
inline std::string other_user_run_problem(const ExecutableCopy& copy, std::vector<Reach> paths = {})
{
  if (copy.path().empty()) {
    return copy.problem();
  }
  paths.insert(paths.begin(), Reach{copy.path(), X_OK});
  return other_user_problem(paths);
}

} // namespace iamtok::test
