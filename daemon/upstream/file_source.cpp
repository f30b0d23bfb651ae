#include "daemon/upstream/file_source.hpp"

#include "daemon/upstream/replies.hpp"
#include "util/error.hpp"
#include "util/file.hpp"
#include "util/strings.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <array>
#include <optional>
#include <vector>

#include <sys/stat.h>

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

} // namespace

std::span<const std::string_view> default_cr_token_paths() noexcept
{
  return k_default_paths;
}

namespace {

// The token in `path`, or a message saying why it cannot be used.
tl::expected<Secret, std::string> read_one(const std::string& path)
{
  auto file = util::open_read(path);
  if (!file) {
    return tl::unexpected(fmt::format("cannot open CR token file {}: {}", path, util::errno_text(file.error())));
  }
  // One buffer, never reallocated, wiped on every path out.
  std::string content(k_max_reply_size + 1, '\0');
  const auto read = util::read_up_to(file->get(), content);
  const std::size_t size_read = read ? *read : 0;
  const std::size_t size = util::trim_right(std::string_view(content.data(), size_read)).size();

  std::optional<std::string> problem;
  if (!read) {
    problem = fmt::format("cannot read CR token file {}: {}", path, util::errno_text(read.error()));
  } else if (size_read > k_max_reply_size) {
    problem = fmt::format("CR token file {} is larger than 64 KiB", path);
  } else if (size == 0) {
    problem = fmt::format("CR token file {} is empty", path);
  }
  if (problem) {
    wipe_string(content);
    return tl::unexpected(std::move(*problem));
  }
  Secret token(std::string(content.data(), size));
  wipe_string(content);
  return token;
}

} // namespace

tl::expected<Secret, engine::UpstreamError>
read_cr_token_file(const std::string& path, std::span<const std::string_view> candidates)
{
  if (!path.empty()) {
    auto token = read_one(path);
    if (!token) {
      return tl::unexpected(source_error(std::move(token.error())));
    }
    return std::move(*token);
  }
  // The first candidate that can be read and holds a token wins: an
  // unreadable or empty one must not hide a good one further down.
  std::vector<std::string> problems;
  for (const auto candidate : candidates) {
    const std::string name(candidate);
    struct stat info{};
    if (::stat(name.c_str(), &info) != 0) {
      continue; // absent: not worth a word unless none is usable
    }
    auto token = read_one(name);
    if (token) {
      return std::move(*token);
    }
    problems.push_back(std::move(token.error()));
  }
  if (problems.empty()) {
    return tl::unexpected(
      source_error(fmt::format("no CR token file: none of {} exists", fmt::join(candidates, ", "))));
  }
  return tl::unexpected(source_error(fmt::format("no usable CR token file: {}", fmt::join(problems, "; "))));
}

} // namespace iamtok::upstream
