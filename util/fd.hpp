#pragma once

// An owned file descriptor, closed when the owner goes away.

#include <unistd.h>

#include <utility>

namespace iamtok::util {

class Fd
{
public:
  Fd() = default;
  // Takes ownership of `fd` (-1: owns nothing).
  explicit Fd(int fd) noexcept : m_fd(fd) {}
  Fd(Fd&& other) noexcept : m_fd(other.release()) {}
  Fd& operator=(Fd&& other) noexcept
  {
    reset(other.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  // The descriptor, or -1 when none is owned.
  int get() const noexcept { return m_fd; }
  explicit operator bool() const noexcept { return m_fd >= 0; }

  // Gives the descriptor up without closing it; returns it (-1 if none).
  int release() noexcept { return std::exchange(m_fd, -1); }

  // Closes the owned descriptor (if any) and takes `fd` instead.
  void reset(int fd = -1) noexcept
  {
    if (m_fd >= 0) {
      ::close(m_fd);
    }
    m_fd = fd;
  }

private:
  int m_fd = -1;
};

} // namespace iamtok::util
