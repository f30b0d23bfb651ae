#include "daemon/upstream/file_source.hpp"

#include "daemon/upstream/replies.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <array>
#include <optional>
#include <cerrno>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace iamtok::upstream {

namespace {

constexpr std::array<std::string_view, 3> k_default_paths{
  "/var/run/secrets/tokens/vault-token",
  "/var/run/secrets/tokens/sa-token",
  "/var/run/secrets/codeengine.cloud.ibm.com/compute-resource-token/token",
};

engine::UpstreamError source_error(std::string message)
{
  engine::UpstreamError error;
  error.failure = engine::Failure::source;
  error.message = std::move(message);
  return error;
}

std::string errno_text(int error)
{
  return std::error_code(error, std::generic_category()).message();
}

bool is_trailing_space(char c) noexcept
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

} // namespace

std::span<const std::string_view> default_cr_token_paths() noexcept
{
  return k_default_paths;
}

tl::expected<Secret, engine::UpstreamError>
read_cr_token_file(const std::string& path, std::span<const std::string_view> candidates)
{
  std::string chosen = path;
  if (chosen.empty()) {
    for (const auto candidate : candidates) {
      struct stat info{};
      if (::stat(std::string(candidate).c_str(), &info) == 0) {
        chosen = candidate;
        break;
      }
    }
    if (chosen.empty()) {
      return tl::unexpected(source_error(fmt::format(
        "no CR token file: none of {} exists", fmt::join(candidates, ", "))));
    }
  }

  const int fd = ::open(chosen.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return tl::unexpected(
      source_error(fmt::format("cannot open CR token file {}: {}", chosen, errno_text(errno))));
  }
  // One buffer, never reallocated, wiped on every path out.
  std::string content(k_max_reply_size + 1, '\0');
  std::size_t size = 0;
  int read_error = 0;
  while (size < content.size()) {
    const ssize_t n = ::read(fd, content.data() + size, content.size() - size);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      read_error = errno;
      break;
    }
    if (n == 0) {
      break;
    }
    size += static_cast<std::size_t>(n);
  }
  ::close(fd);

  std::optional<std::string> problem;
  if (read_error != 0) {
    problem = fmt::format("cannot read CR token file {}: {}", chosen, errno_text(read_error));
  } else if (size > k_max_reply_size) {
    problem = fmt::format("CR token file {} is larger than 64 KiB", chosen);
  } else {
    while (size > 0 && is_trailing_space(content[size - 1])) {
      --size;
    }
    if (size == 0) {
      problem = fmt::format("CR token file {} is empty", chosen);
    }
  }
  if (problem) {
    wipe_string(content);
    return tl::unexpected(source_error(std::move(*problem)));
  }
  Secret token(std::string(content.data(), size));
  wipe_string(content);
  return token;
}

} // namespace iamtok::upstream
