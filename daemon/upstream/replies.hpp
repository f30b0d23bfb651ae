#pragma once

// Parsers for what IMDS and IAM answer (docs/upstream.md): token replies,
// error bodies mapped to engine::UpstreamError, and Retry-After. Pure: no
// Asio, no curl, no clock (the caller passes the time), so they can be fuzzed.
// No message made here ever holds a token or a reply body.

#include "daemon/engine/ports.hpp"

#include <tl/expected.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace iamtok::upstream {

// The three upstream calls; each has its own reply and error format.
enum class Call {
  imds_token,     // PUT  {imds}/identity/v1/token: the instance identity token
  imds_iam_token, // POST {imds}/identity/v1/iam_tokens: an IAM token via IMDS
  iam_token,      // POST {iam}/identity/token: the CR-token grant
};

// "IMDS token", "IMDS iam_token" or "IAM": how messages name the call.
std::string_view call_name(Call call) noexcept;

// Replies larger than this are refused (Failure::malformed).
constexpr std::size_t k_max_reply_size = 64 * 1024;

// Longest expires_in accepted in a reply; anything longer is absurd.
constexpr std::chrono::seconds k_max_expires_in{24 * 3600};

// The token of a 2xx reply of `call`: an object with a non-empty printable
// "access_token" string and an integer "expires_in" in 1..k_max_expires_in;
// every other field is optional and ignored. When the token is a JWT with
// integer exp and iat claims, jwt_lifetime = exp - iat and issued_at = iat
// (a JWT whose exp is not after its iat is malformed). Otherwise
// Failure::malformed with a message saying what is wrong (never the body or
// the token). The parser's copy of the body is wiped before returning.
tl::expected<engine::IssuedToken, engine::UpstreamError>
parse_token_reply(Call call, std::string_view body);

// The exp and iat claims of a JWT ("header.payload.signature", base64url):
// both present as integers, else nullopt (not a JWT, or without them).
// Decodes the payload only, never checks the signature, never logs; the
// decoded payload is wiped.
struct JwtTimes
{
  std::int64_t iat = 0;
  std::int64_t exp = 0;
};
std::optional<JwtTimes> jwt_times(std::string_view token);

// A token whose iat is further than this from the local clock gets a warning:
// clients are told expires_at on the local clock.
constexpr std::chrono::seconds k_max_clock_skew{300};

// True if `issued_at` (Unix seconds) is more than k_max_clock_skew away from
// `unix_now`, either way.
bool is_clock_skewed(std::int64_t issued_at, std::int64_t unix_now) noexcept;

// The headers of a reply that error handling uses (each empty if absent).
struct ReplyHeaders
{
  std::string_view retry_after;
  std::string_view request_id; // X-Request-Id (IMDS) or Transaction-Id (IAM)
  std::string_view location;   // of a 3xx
};

// The error of a non-2xx reply of `call` with HTTP `status`, its `body` (the
// IAM or IMDS error document, or anything else) and its Retry-After header
// value (empty if absent). `unix_now` resolves a Retry-After HTTP-date.
// Always Failure::http; code/request_id/message come from the body when it
// has them (IAM's errorDetails included, sanitized and bounded), the request
// id from the header when the body has none; `definitive` and
// `cr_token_rejected` from the status and code. A 3xx is definitive and names
// its Location (redirects are never followed).
engine::UpstreamError parse_error_reply(Call call, int status, std::string_view body,
                                        const ReplyHeaders& headers, std::int64_t unix_now);
// The same with only a Retry-After header.
engine::UpstreamError parse_error_reply(Call call, int status, std::string_view body,
                                        std::string_view retry_after, std::int64_t unix_now);

// True for statuses that will not heal by retrying: every 3xx (a redirect is
// never followed), every 4xx but 408 and 429, and 501. False for 408, 429,
// other 5xx and anything else.
bool is_definitive_status(int status) noexcept;

// The delay a Retry-After value asks for: delta-seconds ("120"), or an
// HTTP-date (IMF-fixdate, RFC 850 or asctime form) minus `unix_now`, at least
// 0 and at most one day. nullopt for anything else.
std::optional<std::chrono::seconds> parse_retry_after(std::string_view value,
                                                      std::int64_t unix_now);

// Unix time of an HTTP-date ("Sun, 06 Nov 1994 08:49:37 GMT", "Sunday,
// 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"); nullopt if malformed.
std::optional<std::int64_t> parse_http_date(std::string_view value);

// `text` made safe for a log line: control characters become spaces, runs of
// 32 or more token characters (base64url and '.', as in a JWT) become
// "<redacted>", and the result is cut to `max_size` bytes at a UTF-8
// boundary.
std::string sanitize_message(std::string_view text, std::size_t max_size = 200);

} // namespace iamtok::upstream
