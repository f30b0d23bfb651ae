// The pure half of daemon/upstream: reply and error parsers, Retry-After,
// request bodies and the CR-token file (docs/upstream.md).

#include "daemon/upstream/file_source.hpp"
#include "daemon/upstream/replies.hpp"
#include "daemon/upstream/requests.hpp"
#include "tests/support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace iamtok;
using namespace iamtok::upstream;
using engine::Failure;

namespace {

using iamtok::test::TempDir;

// A JWT-shaped value, long enough that sanitize_message would redact it.
const std::string k_token =
  "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJQcm9maWxlLTEiLCJleHAiOjE3OTUwMDAwMDB9.c2lnbmF0dXJlLXZhbHVlLWhlcmU";

std::string with_token(const std::string& before, const std::string& after)
{
  return before + k_token + after;
}

bool mentions_token(const std::string& text)
{
  return text.find(k_token) != std::string::npos
         || text.find(k_token.substr(0, 20)) != std::string::npos;
}

// 2026-11-23T08:00:00Z
constexpr std::int64_t k_now = 1795420800;

// `body` parses as a `call` reply holding k_token for `expires_in`.
void check_token_reply(Call call, const std::string& body, std::chrono::seconds expires_in)
{
  const auto result = parse_token_reply(call, body);
  REQUIRE(result.has_value());
  REQUIRE(result->token == Secret(k_token));
  REQUIRE(result->expires_in == expires_in);
}

} // namespace

TEST_CASE("an IMDS instance identity token reply yields its token and expires_in")
{
  for (const auto* stamps : {R"("created_at":"2026-11-23T08:00:00.000Z","expires_at":"2026-11-23T09:00:00.000Z",)",
                             R"("created_at":"2026-11-23T08:00:00Z","expires_at":"2026-11-23T09:00:00Z",)"}) {
    const auto body = with_token(R"({"access_token":")", std::string(R"(",)") + stamps + R"("expires_in":3600})");
    check_token_reply(Call::imds_token, body, std::chrono::seconds(3600));
  }
}

TEST_CASE("an IMDS iam_token reply yields the IAM token and its lifetime")
{
  const auto body = with_token(R"({"access_token":")",
                               R"(","created_at":"2026-11-23T08:00:00Z","expires_at":"2026-11-23T08:05:00Z","expires_in":300})");
  check_token_reply(Call::imds_iam_token, body, std::chrono::seconds(300));
}

TEST_CASE("an IAM token reply is accepted with all documented fields or only the required two")
{
  const auto full = with_token(R"({"access_token":")",
                               R"(","refresh_token":"not_supported","token_type":"Bearer","expires_in":3600,"expiration":1795000000,"scope":"ibm openid"})");
  const auto minimal = with_token(R"({"expires_in":1200,"access_token":")", R"("})");
  const auto a = parse_token_reply(Call::iam_token, full);
  const auto b = parse_token_reply(Call::iam_token, minimal);
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  REQUIRE(a->token == Secret(k_token));
  REQUIRE(a->expires_in == std::chrono::seconds(3600));
  REQUIRE(b->token == Secret(k_token));
  REQUIRE(b->expires_in == std::chrono::seconds(1200));
}

TEST_CASE("token replies that are not the documented JSON are malformed, without echoing the body")
{
  struct Case
  {
    const char* what;
    std::string body;
    const char* says;
  };
  const std::vector<Case> cases{
    {"empty body", "", "invalid JSON"},
    {"not JSON", with_token("access_token=", "&expires_in=3600"), "invalid JSON"},
    {"HTML", "<html><body>502 Bad Gateway</body></html>", "invalid JSON"},
    {"truncated", with_token(R"({"access_token":")", R"(","expires_in":36)"), "invalid JSON"},
    {"trailing value", with_token(R"({"access_token":")", R"(","expires_in":3600} {})"), "invalid JSON"},
    {"duplicate key", with_token(R"({"access_token":")", R"(","expires_in":1,"expires_in":3600})"), "duplicate key"},
    {"an array", with_token(R"([{"access_token":")", R"(","expires_in":3600}])"), "not a JSON object"},
    {"a string", with_token("\"", "\""), "not a JSON object"},
    {"no access_token", R"({"expires_in":3600,"token_type":"Bearer"})", "no access_token"},
    {"no expires_in", with_token(R"({"access_token":")", R"("})"), "no expires_in"},
    {"token not a string", R"({"access_token":12345,"expires_in":3600})", "not a string"},
    {"token null", R"({"access_token":null,"expires_in":3600})", "not a string"},
    {"empty token", R"({"access_token":"","expires_in":3600})", "empty"},
    {"token with a space", R"({"access_token":"abc def","expires_in":3600})", "space"},
    {"token with a newline", R"({"access_token":"abc\ndef","expires_in":3600})", "space"},
    {"expires_in string", with_token(R"({"access_token":")", R"(","expires_in":"3600"})"), "not an integer"},
    {"expires_in float", with_token(R"({"access_token":")", R"(","expires_in":3600.5})"), "not an integer"},
    {"expires_in bool", with_token(R"({"access_token":")", R"(","expires_in":true})"), "not an integer"},
    {"expires_in zero", with_token(R"({"access_token":")", R"(","expires_in":0})"), "out of range"},
    {"expires_in negative", with_token(R"({"access_token":")", R"(","expires_in":-5})"), "out of range"},
    {"expires_in absurd", with_token(R"({"access_token":")", R"(","expires_in":100000000})"), "out of range"},
    {"expires_in past int64", with_token(R"({"access_token":")", R"(","expires_in":18446744073709551615})"), "out of range"},
    {"oversized", with_token(R"({"access_token":")", R"(","expires_in":3600,"pad":")" + std::string(70000, 'x') + "\"}"),
     "larger than 64 KiB"},
    {"invalid UTF-8", "{\"access_token\":\"\xff\xfe\",\"expires_in\":3600}", "invalid JSON"},
  };
  for (const auto& c : cases) {
    for (const auto call : {Call::imds_token, Call::imds_iam_token, Call::iam_token}) {
      INFO(c.what);
      const auto result = parse_token_reply(call, c.body);
      REQUIRE_FALSE(result.has_value());
      REQUIRE(result.error().failure == Failure::malformed);
      CHECK(result.error().message.find(c.says) != std::string::npos);
      CHECK(result.error().message.find(call_name(call)) == 0);
      CHECK_FALSE(mentions_token(result.error().message));
      CHECK(result.error().message.find("Bad Gateway") == std::string::npos);
      CHECK_FALSE(result.error().definitive);
    }
  }
}

TEST_CASE("an IAM error body gives its errorCode, requestId and message")
{
  const std::string body =
    R"({"errorCode":"BXNIM0398E","errorMessage":"Selected trusted profile not eligible.","errorDetails":"x",)"
    R"("context":{"requestId":"req-42","requestType":"incoming.Identity_Token","userAgent":"iamtokend"}})";
  const auto error = parse_error_reply(Call::iam_token, 400, body, "", k_now);
  REQUIRE(error.failure == Failure::http);
  REQUIRE(error.http_status == 400);
  REQUIRE(error.code == "BXNIM0398E");
  REQUIRE(error.request_id == "req-42");
  REQUIRE(error.definitive);
  REQUIRE_FALSE(error.cr_token_rejected);
  REQUIRE_FALSE(error.retry_after.has_value());
  REQUIRE(error.message
          == "IAM answered HTTP 400 BXNIM0398E: Selected trusted profile not eligible. (x) (request id req-42)");
}

TEST_CASE("IAM's errorDetails is kept, bounded and sanitized, never with a token")
{
  const std::string details = "The given token with identifier 'tok2iks1:ns:sa:pod' is not permitted\\n\\u0007to "
                              "assume the indicated trusted profile; token " + k_token + " " + std::string(500, 'y');
  const std::string body = R"({"errorCode":"BXNIM0398E","errorMessage":"Selected trusted profile not eligible.",)"
                           R"("errorDetails":")" + details + R"(","context":{"requestId":"req-7"}})";
  const auto error = parse_error_reply(Call::iam_token, 400, body, "", k_now);
  INFO(error.message);
  REQUIRE(error.message.find("identifier 'tok2iks1:ns:sa:pod' is not permitted") != std::string::npos);
  REQUIRE(error.message.find("to assume the indicated trusted profile") != std::string::npos);
  REQUIRE_FALSE(mentions_token(error.message));
  REQUIRE(error.message.find('\n') == std::string::npos);
  REQUIRE(error.message.find('\a') == std::string::npos);
  REQUIRE(error.message.size() < 600);
  REQUIRE(error.request_id == "req-7");
}

TEST_CASE("without a JSON body the request id comes from X-Request-Id or Transaction-Id")
{
  const std::string page = "<html><body>502 Bad Gateway</body></html>";
  const auto imds = parse_error_reply(Call::imds_iam_token, 502, page, ReplyHeaders{"", "trace-77", ""}, k_now);
  REQUIRE(imds.request_id == "trace-77");
  REQUIRE(imds.message.find("request id trace-77") != std::string::npos);
  REQUIRE_FALSE(imds.definitive);
  // The body's own id wins over the header.
  const auto iam = parse_error_reply(Call::iam_token, 400, R"({"errorCode":"BXNIM0398E","context":{"requestId":"body-1"}})",
                                     ReplyHeaders{"", "header-1", ""}, k_now);
  REQUIRE(iam.request_id == "body-1");
  // A header value is sanitized like the body's.
  REQUIRE_FALSE(mentions_token(
    parse_error_reply(Call::iam_token, 500, "", ReplyHeaders{"", k_token, ""}, k_now).request_id));
}

TEST_CASE("a 3xx is a definitive error naming its Location: redirects are never followed")
{
  for (const int status : {301, 302, 303, 307, 308}) {
    INFO(status);
    REQUIRE(is_definitive_status(status));
    const auto error =
      parse_error_reply(Call::iam_token, status, "", ReplyHeaders{"", "", "https://elsewhere.example/identity/token"}, k_now);
    REQUIRE(error.definitive);
    REQUIRE_FALSE(error.cr_token_rejected);
    REQUIRE(error.message.find("redirect to https://elsewhere.example/identity/token") != std::string::npos);
    REQUIRE(error.message.find("not followed") != std::string::npos);
  }
}

namespace {

std::string base64url(std::string_view text)
{
  static constexpr std::string_view k_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (const char c : text) {
    buffer = (buffer << 8) | static_cast<unsigned char>(c);
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(k_alphabet[(buffer >> bits) & 0x3F]);
    }
  }
  if (bits > 0) {
    out.push_back(k_alphabet[(buffer << (6 - bits)) & 0x3F]);
  }
  return out;
}

std::string jwt(std::string_view payload)
{
  return base64url(R"({"alg":"HS256","typ":"JWT"})") + "." + base64url(payload) + "." + base64url("signature-bytes");
}

} // namespace

TEST_CASE("a JWT's exp and iat are decoded from its payload, and nothing else is needed")
{
  REQUIRE(jwt_times(jwt(R"({"sub":"x","iat":1795420800,"exp":1795424400})"))->exp == 1795424400);
  REQUIRE(jwt_times(jwt(R"({"sub":"x","iat":1795420800,"exp":1795424400})"))->iat == 1795420800);
  REQUIRE_FALSE(jwt_times(jwt(R"({"sub":"x","exp":1795424400})")).has_value());
  REQUIRE_FALSE(jwt_times(jwt(R"({"iat":"soon","exp":1795424400})")).has_value());
  REQUIRE_FALSE(jwt_times(jwt("not json")).has_value());
  REQUIRE_FALSE(jwt_times("opaque-token").has_value());
  REQUIRE_FALSE(jwt_times("a.b").has_value());
  REQUIRE_FALSE(jwt_times("a.b!c.d").has_value());
  REQUIRE_FALSE(jwt_times("a.*.c").has_value());
}

TEST_CASE("a token reply that is a JWT carries exp - iat and iat, and exp not after iat is malformed")
{
  const auto token = jwt(R"({"iat":1795420800,"exp":1795420805})");
  const auto reply = parse_token_reply(Call::iam_token, R"({"access_token":")" + token + R"(","expires_in":3600})");
  REQUIRE(reply.has_value());
  REQUIRE(reply->expires_in == std::chrono::seconds(3600));
  REQUIRE(reply->jwt_lifetime == std::chrono::seconds(5));
  REQUIRE(reply->issued_at == 1795420800);

  const auto opaque = parse_token_reply(Call::iam_token, R"({"access_token":"opaque","expires_in":3600})");
  REQUIRE(opaque.has_value());
  REQUIRE_FALSE(opaque->jwt_lifetime.has_value());

  const auto backwards = jwt(R"({"iat":1795420800,"exp":1795420800})");
  const auto bad = parse_token_reply(Call::iam_token, R"({"access_token":")" + backwards + R"(","expires_in":3600})");
  REQUIRE_FALSE(bad.has_value());
  REQUIRE(bad.error().failure == Failure::malformed);
  REQUIRE(bad.error().message.find(backwards) == std::string::npos);
}

TEST_CASE("an iat more than 5 minutes from the local clock is clock skew, either way")
{
  REQUIRE(k_max_clock_skew == std::chrono::seconds(300));
  REQUIRE_FALSE(is_clock_skewed(k_now, k_now));
  REQUIRE_FALSE(is_clock_skewed(k_now + 300, k_now));
  REQUIRE_FALSE(is_clock_skewed(k_now - 300, k_now));
  REQUIRE(is_clock_skewed(k_now + 301, k_now));
  REQUIRE(is_clock_skewed(k_now - 301, k_now));
}

TEST_CASE("IAM rejecting the CR token marks the error cr_token_rejected")
{
  const std::string body =
    R"({"errorCode":"BXNIM0407E","errorMessage":"Provided CR token is invalid.","context":{"requestId":"r1"}})";
  const auto unauthorized = parse_error_reply(Call::iam_token, 401, body, "", k_now);
  REQUIRE(unauthorized.cr_token_rejected);
  REQUIRE(unauthorized.definitive);
  REQUIRE(unauthorized.code == "BXNIM0407E");
  // The same code with another status still says the token was refused.
  REQUIRE(parse_error_reply(Call::iam_token, 400, body, "", k_now).cr_token_rejected);
  // Any 401 does, even without a body.
  REQUIRE(parse_error_reply(Call::iam_token, 401, "", "", k_now).cr_token_rejected);
  // Another code at 400 does not.
  REQUIRE_FALSE(parse_error_reply(Call::iam_token, 400, R"({"errorCode":"BXNIM0415E"})", "", k_now)
                  .cr_token_rejected);
}

TEST_CASE("an IMDS error body gives errors[0].code and the trace")
{
  const std::string body =
    R"({"errors":[{"code":"invalid_value","message":"The `expires_in` field must not exceed `3600`.",)"
    R"("more_info":"https://cloud.ibm.com/docs/vpc","target":{"name":"expires_in","type":"field","value":"7200"}},)"
    R"({"code":"second","message":"ignored"}],"status_code":400,"trace":"e37872f6-1234"})";
  const auto error = parse_error_reply(Call::imds_token, 400, body, "", k_now);
  REQUIRE(error.failure == Failure::http);
  REQUIRE(error.code == "invalid_value");
  REQUIRE(error.request_id == "e37872f6-1234");
  REQUIRE(error.definitive);
  REQUIRE_FALSE(error.cr_token_rejected);
  REQUIRE(error.message.starts_with("IMDS token answered HTTP 400 invalid_value: The `expires_in` field"));
  REQUIRE(error.message.find("ignored") == std::string::npos);
}

TEST_CASE("IMDS refusing the instance token on iam_token marks it cr_token_rejected, but not on the token call")
{
  const std::string body =
    R"({"errors":[{"code":"unauthenticated","message":"Token is expired."}],"status_code":401,"trace":"t"})";
  REQUIRE(parse_error_reply(Call::imds_iam_token, 401, body, "", k_now).cr_token_rejected);
  // The token PUT carries no CR token: nothing of ours to drop.
  REQUIRE_FALSE(parse_error_reply(Call::imds_token, 401, body, "", k_now).cr_token_rejected);

  const std::string not_linked =
    R"({"errors":[{"code":"profile_not_linked","message":"not linked"}],"status_code":400,"trace":"t2"})";
  const auto error = parse_error_reply(Call::imds_iam_token, 400, not_linked, "", k_now);
  REQUIRE(error.code == "profile_not_linked");
  REQUIRE(error.definitive);
  REQUIRE_FALSE(error.cr_token_rejected);
}

TEST_CASE("error bodies that are not the documented JSON still give a typed HTTP error")
{
  for (const std::string& body :
       {std::string(""), std::string("<html>Service Unavailable</html>"), std::string(R"({"errors":[]})"),
        std::string(R"({"errors":"x","trace":5})"), std::string(R"({"errorCode":42})"), std::string("[1,2]"),
        std::string(R"({"errors":[{"code":1}]})"), std::string(R"({"errorCode":"A","errorCode":"B"})"),
        std::string(70000, '{')}) {
    const auto error = parse_error_reply(Call::iam_token, 503, body, "", k_now);
    REQUIRE(error.failure == Failure::http);
    REQUIRE(error.http_status == 503);
    REQUIRE(error.code.empty());
    REQUIRE(error.request_id.empty());
    REQUIRE(error.message == "IAM answered HTTP 503");
    REQUIRE_FALSE(error.definitive);
  }
}

TEST_CASE("a token echoed in an error message is redacted, and long messages are cut")
{
  const auto body = with_token(R"({"errorCode":"BXNIM0407E","errorMessage":"bad token )",
                               R"( given\nsecond line","context":{"requestId":"r"}})");
  const auto error = parse_error_reply(Call::iam_token, 400, body, "", k_now);
  REQUIRE_FALSE(mentions_token(error.message));
  REQUIRE(error.message.find("bad token <redacted> given second line") != std::string::npos);

  const auto long_message = parse_error_reply(
    Call::iam_token, 500, R"({"errorCode":"X","errorMessage":")" + std::string(1000, 'a') + " b\"}", "", k_now);
  REQUIRE(long_message.message.size() < 300);
  REQUIRE(sanitize_message("Profile-0a1b2c3d-1111-2222-3333-444455556666 not found")
          == "Profile-0a1b2c3d-1111-2222-3333-444455556666 not found");
  REQUIRE(sanitize_message(std::string(64, 'A')) == "<redacted>");
  REQUIRE(sanitize_message("caf\xc3\xa9 au lait", 4) == "caf...");
}

TEST_CASE("statuses are definitive or transient as the engine needs")
{
  struct Row
  {
    int status;
    bool definitive;
  };
  for (const auto row : {Row{301, true}, Row{302, true}, Row{307, true}, Row{400, true}, Row{401, true}, Row{403, true}, Row{404, true}, Row{408, false},
                         Row{429, false}, Row{500, false}, Row{501, true}, Row{502, false}, Row{503, false},
                         Row{504, false}}) {
    INFO(row.status);
    REQUIRE(is_definitive_status(row.status) == row.definitive);
    REQUIRE(parse_error_reply(Call::iam_token, row.status, "", "", k_now).definitive == row.definitive);
    REQUIRE(parse_error_reply(Call::imds_iam_token, row.status, "", "", k_now).definitive == row.definitive);
  }
}

TEST_CASE("Retry-After is read as seconds or as an HTTP-date")
{
  using std::chrono::seconds;
  REQUIRE(parse_retry_after("2", k_now) == seconds(2));
  REQUIRE(parse_retry_after(" 120 ", k_now) == seconds(120));
  REQUIRE(parse_retry_after("0", k_now) == seconds(0));
  REQUIRE(parse_retry_after("99999999999999999999", k_now) == seconds(86400));
  // The three HTTP-date forms of RFC 9110, 90 s after k_now.
  REQUIRE(parse_retry_after("Mon, 23 Nov 2026 08:01:30 GMT", k_now) == seconds(90));
  REQUIRE(parse_retry_after("Monday, 23-Nov-26 08:01:30 GMT", k_now) == seconds(90));
  REQUIRE(parse_retry_after("Mon Nov 23 08:01:30 2026", k_now) == seconds(90));
  REQUIRE(parse_retry_after("Thu Nov  5 08:00:00 2026", k_now) == seconds(0)); // in the past
  REQUIRE(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777);
  REQUIRE(parse_http_date("Sun Nov  6 08:49:37 1994") == 784111777);
  REQUIRE(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777);
  REQUIRE(parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT") == 1709164800);

  for (const auto* junk : {"", "  ", "soon", "-5", "+5", "1.5", "5s", "0x10", "Mon, 23 Nov 2026 08:01:30",
                           "Mon, 23 Nov 2026 08:01:30 UTC", "Mon, 31 Nov 2026 08:01:30 GMT",
                           "Mon, 23 Foo 2026 08:01:30 GMT", "Mon, 23 Nov 2026 25:01:30 GMT",
                           "Thu, 29 Feb 2023 00:00:00 GMT", "Mon, 23 Nov 2026 08:01:30 GMT x"}) {
    INFO(junk);
    REQUIRE_FALSE(parse_retry_after(junk, k_now).has_value());
  }
}

TEST_CASE("an error reply carries the Retry-After delay")
{
  const auto busy = parse_error_reply(Call::iam_token, 429, R"({"errorCode":"BXNIM0429E"})", "7", k_now);
  REQUIRE(busy.retry_after == std::chrono::seconds(7));
  REQUIRE_FALSE(busy.definitive);
  const auto dated = parse_error_reply(Call::imds_token, 503, "", "Mon, 23 Nov 2026 08:00:30 GMT", k_now);
  REQUIRE(dated.retry_after == std::chrono::seconds(30));
  REQUIRE_FALSE(parse_error_reply(Call::iam_token, 503, "", "later", k_now).retry_after.has_value());
}

TEST_CASE("form encoding keeps unreserved characters and percent-encodes the rest")
{
  REQUIRE(form_encode("Profile-0a1b_2.c~") == "Profile-0a1b_2.c~");
  REQUIRE(form_encode("crn:v1:bluemix:public:iam-identity::a/123::profile:Profile-1")
          == "crn%3Av1%3Abluemix%3Apublic%3Aiam-identity%3A%3Aa%2F123%3A%3Aprofile%3AProfile-1");
  REQUIRE(form_encode("a b&c=d+e%") == "a%20b%26c%3Dd%2Be%25");
  REQUIRE(form_encode("\xc3\xa9\n") == "%C3%A9%0A");
}

TEST_CASE("the IAM CR-token grant body is the documented form")
{
  const Secret cr_token("header.payload.sig-_");
  REQUIRE(iam_exchange_body(cr_token, {"Profile-1", "", ""})
          == "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Acr-token&cr_token=header.payload.sig-_"
             "&profile_id=Profile-1");
  REQUIRE(iam_exchange_body(cr_token, {"Profile-1", "my profile", "crn:v1:x/y"})
          == "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Acr-token&cr_token=header.payload.sig-_"
             "&profile_id=Profile-1&profile_name=my%20profile&profile_crn=crn%3Av1%3Ax%2Fy");
  REQUIRE(iam_exchange_body(cr_token, {"", "ci-deployer", ""}).ends_with("&profile_name=ci-deployer"));
}

TEST_CASE("the IMDS request bodies and paths are the documented ones")
{
  REQUIRE(imds_token_body(300) == R"({"expires_in":300})");
  REQUIRE(imds_token_body(3600) == R"({"expires_in":3600})");
  REQUIRE(imds_exchange_body({"Profile-1", "", ""}) == R"({"trusted_profile":{"id":"Profile-1"}})");
  REQUIRE(imds_exchange_body({"", "", "crn:v1:a:b"}) == R"({"trusted_profile":{"crn":"crn:v1:a:b"}})");
  REQUIRE(imds_exchange_body({"", "my-\"profile\"", ""})
          == R"({"trusted_profile":{"name":"my-\"profile\""}})");
  REQUIRE(imds_exchange_body({}).empty());

  const auto current = imds_paths("2025-08-26");
  REQUIRE(current.has_value());
  REQUIRE(current->token == "/identity/v1/token");
  REQUIRE(current->iam_token == "/identity/v1/iam_tokens");
  const auto old = imds_paths("2022-03-01");
  REQUIRE(old.has_value());
  REQUIRE(old->token == "/instance_identity/v1/token");
  REQUIRE(old->iam_token == "/instance_identity/v1/iam_token");
  REQUIRE_FALSE(imds_paths("2024-01-01").has_value());
  REQUIRE_FALSE(imds_paths("").has_value());
}

TEST_CASE("the CR-token file is read with trailing whitespace stripped")
{
  TempDir dir;
  const auto path = dir.write("sa-token", k_token + "\n \t\r\n");
  const auto token = read_cr_token_file(path);
  REQUIRE(token.has_value());
  REQUIRE(*token == Secret(k_token));
}

TEST_CASE("the CR-token file is read fresh every time")
{
  TempDir dir;
  const auto path = dir.write("sa-token", "first.token.value");
  REQUIRE(read_cr_token_file(path).value() == Secret("first.token.value"));
  dir.write("sa-token", "second.token.value\n");
  REQUIRE(read_cr_token_file(path).value() == Secret("second.token.value"));
}

TEST_CASE("a missing, empty or oversized CR-token file is a source error naming the path")
{
  TempDir dir;
  const auto missing = dir.file("absent");
  const auto empty = dir.write("empty", " \n\n");
  const auto huge = dir.write("huge", std::string(70000, 'a'));
  for (const auto& [path, says] : {std::pair{missing, "No such file"}, std::pair{empty, "is empty"},
                                   std::pair{huge, "larger than 64 KiB"}}) {
    const auto result = read_cr_token_file(path);
    REQUIRE_FALSE(result.has_value());
    REQUIRE(result.error().failure == Failure::source);
    REQUIRE_FALSE(result.error().definitive);
    REQUIRE(result.error().message.find(path) != std::string::npos);
    REQUIRE(result.error().message.find(says) != std::string::npos);
    REQUIRE(result.error().message.find("aaaa") == std::string::npos);
  }
}

TEST_CASE("without a configured path an unreadable or empty default file does not hide a good one")
{
  TempDir dir;
  const auto first = dir.file("vault-token");
  std::filesystem::create_directory(first); // exists, opens, but read() fails even for root
  const auto second = dir.write("sa-token", "\n");
  const auto third = dir.write("token", "third.token\n");
  const std::vector<std::string_view> candidates{first, second, third};
  REQUIRE(read_cr_token_file("", candidates).value() == Secret("third.token"));

  const std::vector<std::string_view> bad{first, second};
  const auto result = read_cr_token_file("", bad);
  REQUIRE_FALSE(result.has_value());
  REQUIRE(result.error().failure == Failure::source);
  REQUIRE(result.error().message.find(first) != std::string::npos);
  REQUIRE(result.error().message.find(second) != std::string::npos);
}

TEST_CASE("without a configured path the first existing default CR-token file is read")
{
  TempDir dir;
  const auto first = dir.file("vault-token");
  const auto second = dir.write("sa-token", "second.token\n");
  const auto third = dir.write("token", "third.token\n");
  const std::vector<std::string_view> candidates{first, second, third};
  REQUIRE(read_cr_token_file("", candidates).value() == Secret("second.token"));

  const auto a = dir.file("a");
  const auto b = dir.file("b");
  const std::vector<std::string_view> none{a, b};
  const auto result = read_cr_token_file("", none);
  REQUIRE_FALSE(result.has_value());
  REQUIRE(result.error().failure == Failure::source);
  REQUIRE(result.error().message.find(dir.file("a")) != std::string::npos);
  REQUIRE(result.error().message.find(dir.file("b")) != std::string::npos);

  REQUIRE(default_cr_token_paths().size() == 3);
  REQUIRE(default_cr_token_paths()[0] == "/var/run/secrets/tokens/vault-token");
  REQUIRE(default_cr_token_paths()[1] == "/var/run/secrets/tokens/sa-token");
  REQUIRE(default_cr_token_paths()[2]
          == "/var/run/secrets/codeengine.cloud.ibm.com/compute-resource-token/token");
}
