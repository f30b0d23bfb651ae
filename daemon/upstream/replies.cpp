#include "daemon/upstream/replies.hpp"

#include "proto/json.hpp"
#include "proto/secret.hpp"
#include "util/base64.hpp"
#include "util/strings.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <limits>

namespace iamtok::upstream {

using engine::Failure;
using engine::UpstreamError;

namespace {

constexpr std::int64_t k_max_retry_after_s = 24 * 3600;

UpstreamError malformed(Call call, std::string_view what)
{
  UpstreamError error;
  error.failure = Failure::malformed;
  error.message = fmt::format("{} reply is malformed: {}", call_name(call), what);
  return error;
}

// A token goes into HTTP headers and JSON replies: printable ASCII only.
bool is_printable_token(std::string_view token) noexcept
{
  for (const char c : token) {
    if (c <= 0x20 || c >= 0x7f) {
      return false;
    }
  }
  return true;
}

// The string at `key` of `object`, or empty when absent or not a string.
std::string_view string_field(simdjson::dom::element object, std::string_view key)
{
  std::string_view value;
  if (object[key].get_string().get(value) != simdjson::SUCCESS) {
    return {};
  }
  return value;
}

bool is_digit(char c) noexcept
{
  return c >= '0' && c <= '9';
}

bool is_alpha(char c) noexcept
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept
{
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

unsigned days_in_month(std::int64_t year, unsigned month) noexcept
{
  static constexpr std::array<unsigned, 12> k_days{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : k_days[month - 1];
}

// A cursor over an HTTP-date; every reader returns false on a mismatch.
class DateReader
{
public:
  explicit DateReader(std::string_view text) : m_text(text) {}

  bool at_end() const noexcept { return m_pos == m_text.size(); }

  bool literal(std::string_view expected) noexcept
  {
    if (m_text.substr(m_pos, expected.size()) != expected) {
      return false;
    }
    m_pos += expected.size();
    return true;
  }

  // Exactly `count` digits.
  bool number(std::size_t count, unsigned& value) noexcept
  {
    value = 0;
    for (std::size_t i = 0; i < count; ++i) {
      if (m_pos >= m_text.size() || !is_digit(m_text[m_pos])) {
        return false;
      }
      value = value * 10 + static_cast<unsigned>(m_text[m_pos++] - '0');
    }
    return true;
  }

  // A day name: "Sun" (short) or "Sunday" (long).
  bool day_name(bool long_form) noexcept
  {
    static constexpr std::array<std::string_view, 7> k_long{
      "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"};
    for (const auto name : k_long) {
      if (literal(long_form ? name : name.substr(0, 3))) {
        return true;
      }
    }
    return false;
  }

  bool month_name(unsigned& month) noexcept
  {
    static constexpr std::array<std::string_view, 12> k_months{
      "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    for (unsigned i = 0; i < k_months.size(); ++i) {
      if (literal(k_months[i])) {
        month = i + 1;
        return true;
      }
    }
    return false;
  }

  bool time_of_day(unsigned& hour, unsigned& minute, unsigned& second) noexcept
  {
    return number(2, hour) && literal(":") && number(2, minute) && literal(":")
           && number(2, second);
  }

  // How many letters follow (3 for "Sun,", more for "Sunday,").
  std::size_t letters_ahead() const noexcept
  {
    std::size_t n = 0;
    while (m_pos + n < m_text.size() && is_alpha(m_text[m_pos + n])) {
      ++n;
    }
    return n;
  }

private:
  std::string_view m_text;
  std::size_t m_pos = 0;
};

// An integer claim (a JSON number without a fraction) of a JWT payload.
std::optional<std::int64_t> integer_claim(simdjson::dom::element payload, std::string_view key)
{
  simdjson::dom::element value;
  if (payload[key].get(value) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  std::int64_t n = 0;
  if (value.get_int64().get(n) == simdjson::SUCCESS) {
    return n;
  }
  double d = 0;
  if (value.get_double().get(d) == simdjson::SUCCESS && d >= -9e15 && d <= 9e15
      && d == static_cast<double>(static_cast<std::int64_t>(d))) {
    return static_cast<std::int64_t>(d);
  }
  return std::nullopt;
}

} // namespace

std::optional<JwtTimes> jwt_times(std::string_view token)
{
  const auto first = token.find('.');
  if (first == std::string_view::npos) {
    return std::nullopt;
  }
  const auto second = token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
    return std::nullopt;
  }
  std::string payload;
  // A padded payload is tolerated: the padding carries no bits.
  std::string_view encoded = token.substr(first + 1, second - first - 1);
  while (encoded.ends_with('=')) {
    encoded.remove_suffix(1);
  }
  if (!util::base64url_decode(encoded, payload)) {
    wipe_string(payload);
    return std::nullopt;
  }
  std::optional<JwtTimes> times;
  {
    simdjson::dom::parser parser;
    const json::WipeOnExit wipe{parser};
    if (auto document = json::parse_document(parser, payload); document && document->is_object()) {
      const auto iat = integer_claim(*document, "iat");
      const auto exp = integer_claim(*document, "exp");
      if (iat && exp) {
        times = JwtTimes{*iat, *exp};
      }
    }
  }
  wipe_string(payload);
  return times;
}

bool is_clock_skewed(std::int64_t issued_at, std::int64_t unix_now) noexcept
{
  const std::int64_t skew = issued_at > unix_now ? issued_at - unix_now : unix_now - issued_at;
  return skew > k_max_clock_skew.count();
}

std::string_view call_name(Call call) noexcept
{
  switch (call) {
  case Call::imds_token:
    return "IMDS token";
  case Call::imds_iam_token:
    return "IMDS iam_token";
  case Call::iam_token:
    return "IAM";
  }
  return "upstream";
}

tl::expected<engine::IssuedToken, UpstreamError> parse_token_reply(Call call,
                                                                   std::string_view body)
{
  if (body.size() > k_max_reply_size) {
    return tl::unexpected(malformed(call, "larger than 64 KiB"));
  }
  simdjson::dom::parser parser;
  const json::WipeOnExit wipe{parser}; // its string buffer holds the token
  auto document = json::parse_document(parser, body);
  if (!document) {
    return tl::unexpected(malformed(call, document.error()));
  }
  simdjson::dom::object object;
  if (document->get_object().get(object) != simdjson::SUCCESS) {
    return tl::unexpected(malformed(call, "not a JSON object"));
  }

  simdjson::dom::element token_element;
  if (object["access_token"].get(token_element) != simdjson::SUCCESS) {
    return tl::unexpected(malformed(call, "no access_token"));
  }
  std::string_view token;
  if (token_element.get_string().get(token) != simdjson::SUCCESS) {
    return tl::unexpected(malformed(call, "access_token is not a string"));
  }
  if (token.empty()) {
    return tl::unexpected(malformed(call, "access_token is empty"));
  }
  if (!is_printable_token(token)) {
    return tl::unexpected(malformed(call, "access_token holds a space or a non-ASCII character"));
  }

  simdjson::dom::element expires_element;
  if (object["expires_in"].get(expires_element) != simdjson::SUCCESS) {
    return tl::unexpected(malformed(call, "no expires_in"));
  }
  std::int64_t expires_in = 0;
  if (expires_element.is_uint64() && !expires_element.is_int64()) {
    return tl::unexpected(malformed(call, "expires_in is out of range"));
  }
  if (expires_element.get_int64().get(expires_in) != simdjson::SUCCESS) {
    return tl::unexpected(malformed(call, "expires_in is not an integer"));
  }
  if (expires_in <= 0 || expires_in > k_max_expires_in.count()) {
    return tl::unexpected(malformed(
      call, fmt::format("expires_in {} is out of range 1-{}", expires_in, k_max_expires_in.count())));
  }

  engine::IssuedToken issued{Secret{std::string(token)}, std::chrono::seconds(expires_in)};
  if (const auto times = jwt_times(token)) {
    if (times->exp <= times->iat) {
      return tl::unexpected(malformed(call, "the token's JWT exp is not after its iat"));
    }
    issued.jwt_lifetime = std::chrono::seconds(times->exp - times->iat);
    issued.issued_at = times->iat;
  }
  return issued;
}

bool is_definitive_status(int status) noexcept
{
  if (status >= 300 && status <= 399) {
    return true;
  }
  if (status >= 400 && status <= 499) {
    return status != 408 && status != 429;
  }
  return status == 501;
}

UpstreamError parse_error_reply(Call call, int status, std::string_view body,
                                std::string_view retry_after, std::int64_t unix_now)
{
  return parse_error_reply(call, status, body, ReplyHeaders{retry_after, {}, {}}, unix_now);
}

UpstreamError parse_error_reply(Call call, int status, std::string_view body,
                                const ReplyHeaders& headers, std::int64_t unix_now)
{
  UpstreamError error;
  error.failure = Failure::http;
  error.http_status = status;
  error.definitive = is_definitive_status(status);
  if (!headers.retry_after.empty()) {
    error.retry_after = parse_retry_after(headers.retry_after, unix_now);
  }

  // IAM: {"errorCode","errorMessage","context":{"requestId"}}; IMDS:
  // {"errors":[{"code","message"}],"trace"}. Either shape is accepted from
  // either service (a proxy may answer instead); anything else is ignored.
  std::string_view code;
  std::string_view server_message;
  std::string_view details;
  std::string_view request_id;
  simdjson::dom::parser parser;
  const json::WipeOnExit wipe{parser}; // a proxy's error page may echo anything
  if (!body.empty() && body.size() <= k_max_reply_size) {
    if (auto document = json::parse_document(parser, body); document && document->is_object()) {
      const simdjson::dom::element root = *document;
      if (root["errorCode"].is_string()) {
        code = string_field(root, "errorCode");
        server_message = string_field(root, "errorMessage");
        details = string_field(root, "errorDetails");
        simdjson::dom::element context;
        if (root["context"].get(context) == simdjson::SUCCESS && context.is_object()) {
          request_id = string_field(context, "requestId");
        }
      } else {
        simdjson::dom::array errors;
        if (root["errors"].get_array().get(errors) == simdjson::SUCCESS && errors.size() > 0) {
          simdjson::dom::element first;
          if (errors.at(0).get(first) == simdjson::SUCCESS && first.is_object()) {
            code = string_field(first, "code");
            server_message = string_field(first, "message");
          }
        }
        request_id = string_field(root, "trace");
      }
    }
  }

  if (request_id.empty()) {
    request_id = headers.request_id; // a body that is not the service's JSON
  }
  error.code = sanitize_message(code, 64);
  error.request_id = sanitize_message(request_id, 128);
  error.cr_token_rejected =
    call != Call::imds_token
    && (status == 401 || error.code == "BXNIM0407E" || error.code == "unauthenticated");

  error.message = fmt::format("{} answered HTTP {}", call_name(call), status);
  if (!error.code.empty()) {
    fmt::format_to(std::back_inserter(error.message), " {}", error.code);
  }
  if (const auto text = sanitize_message(server_message); !text.empty()) {
    fmt::format_to(std::back_inserter(error.message), ": {}", text);
  }
  if (const auto text = sanitize_message(details, 300); !text.empty()) {
    fmt::format_to(std::back_inserter(error.message), " ({})", text);
  }
  if (status >= 300 && status <= 399) {
    const auto where = sanitize_message(headers.location, 200);
    fmt::format_to(std::back_inserter(error.message),
                   ": a redirect to {} (not followed: check the endpoint in the configuration)",
                   where.empty() ? std::string("an unnamed location") : where);
  }
  if (!error.request_id.empty()) {
    fmt::format_to(std::back_inserter(error.message), " (request id {})", error.request_id);
  }
  return error;
}

std::optional<std::int64_t> parse_http_date(std::string_view value)
{
  DateReader in(util::trim(value));
  unsigned day = 0;
  unsigned month = 0;
  unsigned year = 0;
  unsigned hour = 0;
  unsigned minute = 0;
  unsigned second = 0;

  const std::size_t name_length = in.letters_ahead();
  if (name_length == 3 && in.day_name(false) && in.literal(",")) {
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
    if (!(in.literal(" ") && in.number(2, day) && in.literal(" ") && in.month_name(month)
          && in.literal(" ") && in.number(4, year) && in.literal(" ")
          && in.time_of_day(hour, minute, second) && in.literal(" GMT"))) {
      return std::nullopt;
    }
  } else if (name_length > 3) {
    // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
    if (!(in.day_name(true) && in.literal(", ") && in.number(2, day) && in.literal("-")
          && in.month_name(month) && in.literal("-") && in.number(2, year) && in.literal(" ")
          && in.time_of_day(hour, minute, second) && in.literal(" GMT"))) {
      return std::nullopt;
    }
    year += year < 70 ? 2000 : 1900;
  } else {
    // asctime: "Sun Nov  6 08:49:37 1994"
    in = DateReader(util::trim(value));
    if (!(in.day_name(false) && in.literal(" ") && in.month_name(month) && in.literal(" "))) {
      return std::nullopt;
    }
    if (in.literal(" ")) {
      if (!in.number(1, day)) {
        return std::nullopt;
      }
    } else if (!in.number(2, day)) {
      return std::nullopt;
    }
    if (!(in.literal(" ") && in.time_of_day(hour, minute, second) && in.literal(" ")
          && in.number(4, year))) {
      return std::nullopt;
    }
  }
  if (!in.at_end() || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month)
      || hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  return days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view value,
                                                      std::int64_t unix_now)
{
  value = util::trim(value);
  if (value.empty()) {
    return std::nullopt;
  }
  bool all_digits = true;
  for (const char c : value) {
    all_digits = all_digits && is_digit(c);
  }
  if (all_digits) {
    std::int64_t seconds = 0;
    for (const char c : value) {
      seconds = std::min<std::int64_t>(seconds * 10 + (c - '0'), k_max_retry_after_s);
    }
    return std::chrono::seconds(seconds);
  }
  const auto date = parse_http_date(value);
  if (!date) {
    return std::nullopt;
  }
  const std::int64_t delay = std::clamp<std::int64_t>(*date - unix_now, 0, k_max_retry_after_s);
  return std::chrono::seconds(delay);
}

std::string sanitize_message(std::string_view text, std::size_t max_size)
{
  const auto is_token_char = [](char c) {
    return is_alpha(c) || is_digit(c) || c == '-' || c == '_' || c == '.';
  };
  std::string out;
  std::size_t i = 0;
  while (i < text.size() && out.size() < max_size + 10) {
    if (is_token_char(text[i])) {
      std::size_t end = i;
      bool has_dot = false;
      while (end < text.size() && is_token_char(text[end])) {
        has_dot = has_dot || text[end] == '.';
        ++end;
      }
      const std::size_t length = end - i;
      // A JWT (dotted base64url) or any long opaque blob may be a credential.
      if ((length >= 32 && has_dot) || length >= 64) {
        out += "<redacted>";
      } else {
        out.append(text.substr(i, length));
      }
      i = end;
      continue;
    }
    const auto byte = static_cast<unsigned char>(text[i]);
    out.push_back(byte < 0x20 || byte == 0x7f ? ' ' : text[i]);
    ++i;
  }
  if (out.size() > max_size) {
    std::size_t cut = max_size;
    // Do not split a UTF-8 sequence: back off over continuation bytes.
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) {
      --cut;
    }
    out.resize(cut);
    out += "...";
  }
  return out;
}

} // namespace iamtok::upstream
