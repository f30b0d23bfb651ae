#pragma once

// `iamtoken-get exec`: gets a token, then replaces itself (execvp) with a
// command that finds the token in its environment. See iamtoken-get(1),
// section EXEC.

#include "client/client.hpp"

#include <tl/expected.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace iamtok::client {

// The --min-valid of exec when none is given: a job started now may run ten
// minutes on the token it was handed (the daemon caps it at half the token's
// lifetime).
inline constexpr std::int64_t k_exec_default_min_valid_s = 600;

// Exit codes of a command that could not be started, as shells use them.
inline constexpr int k_exit_not_executable = 126;
inline constexpr int k_exit_not_found = 127;

inline constexpr std::string_view k_env_access_token = "IAM_ACCESS_TOKEN";
inline constexpr std::string_view k_env_expires_at = "IAM_TOKEN_EXPIRES_AT";

struct ExecOptions
{
  bool help = false;
  std::string profile;
  std::int64_t min_valid_s = k_exec_default_min_valid_s;
  std::vector<std::string> env_names;     // --env VAR: each gets the token
  std::vector<std::string> sdk_prefixes;  // --sdk-env SERVICE, already mapped (sdk_env_prefix)
  std::string socket_path;                // --socket, else IAMTOKEN_SOCKET, else the default
  std::chrono::milliseconds timeout{15'000};
  bool quiet = false;
  std::vector<std::string> command;       // COMMAND [ARG...], never empty unless help
};

// True if `name` can be an environment variable name a shell can use:
// [A-Za-z_][A-Za-z0-9_]*, at most 128 characters.
bool is_env_name(std::string_view name);

// The IBM SDK prefix of a service name as the SDKs derive it: upper-cased,
// '-' -> '_' ("iam-identity" -> "IAM_IDENTITY"). nullopt when the result is
// not an environment variable name (empty, other characters, a leading
// digit).
std::optional<std::string> sdk_env_prefix(std::string_view service);

// Parses the arguments after "exec" (`env_socket` is getenv("IAMTOKEN_SOCKET"),
// may be null). Options come first; "--" or the first argument that is not an
// option starts COMMAND. Returns a one-line message for a usage error.
tl::expected<ExecOptions, std::string> parse_exec_args(std::span<const char* const> args, const char* env_socket);

// The environment COMMAND gets: `inherited` (NAME=value strings) without the
// variables set here, then IAM_ACCESS_TOKEN, IAM_TOKEN_EXPIRES_AT, each
// --env name and, per SDK prefix, PREFIX_AUTH_TYPE=bearerToken and
// PREFIX_BEARER_TOKEN. Holds the token: wipe each string once unused.
std::vector<std::string> exec_environment(std::span<const char* const> inherited, const ExecOptions& options,
                                          std::string_view token, std::int64_t expires_at);

// The exit code for an execvp errno: 127 when COMMAND was not found, 126
// otherwise (not executable, permission denied, ...).
int exec_failure_exit_code(int error);

// The help text of `iamtoken-get exec`.
std::string exec_help_text();

// Carries out `options`: gets the token (on failure: one error line unless
// quiet, the request's exit code, COMMAND not run), then execs COMMAND. Returns
// only when that fails: 126 or 127, after one error line.
int run_exec(const ExecOptions& options);

} // namespace iamtok::client
