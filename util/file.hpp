#pragma once

// Reading files without surprises: no controlling terminal, close-on-exec,
// EINTR retried, sizes bounded.

#include "util/fd.hpp"

#include <tl/expected.hpp>

#include <sys/stat.h>

#include <cstddef>
#include <span>
#include <string>

namespace iamtok::util {

// `path` opened read-only (O_CLOEXEC | O_NOCTTY), or the errno of the failure.
tl::expected<Fd, int> open_read(const std::string& path);

// Reads from `fd` until end of file or until `buffer` is full, whichever
// comes first. Returns the number of bytes read, or the errno of a read
// that failed (EINTR is retried). A full buffer does not tell whether more
// was left: pass one byte more than the largest size you accept.
tl::expected<std::size_t, int> read_up_to(int fd, std::span<char> buffer);

struct FileError
{
  enum class Kind { open, stat, not_regular, read, too_large };
  Kind kind = Kind::open;
  int error = 0; // errno for open, stat and read
};

// The whole content of the regular file at `path`, at most `max_size` bytes.
// Otherwise the step that failed, with its errno where there is one.
tl::expected<std::string, FileError> read_file(const std::string& path, std::size_t max_size);
// The same, and `info` holds the opened file's fstat() (owner, mode) once it
// got that far.
tl::expected<std::string, FileError> read_file(const std::string& path, std::size_t max_size, struct stat& info);

// A one-line description of `error` for a message about a file ("cannot
// open: Permission denied", "is larger than 1048576 bytes", ...).
std::string describe(const FileError& error, std::size_t max_size);

} // namespace iamtok::util
