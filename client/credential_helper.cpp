#include "client/credential_helper.hpp"

#include "proto/json.hpp"
#include "version.hpp"
#include "util/error.hpp"
#include "util/strings.hpp"

#include <fmt/format.h>

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>

namespace iamtok::client {
namespace {

constexpr std::string_view k_program = "docker-credential-iamtoken";
constexpr std::string_view k_icr_domain = "icr.io";
// A server URL is short; more than this on stdin is not one.
constexpr std::size_t k_max_server_url = 4096;
// store sends a JSON object with the secret; read at most this much of it.
constexpr std::size_t k_max_discard = 1U << 20U;
// Docker writes stdin at once and closes it: this bounds a caller that does not.
constexpr std::chrono::milliseconds k_stdin_timeout{15'000};
// A pull or push started now may run ten minutes on the token it was handed.
constexpr std::int64_t k_registry_min_valid_s = 600;
constexpr std::chrono::milliseconds k_request_timeout{15'000};

bool is_label(std::string_view label)
{
  if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
    return false;
  }
  return std::all_of(label.begin(), label.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
}

// What stdin held, up to `limit` bytes (more is read and dropped); nullopt on
// a read error or when it does not end within k_stdin_timeout. `overflow` tells
// whether bytes were dropped.
std::optional<std::string> read_stdin(std::size_t limit, bool& overflow)
{
  overflow = false;
  const auto deadline = std::chrono::steady_clock::now() + k_stdin_timeout;
  std::string text;
  char buffer[4096];
  std::size_t total = 0;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd entry{STDIN_FILENO, POLLIN, 0};
    const int ready = left.count() > 0 ? ::poll(&entry, 1, static_cast<int>(left.count())) : 0;
    if (ready < 0 && errno == EINTR) {
      continue;
    }
    if (ready <= 0) {
      wipe_string(text);
      return std::nullopt;
    }
    const auto got = ::read(STDIN_FILENO, buffer, sizeof(buffer));
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) {
      continue;
    }
    if (got < 0) {
      wipe_string(text);
      return std::nullopt;
    }
    if (got == 0) {
      return text;
    }
    const auto size = static_cast<std::size_t>(got);
    const auto keep = std::min(size, limit - std::min(limit, text.size()));
    text.append(buffer, keep);
    overflow = overflow || keep < size;
    std::memset(buffer, 0, sizeof(buffer));
    total += size;
    if (total > k_max_discard + limit) {
      return text; // enough: nothing more of it matters
    }
  }
}

int fail(const Failure& failure)
{
  print_failure(k_program, failure);
  return failure.exit_code;
}

int run_get(const HelperEnvironment& environment)
{
  bool overflow = false;
  auto input = read_stdin(k_max_server_url, overflow);
  if (!input) {
    return fail({k_exit_usage, "usage", "get: no server URL on stdin (read failed or stdin not closed in time)"});
  }
  if (overflow) {
    return fail({k_exit_usage, "usage", fmt::format("get: the server URL is longer than {} bytes", k_max_server_url)});
  }
  const auto server_url = trim_server_url(*input);
  if (server_url.empty()) {
    // Docker's protocol text for this case, as for "not found".
    write_stdout(fmt::format("{}\n", k_missing_server_url));
    return k_exit_helper_refused;
  }
  const auto host = registry_host(server_url);
  if (!host || !is_icr_host(*host)) {
    // Docker's protocol: this text on stdout, exit 1, means "not mine".
    write_stdout(fmt::format("{}\n", k_credentials_not_found));
    return k_exit_helper_refused;
  }
  const std::string profile = environment.registry_profile != nullptr && *environment.registry_profile != '\0'
                                ? std::string(environment.registry_profile)
                                : std::string(k_default_registry_profile);
  const std::string socket = environment.socket != nullptr && *environment.socket != '\0'
                               ? std::string(environment.socket)
                               : std::string(k_default_socket);
  auto reply = fetch_token(socket, profile, k_registry_min_valid_s, k_request_timeout);
  if (!reply) {
    auto failure = reply.error();
    failure.message = fmt::format("profile {}: {}", profile, failure.message);
    return fail(failure);
  }
  std::string output = credentials_json(server_url, reply->access_token.expose());
  reply->access_token.wipe();
  reply->raw.wipe();
  const bool written = write_stdout(output);
  wipe_string(output);
  if (!written) {
    return fail({k_exit_software, "output", fmt::format("cannot write to stdout: {}", util::errno_text(errno))});
  }
  return k_exit_ok;
}

// store and erase: nothing is kept, so both are refused (their input, which
// for store holds a secret, is read and dropped).
int run_refused(std::string_view action)
{
  bool overflow = false;
  auto input = read_stdin(0, overflow);
  if (input) {
    wipe_string(*input);
  }
  return fail({k_exit_helper_refused, std::string(action),
               "not supported: credentials come from iamtokend and nothing is stored "
               "(no `docker login` is needed for a registry handled by this helper)"});
}

} // namespace

std::string_view trim_server_url(std::string_view text)
{
  return util::trim(text);
}

std::optional<std::string> registry_host(std::string_view server_url)
{
  std::string url(trim_server_url(server_url));
  std::transform(url.begin(), url.end(), url.begin(),
                 [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
  std::string_view rest = url;
  if (rest.starts_with("https://")) {
    rest.remove_prefix(8);
  } else if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else if (rest.find("://") != std::string_view::npos) {
    return std::nullopt;
  }
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (const auto colon = rest.find(':'); colon != std::string_view::npos) {
    const auto port = parse_integer(rest.substr(colon + 1));
    if (!port || *port < 1 || *port > 65'535) {
      return std::nullopt;
    }
    rest = rest.substr(0, colon);
  }
  const bool host_chars = std::all_of(rest.begin(), rest.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
  if (rest.empty() || !host_chars) {
    return std::nullopt;
  }
  return std::string(rest);
}

bool is_icr_host(std::string_view host)
{
  if (host == k_icr_domain) {
    return true;
  }
  if (host.size() <= k_icr_domain.size() + 1 || !host.ends_with(k_icr_domain) ||
      host[host.size() - k_icr_domain.size() - 1] != '.') {
    return false;
  }
  std::string_view labels = host.substr(0, host.size() - k_icr_domain.size() - 1);
  for (;;) {
    const auto dot = labels.find('.');
    if (!is_label(labels.substr(0, dot))) {
      return false;
    }
    if (dot == std::string_view::npos) {
      return true;
    }
    labels.remove_prefix(dot + 1);
  }
}

std::string credentials_json(std::string_view server_url, std::string_view token)
{
  std::string out;
  out.reserve(server_url.size() + token.size() + 64);
  out += "{\"ServerURL\":";
  json::append_quoted(out, server_url);
  out += ",\"Username\":";
  json::append_quoted(out, k_registry_username);
  out += ",\"Secret\":";
  json::append_quoted(out, token);
  out += "}\n";
  return out;
}

std::string credential_helper_help_text()
{
  return fmt::format(
    "Usage: docker-credential-iamtoken get|list|store|erase\n"
    "       docker-credential-iamtoken --version | --help\n"
    "\n"
    "Docker credential helper for IBM Cloud Container Registry: `get` reads a server\n"
    "URL on stdin and, for icr.io and *.icr.io (private.* included), prints\n"
    "{{\"ServerURL\":...,\"Username\":\"{}\",\"Secret\":<access token>}} with a token of\n"
    "the iamtokend profile $IAMTOKEN_REGISTRY_PROFILE, else \"{}\". Other hosts:\n"
    "\"{}\", exit 1.\n"
    "`list` prints {{}}; `store` and `erase` are refused (nothing is stored).\n"
    "\n"
    "In ~/.docker/config.json: {{\"credHelpers\": {{\"icr.io\": \"iamtoken\", \"us.icr.io\": \"iamtoken\"}}}}\n"
    "Socket: $IAMTOKEN_SOCKET, else {}.\n"
    "Exit codes: 0 ok, 1 not found or refused, 64 usage, and as iamtoken-get when no\n"
    "token comes: 69 daemon not reachable, 70 other error, 75 temporarily unavailable,\n"
    "77 forbidden, 78 unknown profile. See docker-credential-iamtoken(1).\n",
    k_registry_username, k_default_registry_profile, k_credentials_not_found, k_default_socket);
}

int run_credential_helper(std::span<const char* const> args, const HelperEnvironment& environment)
{
  // A closed stdout must give an error exit, not a silent death.
  std::signal(SIGPIPE, SIG_IGN);
  if (args.size() != 1) {
    return fail({k_exit_usage, "usage", "one action: get, list, store or erase (see --help)"});
  }
  const std::string_view action = args[0];
  if (action == "get") {
    return run_get(environment);
  }
  if (action == "list") {
    return write_stdout("{}\n") ? k_exit_ok : k_exit_software;
  }
  if (action == "store" || action == "erase") {
    return run_refused(action);
  }
  if (action == "--help" || action == "-h") {
    return write_stdout(credential_helper_help_text()) ? k_exit_ok : k_exit_software;
  }
  if (action == "--version" || action == "version") {
    return write_stdout(fmt::format("{} {}\n", k_program, k_version)) ? k_exit_ok : k_exit_software;
  }
  return fail({k_exit_usage, "usage", "unknown action (use get, list, store or erase; see --help)"});
}

} // namespace iamtok::client
