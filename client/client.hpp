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
#include <vector>

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
  enum class Action { token, status, check, metrics, version, help };
  Action action = Action::token;
  std::string profile;               // the last --profile
  std::vector<std::string> profiles; // every --profile, in order (--check)
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

// Sends `request` (not a token request: the line is not wiped) and returns
// the daemon's ok reply line, or the failure: unreachable, timeout, an
// unreadable reply, or the daemon's error reply.
tl::expected<std::string, Failure> ok_reply_line(const Options& options, const proto::Request& request);

// Writes failure's line "iamtoken-get: <code>: <message>" to stderr (unless
// quiet; a newline in the message becomes a space). Returns its exit code.
int report(const Options& options, const Failure& failure);

// The daemon's status: its reply line as sent and what it says, or the
// failure (as ok_reply_line, or a status reply that cannot be read).
struct StatusReply
{
  std::string line;
  proto::StatusInfo status;
};
tl::expected<StatusReply, Failure> fetch_status(const Options& options);

// Writes `text` to stdout: k_exit_ok, or the report of an "output" failure.
int print_or_report(const Options& options, std::string_view text);

// --- probes and metrics (check.cpp) ---------------------------------------

// A usage problem of --check / --metrics (`action`) with the other options
// given, or nullopt (then options.action is set to `action`).
std::optional<std::string> probe_args(Options& options, Options::Action action);

// One profile that fails --check, and why.
struct CheckProblem
{
  std::string profile;
  int exit_code = k_exit_temporary; // 75 no valid token, 77 forbidden, 78 unknown
  std::string code;                 // not_ready, forbidden or unknown_profile
  std::string message;              // state and last error, or the daemon's message
};

// The named profiles of --check (`wanted`; empty: every profile in `status`)
// that hold no valid token at Unix time `now`. A named profile missing from
// the status (which lists only what the caller may use) is returned with
// exit_code 0 and code "missing": the caller asks the daemon why.
std::vector<CheckProblem> check_profiles(const proto::StatusInfo& status, const std::vector<std::string>& wanted,
                                         std::int64_t now);

// The exit code of --check for `problems`: 0 when there are none, else 78 if
// a profile is unknown, else 77 if one is forbidden, else 75.
int check_exit_code(const std::vector<CheckProblem>& problems);

// --check: one status request (plus one token request per named profile the
// status does not list, which the daemon refuses at once: unknown or
// forbidden). Returns 0, 75, 77, 78, or 69/70/75 when the daemon cannot be
// asked; writes one stderr line per failing profile.
int run_check(const Options& options);

// --metrics: prints the daemon's text exposition. Returns 0, or the exit
// code of the failure.
int run_metrics(const Options& options);

// Carries out `options`: prints to stdout on success, one error line on
// stderr (unless quiet) on failure. Returns the exit code.
int run(const Options& options);

} // namespace iamtok::client
