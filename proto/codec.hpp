#pragma once

// The socket protocol (docs/protocol.md): request and reply types, the request parser
// the daemon uses, the reply builders, and the reply parsers iamtoken-get (and
// the tests) use. Pure: no Asio, no I/O. Every builder returns one complete
// line ending in '\n'; every string in it goes through json::append_quoted.

#include "proto/secret.hpp"

#include <tl/expected.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace iamtok::proto {

// Longest request line, not counting its '\n' (docs/protocol.md).
inline constexpr std::size_t k_max_line_bytes = 4096;
// Largest min_valid_s a request may ask for.
inline constexpr std::int64_t k_max_min_valid_s = 1800;

enum class ErrorCode { bad_request, request_too_large, unknown_profile, forbidden, busy, unavailable, internal };

// The wire name of `code` ("bad_request", ...).
std::string_view to_string(ErrorCode code) noexcept;
// The code with wire name `name`, or nullopt for a name this build does not know.
std::optional<ErrorCode> parse_error_code(std::string_view name) noexcept;

enum class Op { token, status, ping, watch, metrics };

// The wire name of `op` ("token", ...).
std::string_view to_string(Op op) noexcept;
// The op with wire name `name`, or nullopt for an unknown op.
std::optional<Op> parse_op(std::string_view name) noexcept;

// A request's "id": absent (monostate), an integer or a string. Replies echo it.
using RequestId = std::variant<std::monostate, std::int64_t, std::string>;

struct Request
{
  Op op = Op::ping;
  RequestId id;
  std::string profile;                     // token and watch only (never empty there)
  std::optional<std::int64_t> min_valid_s; // token and watch only; 0..1800 when set
  friend bool operator==(const Request&, const Request&) = default;
};

struct RequestError
{
  ErrorCode code = ErrorCode::bad_request;
  std::string message; // one line: which field is wrong and why; never echoes input
  RequestId id;        // the request's id when it could be read, for the error reply
};

// Parses one request line (without its '\n'; a trailing '\r' is tolerated).
// Returns the request, or a bad_request error when the line is not exactly
// one JSON object (syntax error, trailing value, invalid UTF-8, duplicate key,
// too deep), `op` is missing or unknown, `id` is neither a string nor a
// 64-bit integer, `profile` is missing/empty/not a string for token and watch,
// or `min_valid_s` is not an integer in 0..1800. Unknown keys are ignored;
// fields that do not apply to the op are not checked. Never throws.
tl::expected<Request, RequestError> parse_request(std::string_view line);

// The request line for `request` (for iamtoken-get and tests): op, then id,
// profile and min_valid_s when they apply and are set.
std::string format_request(const Request& request);

// The last upstream failure, as carried by an `unavailable` error. On output
// each member is omitted when empty/0, the whole object when all are.
struct UpstreamInfo
{
  int status = 0;         // HTTP status, 0 when there was no HTTP reply
  std::string code;       // IAM errorCode or IMDS code, as sent
  std::string request_id; // upstream request id, for support cases
  bool empty() const noexcept { return status == 0 && code.empty() && request_id.empty(); }
  friend bool operator==(const UpstreamInfo&, const UpstreamInfo&) = default;
};

struct ErrorInfo
{
  ErrorCode code = ErrorCode::internal;
  std::string message;                       // never holds a token
  std::optional<std::int64_t> retry_after_s; // unavailable, busy
  UpstreamInfo upstream;                     // unavailable
};

// A profile's last upstream failure in a status reply. On output status,
// code and request_id are omitted when 0/empty; message is always present.
struct LastError
{
  int status = 0;
  std::string code;
  std::string request_id;
  std::string message;
  friend bool operator==(const LastError&, const LastError&) = default;
};

struct SourceInfo
{
  std::string type;                       // imds | file
  std::string state;                      // pending | ok | failed
  std::optional<std::int64_t> expires_at; // the cached CR token's, Unix seconds; null if none
  friend bool operator==(const SourceInfo&, const SourceInfo&) = default;
};

struct ProfileInfo
{
  std::string name;
  std::string state;                      // pending | fresh | refreshing | stale | failed
  std::optional<std::int64_t> expires_at; // Unix seconds; null before the first token
  std::optional<std::int64_t> refresh_at; // Unix seconds of the next attempt; null if none
  std::uint64_t refreshes = 0;
  std::uint64_t failures = 0;
  std::optional<LastError> last_error;    // null when the last attempt succeeded
  friend bool operator==(const ProfileInfo&, const ProfileInfo&) = default;
};

struct Counters
{
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;
  std::uint64_t upstream_calls = 0;
  std::uint64_t connections = 0; // open now
  friend bool operator==(const Counters&, const Counters&) = default;
};

// The status object of docs/protocol.md.
struct StatusInfo
{
  std::string version;
  std::int64_t uptime_s = 0;
  SourceInfo source;
  std::vector<ProfileInfo> profiles; // only those the caller may use
  Counters counters;
  friend bool operator==(const StatusInfo&, const StatusInfo&) = default;
};

// {"ok":true,"id":..,"profile":..,"access_token":..,"token_type":"Bearer",
// "expires_at":..,"expires_in":..}. The line holds the token: wipe_string()
// it once sent.
std::string format_token_reply(const RequestId& id, std::string_view profile, const Secret& access_token,
                               std::int64_t expires_at, std::int64_t expires_in);

// {"ok":true} (with "id" when the request had one): the ping reply.
std::string format_ok_reply(const RequestId& id);

// {"ok":false,"id":..,"error":{"code":..,"message":..,"retry_after_s":..,
// "upstream":{..}}}; retry_after_s and upstream only when set.
std::string format_error_reply(const RequestId& id, const ErrorInfo& error);
std::string format_error_reply(const RequestId& id, ErrorCode code, std::string_view message);

// {"ok":true,"id":..,"version":..,"uptime_s":..,"source":{..},"profiles":[..],
// "counters":{..}}; absent optionals are written as null.
std::string format_status_reply(const RequestId& id, const StatusInfo& status);

// {"ok":true,"id":..,"text":"<Prometheus text exposition>"}: the metrics reply.
std::string format_metrics_reply(const RequestId& id, std::string_view text);

// A reply line as iamtoken-get sees it.
struct Reply
{
  bool ok = false;
  RequestId id;
  // Token replies (ok with an access_token; see is_token()).
  std::string profile;
  Secret access_token;
  std::int64_t expires_at = 0;
  std::int64_t expires_in = 0;
  // Error replies (!ok). `code` is kept as sent: a newer daemon may send a
  // code this build does not know (see error_code()).
  std::string code;
  std::string message;
  std::optional<std::int64_t> retry_after_s;
  UpstreamInfo upstream;
  // The line as received, without its line end, for `--format json`. A
  // Secret because a token reply holds the token.
  Secret raw;

  bool is_token() const noexcept { return ok && !access_token.empty(); }
  // The error code, or nullopt if this is not an error or the code is unknown.
  std::optional<ErrorCode> error_code() const noexcept;
};

// Parses any reply line (a trailing '\n' or "\r\n" is tolerated). Returns the
// reply, or a one-line message (never echoing values) when the line is not
// one JSON object with a boolean `ok`, an ok reply has an access_token but
// not the other token fields (string profile, non-empty access_token,
// token_type "Bearer", integer expires_at/expires_in), or an error reply lacks
// error.code/error.message strings or has wrongly typed optional members.
// Other ok replies (ping, status) give just ok and id. Unknown keys are ignored.
tl::expected<Reply, std::string> parse_reply(std::string_view line);

// Parses the status object of an ok status reply. Returns it, or a one-line
// message when parse_reply would not accept the line as an ok reply (so a bad
// id or a malformed token member is refused here too), or a documented status
// member is missing or wrongly typed (expires_at, refresh_at and last_error
// may be null).
tl::expected<StatusInfo, std::string> parse_status_reply(std::string_view line);

// The text of an ok metrics reply, or a one-line message when the line is not
// an ok reply (as parse_reply accepts it) with a string `text`.
tl::expected<std::string, std::string> parse_metrics_reply(std::string_view line);

} // namespace iamtok::proto
