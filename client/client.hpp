#pragma once

// iamtoken-get (iamtoken-get(1)): command line, one blocking request over the Unix
// socket with a poll()-based deadline, and the output formats. No threads,
// no Asio, no configuration files.

#include "proto/codec.hpp"

#include <tl/expected.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace iamtok::client {

inline constexpr std::string_view k_default_socket = "/run/iamtokend/iamtokend.sock";

// Exit codes (sysexits.h values, iamtoken-get(1)).
inline constexpr int k_exit_ok = 0;
inline constexpr int k_exit_usage = 64;       // EX_USAGE
inline constexpr int k_exit_unreachable = 69; // EX_UNAVAILABLE: socket missing, refused, no permission
inline constexpr int k_exit_software = 70;    // EX_SOFTWARE: any other error
inline constexpr int k_exit_temporary = 75;   // EX_TEMPFAIL: unavailable, busy, timeout
inline constexpr int k_exit_forbidden = 77;   // EX_NOPERM
inline constexpr int k_exit_unknown_profile = 78; // EX_CONFIG

enum class Format { raw, json, header, env };

struct Options
{
  enum class Action { token, status, version, help };
  Action action = Action::token;
  std::string profile;
  Format format = Format::raw;
  bool format_given = false;
  std::optional<std::int64_t> min_valid_s;   // 0..1800
  std::string socket_path;                   // --socket, else IAMTOKEN_SOCKET, else the default
  std::chrono::milliseconds timeout{15'000}; // --timeout (seconds, fractions allowed)
  bool quiet = false;
};

// Parses the arguments after argv[0]; `env_socket` is getenv("IAMTOKEN_SOCKET")
// (may be null). Returns a one-line message for a usage error.
tl::expected<Options, std::string> parse_args(std::span<const char* const> args, const char* env_socket);

// The --help text.
std::string help_text();

// Why a request failed: the exit code, the code shown on stderr and a message.
struct Failure
{
  int exit_code = k_exit_software;
  std::string code;
  std::string message;
};

// The exit code for an error code sent by the daemon (unknown codes: 70).
int exit_code_for(std::string_view error_code);

// Connects to `socket_path`, sends `request` (one line with its '\n') and
// returns the first reply line without its '\n'. Fails with 69 when the
// socket cannot be reached, 75 when `timeout` passes first, 70 when the
// daemon closes early or sends more than 1 MiB without a line end. The
// returned line may hold a token: wipe it once used.
tl::expected<std::string, Failure> request_line(const std::string& socket_path, std::string_view request,
                                                std::chrono::milliseconds timeout);

// The Failure for an error reply (`reply.ok` false): its code, message and,
// when present, retry_after_s and the upstream failure.
Failure failure_of(const proto::Reply& reply);

// What a token reply prints in `format` (holds the token: wipe it once written).
std::string token_output(const proto::Reply& reply, Format format);

// The human status table: a daemon line, one row per profile, the counters.
// `now` is the current Unix time, for "expires in" and "refresh in".
std::string status_table(const proto::StatusInfo& status, std::int64_t now);

// An integer in decimal with nothing around it; nullopt otherwise.
std::optional<std::int64_t> parse_integer(std::string_view text);

// A positive number of seconds, at most a day, with up to three decimals
// ("15", "0.5"); nullopt otherwise.
std::optional<std::chrono::milliseconds> parse_seconds(std::string_view text);

// Writes all of `text` to stdout. False if stdout is closed or broken.
bool write_stdout(std::string_view text);

// Writes "<program>: <code>: <message>" as one line to stderr (line ends in
// the message become spaces).
void print_failure(std::string_view program, const Failure& failure);

// One token request: the token reply, or the Failure (exit code, code and
// message) when the daemon cannot be reached, answers an error or answers
// something that is not a token reply. The reply holds the token.
tl::expected<proto::Reply, Failure> fetch_token(const std::string& socket_path, const std::string& profile,
                                                std::optional<std::int64_t> min_valid_s,
                                                std::chrono::milliseconds timeout);

// Carries out `options`: prints to stdout on success, one error line on
// stderr (unless quiet) on failure. Returns the exit code.
int run(const Options& options);

} // namespace iamtok::client
