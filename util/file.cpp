#include "util/file.hpp"

#include "util/error.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace iamtok::util {

tl::expected<Fd, int> open_read(const std::string& path)
{
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return tl::unexpected(errno);
  }
  return Fd(fd);
}

tl::expected<std::size_t, int> read_up_to(int fd, std::span<char> buffer)
{
  std::size_t size = 0;
  while (size < buffer.size()) {
    const ssize_t n = ::read(fd, buffer.data() + size, buffer.size() - size);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return tl::unexpected(errno);
    }
    if (n == 0) {
      break;
    }
    size += static_cast<std::size_t>(n);
  }
  return size;
}

tl::expected<std::string, FileError> read_file(const std::string& path, std::size_t max_size)
{
  struct stat info{};
  return read_file(path, max_size, info);
}

tl::expected<std::string, FileError> read_file(const std::string& path, std::size_t max_size, struct stat& info)
{
  auto fd = open_read(path);
  if (!fd) {
    return tl::unexpected(FileError{FileError::Kind::open, fd.error()});
  }
  if (::fstat(fd->get(), &info) != 0) {
    return tl::unexpected(FileError{FileError::Kind::stat, errno});
  }
  if (!S_ISREG(info.st_mode)) {
    return tl::unexpected(FileError{FileError::Kind::not_regular, 0});
  }
  std::string text;
  std::size_t size = 0;
  // Grow in steps up to max_size + 1, so a file that is too large is seen
  // without reading all of it.
  std::size_t capacity = std::min<std::size_t>(max_size + 1, 16 * 1024);
  while (true) {
    text.resize(capacity);
    auto n = read_up_to(fd->get(), std::span<char>(text.data() + size, capacity - size));
    if (!n) {
      return tl::unexpected(FileError{FileError::Kind::read, n.error()});
    }
    size += *n;
    if (size > max_size) {
      return tl::unexpected(FileError{FileError::Kind::too_large, 0});
    }
    if (size < capacity) {
      break;
    }
    capacity = std::min(capacity * 2, max_size + 1);
  }
  text.resize(size);
  return text;
}

std::string describe(const FileError& error, std::size_t max_size)
{
  switch (error.kind) {
  case FileError::Kind::open: return "cannot open: " + errno_text(error.error);
  case FileError::Kind::stat: return "cannot stat: " + errno_text(error.error);
  case FileError::Kind::not_regular: return "is not a regular file";
  case FileError::Kind::read: return "cannot read: " + errno_text(error.error);
  case FileError::Kind::too_large: return "is larger than " + std::to_string(max_size) + " bytes";
  }
  return "cannot read";
}

} // namespace iamtok::util
