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
// every other field is optional and ignored. Otherwise Failure::malformed
// with a message saying what is wrong (never the body or the token).
tl::expected<engine::IssuedToken, engine::UpstreamError>
parse_token_reply(Call call, std::string_view body);

// The error of a non-2xx reply of `call` with HTTP `status`, its `body` (the
// IAM or IMDS error document, or anything else) and its Retry-After header
// value (empty if absent). `unix_now` resolves a Retry-After HTTP-date.
// Always Failure::http; code/request_id/message come from the body when it
// has them, `definitive` and `cr_token_rejected` from the status and code.
engine::UpstreamError parse_error_reply(Call call, int status, std::string_view body,
                                        std::string_view retry_after, std::int64_t unix_now);

// True for statuses that will not heal by retrying: every 4xx but 408 and 429,
// and 501. False for 408, 429, other 5xx and anything else.
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
