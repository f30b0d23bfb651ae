// Unit tests of iamtoken-sim's pure core: HTTP request assembly, form
// decoding, JWT minting, the IMDS/IAM handlers, faults, counters and the
// command line. Tokens are never printed: assertions on them are booleans.

#include "proto/json.hpp"
#include "sim/jwt.hpp"
#include "sim/options.hpp"
#include "sim/simulator.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

using namespace iamtok::sim;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view k_reader_id = "Profile-00000000-0000-4000-8000-000000000001";
constexpr std::string_view k_deployer_id = "Profile-00000000-0000-4000-8000-000000000002";
constexpr std::string_view k_grant = "urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Acr-token";

// 2026-11-23T08:00:00Z; tests move it forward to expire tokens.
struct FakeClock
{
  std::chrono::system_clock::time_point now =
    std::chrono::sys_days(std::chrono::year(2026) / 11 / 23) + std::chrono::hours(8);
};

std::int64_t unix_seconds(std::chrono::system_clock::time_point t)
{
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

Request make_request(std::string method, std::string target, std::vector<Header> headers = {}, std::string body = {})
{
  Request r;
  r.method = std::move(method);
  r.target = std::move(target);
  const auto q = r.target.find('?');
  r.path = r.target.substr(0, q);
  r.query = q == std::string::npos ? std::string() : r.target.substr(q + 1);
  r.headers = std::move(headers);
  r.body = std::move(body);
  return r;
}

Request imds_token_request(std::string target = "/identity/v1/token?version=2025-08-26",
                           std::string body = R"({"expires_in": 3600})")
{
  return make_request("PUT", std::move(target),
                      {{"Metadata-Flavor", "ibm"}, {"Accept", "application/json"}, {"Content-Type", "application/json"}},
                      std::move(body));
}

Request imds_iam_request(const std::string& identity_token, std::string body,
                         std::string target = "/identity/v1/iam_tokens?version=2025-08-26")
{
  return make_request("POST", std::move(target),
                      {{"Authorization", "Bearer " + identity_token},
                       {"Metadata-Flavor", "ibm"},
                       {"Accept", "application/json"},
                       {"Content-Type", "application/json"}},
                      std::move(body));
}

Request iam_request(std::string form)
{
  return make_request("POST", "/identity/token",
                      {{"Content-Type", "application/x-www-form-urlencoded"}, {"Accept", "application/json"}},
                      std::move(form));
}

// A parsed reply body; element() stays valid while this lives.
struct Body
{
  simdjson::dom::parser parser;
  simdjson::dom::element root;

  explicit Body(const std::string& text)
  {
    auto doc = iamtok::json::parse_document(parser, text);
    REQUIRE(doc.has_value());
    root = *doc;
  }
  std::string string(const char* pointer) const
  {
    std::string_view v;
    REQUIRE(root.at_pointer(pointer).get(v) == simdjson::SUCCESS);
    return std::string(v);
  }
  std::int64_t integer(const char* pointer) const
  {
    std::int64_t v = 0;
    REQUIRE(root.at_pointer(pointer).get(v) == simdjson::SUCCESS);
    return v;
  }
  bool has(const char* pointer) const { return root.at_pointer(pointer).error() == simdjson::SUCCESS; }
};

// IMDS errors[0].code or IAM errorCode of an error reply.
std::string error_code(const Response& response)
{
  Body body(response.body);
  return body.has("/errorCode") ? body.string("/errorCode") : body.string("/errors/0/code");
}

// The reply IAM gives a CR token it does not accept: 401 BXNIM0407E, with
// `details` as errorDetails.
void check_cr_token_rejected(const Response& response, std::string_view details)
{
  CHECK(response.status == 401);
  CHECK(error_code(response) == "BXNIM0407E");
  CHECK(Body(response.body).string("/errorDetails") == details);
}

struct Fixture
{
  FakeClock clock;
  Simulator sim;

  explicit Fixture(SimConfig config = {})
    : sim(std::move(config), [this] { return clock.now; })
  {
  }

  Response respond(const Request& request)
  {
    const Action action = sim.handle(request);
    REQUIRE(action.kind == Action::Kind::respond);
    return action.response;
  }

  // An instance identity token from the emulated IMDS.
  std::string identity_token(std::string body = R"({"expires_in": 300})")
  {
    const auto response = respond(imds_token_request("/identity/v1/token?version=2025-08-26", std::move(body)));
    REQUIRE(response.status == 200);
    return Body(response.body).string("/access_token");
  }

  std::string iam_form(const std::string& cr_token, const std::string& profile_params)
  {
    return fmt::format("grant_type={}&cr_token={}&{}", k_grant, cr_token, profile_params);
  }

  // The profile_id claim of an access token in a 200 reply.
  std::string access_token_profile(const Response& response)
  {
    REQUIRE(response.status == 200);
    const auto token = Body(response.body).string("/access_token");
    const auto claims = verify_token(TokenKind::access, token, unix_seconds(clock.now));
    REQUIRE(claims.has_value());
    return claims->profile_id;
  }

  void post_fault(const std::string& json)
  {
    const auto response = respond(make_request("POST", "/sim/faults", {{"Content-Type", "application/json"}}, json));
    REQUIRE(response.status == 204);
  }
};

} // namespace

// ---------------------------------------------------------------------------
// JWT

TEST_CASE("base64url round-trips every byte length without padding", "[sim][jwt]")
{
  std::string data;
  for (int i = 0; i < 40; ++i) {
    const auto encoded = base64url_encode(data);
    CHECK(encoded.find('=') == std::string::npos);
    CHECK(encoded.find('+') == std::string::npos);
    CHECK(encoded.find('/') == std::string::npos);
    const auto decoded = base64url_decode(encoded);
    REQUIRE(decoded.has_value());
    CHECK(*decoded == data);
    data.push_back(static_cast<char>(0xF0 + i));
  }
  CHECK(base64url_encode("hello") == "aGVsbG8");
}

TEST_CASE("base64url decoding rejects padding, foreign characters and impossible lengths", "[sim][jwt]")
{
  CHECK_FALSE(base64url_decode("aGVsbG8=").has_value());
  CHECK_FALSE(base64url_decode("aGV+bG8").has_value());
  CHECK_FALSE(base64url_decode("aGVsb").has_value());
}

TEST_CASE("a minted token verifies for its kind only, and not once expired or tampered with", "[sim][jwt]")
{
  const auto token = mint_token(TokenKind::access,
                                R"({"sub":"Profile-1","jti":"j1","iat":100,"exp":200,"profile_id":"Profile-1"})");
  const std::string text(token.expose());
  CHECK(std::count(text.begin(), text.end(), '.') == 2);

  const auto ok = verify_token(TokenKind::access, text, 150);
  REQUIRE(ok.has_value());
  CHECK(ok->sub == "Profile-1");
  CHECK(ok->iat == 100);
  CHECK(ok->exp == 200);
  CHECK(ok->jti == "j1");
  CHECK(ok->profile_id == "Profile-1");

  CHECK(verify_token(TokenKind::identity, text, 150).error() == TokenError::bad_signature);
  CHECK(verify_token(TokenKind::access, text, 200).error() == TokenError::expired);

  std::string tampered = text;
  tampered[tampered.find('.') + 3] ^= 1;
  CHECK_FALSE(verify_token(TokenKind::access, tampered, 150).has_value());
  CHECK(verify_token(TokenKind::access, "a.b", 150).error() == TokenError::malformed);
  CHECK(verify_token(TokenKind::access, "a.b.c.d", 150).error() == TokenError::malformed);
}

// ---------------------------------------------------------------------------
// Form decoding

// ---------------------------------------------------------------------------
// IMDS: instance identity token

TEST_CASE("IMDS issues an identity token on both API generations", "[sim][imds]")
{
  Fixture f;
  for (const std::string target :
       {"/identity/v1/token?version=2025-08-26", "/instance_identity/v1/token?version=2022-03-01",
        "/identity/v1/token?version=2022-03-01"}) {
    const auto response = f.respond(imds_token_request(target));
    REQUIRE(response.status == 200);
    Body body(response.body);
    CHECK(body.integer("/expires_in") == 3600);
    CHECK(body.string("/created_at") == "2026-11-23T08:00:00.000Z");
    CHECK(body.string("/expires_at") == "2026-11-23T09:00:00.000Z");
    const auto claims = verify_token(TokenKind::identity, body.string("/access_token"), unix_seconds(f.clock.now));
    REQUIRE(claims.has_value());
    CHECK(claims->exp - claims->iat == 3600);
    CHECK(claims->sub.starts_with("crn:v1:bluemix:public:is:"));
  }
  CHECK(f.sim.stats().imds_token == 3);
}

TEST_CASE("IMDS defaults the identity token lifetime to 300 s for {} or no body", "[sim][imds]")
{
  Fixture f;
  for (const std::string body : {"{}", ""}) {
    const auto response = f.respond(imds_token_request("/identity/v1/token?version=2025-08-26", body));
    REQUIRE(response.status == 200);
    CHECK(Body(response.body).integer("/expires_in") == 300);
  }
}

TEST_CASE("IMDS identity tokens carry unique ids", "[sim][imds]")
{
  Fixture f;
  const auto a = verify_token(TokenKind::identity, f.identity_token(), unix_seconds(f.clock.now));
  const auto b = verify_token(TokenKind::identity, f.identity_token(), unix_seconds(f.clock.now));
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK(a->jti != b->jti);
}

TEST_CASE("IMDS rejects bad token requests with the documented status and code", "[sim][imds]")
{
  Fixture f;
  struct Case
  {
    Request request;
    int status;
    std::string code;
  };
  auto no_flavor = imds_token_request();
  no_flavor.headers.erase(no_flavor.headers.begin());
  auto wrong_flavor = imds_token_request();
  wrong_flavor.headers[0].value = "Google";
  auto get = imds_token_request();
  get.method = "GET";

  const std::vector<Case> cases{
    {imds_token_request("/instance_identity/v1/token?version=2025-08-26"), 404, "not_found"},
    {imds_token_request("/identity/v1/token"), 400, "missing_field"},
    {imds_token_request("/identity/v1/token?version=latest"), 400, "invalid_value"},
    {imds_token_request("/identity/v1/token?version=2025-02-30"), 400, "invalid_value"},
    {imds_token_request("/identity/v1/token?version=2020-01-01"), 400, "invalid_version_range"},
    {imds_token_request("/identity/v1/token?version=2022-02-28"), 400, "invalid_version_range"},
    {imds_token_request("/identity/v1/token?version=2026-11-24"), 400, "invalid_value"},
    {imds_token_request("/identity/v1/token?version=%zz"), 400, "invalid_request"},
    {no_flavor, 400, "missing_value"},
    {wrong_flavor, 400, "invalid_value"},
    {get, 405, "method_not_allowed"},
    {imds_token_request("/identity/v1/token?version=2025-08-26", R"({"expires_in": 4})"), 400, "invalid_value"},
    {imds_token_request("/identity/v1/token?version=2025-08-26", R"({"expires_in": 3601})"), 400, "invalid_value"},
    {imds_token_request("/identity/v1/token?version=2025-08-26", R"({"expires_in": "300"})"), 400, "invalid_value"},
    {imds_token_request("/identity/v1/token?version=2025-08-26", R"({"expires_in": 30.5})"), 400, "invalid_value"},
    {imds_token_request("/identity/v1/token?version=2025-08-26", R"({"lifetime": 300})"), 400, "unknown_field"},
    {imds_token_request("/identity/v1/token?version=2025-08-26", R"({"expires_in": 300)"), 400, "invalid_request"},
    {imds_token_request("/identity/v1/token?version=2025-08-26", R"([300])"), 400, "invalid_request"},
  };
  for (const auto& c : cases) {
    INFO(c.request.method << " " << c.request.target << " " << c.request.body);
    const auto response = f.respond(c.request);
    CHECK(response.status == c.status);
    CHECK(error_code(response) == c.code);
    Body body(response.body);
    CHECK(body.integer("/status_code") == c.status);
    CHECK(body.string("/trace").size() == 36);
  }
  CHECK(f.sim.stats().imds_token == cases.size());
}

TEST_CASE("IMDS names the offending field and value of an out-of-range expires_in", "[sim][imds]")
{
  Fixture f;
  const auto response =
    f.respond(imds_token_request("/identity/v1/token?version=2025-08-26", R"({"expires_in": 7200})"));
  REQUIRE(response.status == 400);
  Body body(response.body);
  CHECK(body.string("/errors/0/message") == "The `expires_in` field must not exceed `3600`.");
  CHECK(body.string("/errors/0/target/name") == "expires_in");
  CHECK(body.string("/errors/0/target/type") == "field");
  CHECK(body.string("/errors/0/target/value") == "7200");
}

// ---------------------------------------------------------------------------
// IMDS: IAM token for a trusted profile

TEST_CASE("IMDS iam_token issues an access token for a profile by id, crn or name", "[sim][imds]")
{
  Fixture f;
  const auto token = f.identity_token();
  const auto crn = profile_crn(k_deployer_id);
  const auto by_id = f.respond(imds_iam_request(token, fmt::format(R"({{"trusted_profile": {{"id": "{}"}}}})", k_reader_id)));
  const auto by_crn = f.respond(imds_iam_request(token, fmt::format(R"({{"trusted_profile": {{"crn": "{}"}}}})", crn)));
  const auto by_name = f.respond(imds_iam_request(token, R"({"trusted_profile": {"name": "reader"}})",
                                                  "/instance_identity/v1/iam_token?version=2022-03-01"));
  CHECK(f.access_token_profile(by_id) == k_reader_id);
  CHECK(f.access_token_profile(by_crn) == k_deployer_id);
  CHECK(f.access_token_profile(by_name) == k_reader_id);
  Body body(by_id.body);
  CHECK(body.integer("/expires_in") == 3600);
  CHECK(body.string("/created_at") == "2026-11-23T08:00:00.000Z");
  CHECK(body.string("/expires_at") == "2026-11-23T09:00:00.000Z");
  CHECK(f.sim.stats().imds_iam_token == 3);
  CHECK(f.sim.stats().by_profile.at(std::string(k_reader_id)) == 2);
  CHECK(f.sim.stats().by_profile.at(std::string(k_deployer_id)) == 1);
}

TEST_CASE("IMDS iam_token accepts what go-sdk-core sends: no Metadata-Flavor, old version on the new path", "[sim][imds]")
{
  Fixture f;
  auto request = imds_iam_request(f.identity_token(), fmt::format(R"({{"trusted_profile": {{"id": "{}"}}}})", k_reader_id),
                                  "/identity/v1/iam_tokens?version=2022-03-01");
  request.headers.erase(request.headers.begin() + 1);
  REQUIRE(request.header("Metadata-Flavor") == nullptr);
  CHECK(f.access_token_profile(f.respond(request)) == k_reader_id);
}

TEST_CASE("IMDS takes a JSON body whatever its Content-Type says, as the real service does", "[sim][imds]")
{
  Fixture f;
  for (const std::string type : {"text/plain", "application/x-www-form-urlencoded"}) {
    auto request = imds_token_request("/identity/v1/token?version=2025-08-26", R"({"expires_in": 600})");
    request.headers[2].value = type;
    const auto response = f.respond(request);
    INFO(type);
    CHECK(response.status == 200);
  }
  // Still JSON: a form body is not.
  auto form = imds_token_request("/identity/v1/token?version=2025-08-26", "expires_in=600");
  form.headers[2].value = "application/x-www-form-urlencoded";
  CHECK(f.respond(form).status == 400);
}

TEST_CASE("IMDS and IAM replies carry the request id in X-Request-Id and Transaction-Id", "[sim]")
{
  Fixture f;
  const auto header = [](const Response& r, std::string_view name) {
    for (const auto& h : r.headers) {
      if (h.name == name) {
        return h.value;
      }
    }
    return std::string();
  };
  const auto bad = f.respond(imds_token_request("/identity/v1/token?version=2020-01-01"));
  REQUIRE(bad.status == 400);
  REQUIRE(error_code(bad) == "invalid_version_range");
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  REQUIRE(parser.parse(bad.body).get(root) == simdjson::SUCCESS);
  std::string_view trace;
  REQUIRE(root["trace"].get(trace) == simdjson::SUCCESS);
  CHECK(header(bad, "X-Request-Id") == trace);
  CHECK_FALSE(header(f.respond(imds_token_request()), "X-Request-Id").empty());
}

TEST_CASE("IMDS iam_token without a profile uses the default profile, and fails without one", "[sim][imds]")
{
  SECTION("no default profile linked")
  {
    Fixture f;
    const auto token = f.identity_token();
    for (const std::string body : {"", "{}"}) {
      const auto response = f.respond(imds_iam_request(token, body));
      CHECK(response.status == 400);
      CHECK(error_code(response) == "missing_field"); // as IMDS answers without a default
    }
  }
  SECTION("a default profile linked")
  {
    SimConfig config;
    config.default_profile_id = std::string(k_deployer_id);
    Fixture f(config);
    CHECK(f.access_token_profile(f.respond(imds_iam_request(f.identity_token(), ""))) == k_deployer_id);
  }
}

TEST_CASE("IMDS iam_token rejects missing, invalid, expired and access tokens with 401", "[sim][imds]")
{
  Fixture f;
  const std::string body = R"({"trusted_profile": {"name": "reader"}})";
  const auto identity = f.identity_token(R"({"expires_in": 60})");

  auto missing = imds_iam_request(identity, body);
  missing.headers.erase(missing.headers.begin());
  auto basic = imds_iam_request(identity, body);
  basic.headers[0].value = "Basic dXNlcjpwYXNz";
  const auto access = Body(f.respond(imds_iam_request(identity, body)).body).string("/access_token");

  for (const auto& request : {missing, basic, imds_iam_request("not-a-token", body), imds_iam_request(access, body)}) {
    const auto response = f.respond(request);
    CHECK(response.status == 401);
    CHECK(error_code(response) == "unauthenticated");
  }
  CHECK(f.respond(imds_iam_request(identity, body)).status == 200);
  f.clock.now += 60s;
  const auto expired = f.respond(imds_iam_request(identity, body));
  CHECK(expired.status == 401);
  CHECK(error_code(expired) == "unauthenticated");
}

TEST_CASE("IMDS iam_token rejects unknown profiles and malformed trusted_profile objects", "[sim][imds]")
{
  Fixture f;
  const auto token = f.identity_token();
  const auto unknown = f.respond(imds_iam_request(token, R"({"trusted_profile": {"id": "Profile-unknown"}})"));
  CHECK(unknown.status == 400);
  CHECK(error_code(unknown) == "profile_not_linked");

  for (const std::string body :
       {R"({"trusted_profile": "Profile-00000000-0000-4000-8000-000000000001"})", R"({"trusted_profile": {}})",
        R"({"trusted_profile": {"id": "a", "name": "reader"}})", R"({"trusted_profile": {"uuid": "a"}})",
        R"({"trusted_profile": {"id": ""}})", R"({"trusted_profile": {"id": 7}})"}) {
    INFO(body);
    const auto response = f.respond(imds_iam_request(token, body));
    CHECK(response.status == 400);
    CHECK(error_code(response) == "invalid_value");
  }
  const auto extra = f.respond(imds_iam_request(token, R"({"profile": {"id": "a"}})"));
  CHECK(error_code(extra) == "unknown_field");
  auto flavored = imds_iam_request(token, R"({"trusted_profile": {"name": "reader"}})");
  flavored.headers[1].value = "aws";
  CHECK(error_code(f.respond(flavored)) == "invalid_value");
  CHECK(f.sim.stats().by_profile.at(std::string(k_reader_id)) == 0);
}

// ---------------------------------------------------------------------------
// IAM: CR-token grant

TEST_CASE("IAM issues an access token for a profile by id, name, crn or several that agree", "[sim][iam]")
{
  Fixture f;
  const auto token = f.identity_token();
  const auto crn = "crn%3Av1%3Abluemix%3Apublic%3Aiam-identity%3A%3Aa%2F0123456789abcdef0123456789abcdef%3A%3Aprofile%3A"
                   "Profile-00000000-0000-4000-8000-000000000002";
  CHECK(f.access_token_profile(f.respond(iam_request(f.iam_form(token, fmt::format("profile_id={}", k_reader_id))))) ==
        k_reader_id);
  CHECK(f.access_token_profile(f.respond(iam_request(f.iam_form(token, "profile_name=deployer")))) == k_deployer_id);
  CHECK(f.access_token_profile(f.respond(iam_request(f.iam_form(token, fmt::format("profile_crn={}", crn))))) ==
        k_deployer_id);
  CHECK(f.access_token_profile(f.respond(iam_request(
          f.iam_form(token, fmt::format("profile_id={}&profile_name=deployer&profile_crn={}&scope=ibm", k_deployer_id, crn))))) ==
        k_deployer_id);
  CHECK(f.sim.stats().iam == 4);
  CHECK(f.sim.stats().by_profile.at(std::string(k_deployer_id)) == 3);
}

TEST_CASE("IAM replies with the documented token fields", "[sim][iam]")
{
  SimConfig config;
  config.iam_lifetime = 20s;
  Fixture f(config);
  const auto response = f.respond(iam_request(f.iam_form(f.identity_token(), "profile_name=reader")));
  REQUIRE(response.status == 200);
  Body body(response.body);
  CHECK_FALSE(body.string("/access_token").empty());
  CHECK(body.string("/refresh_token") == "not_supported");
  CHECK(body.string("/token_type") == "Bearer");
  CHECK(body.integer("/expires_in") == 20);
  CHECK(body.integer("/expiration") == unix_seconds(f.clock.now) + 20);
  CHECK(body.string("/scope") == "ibm openid");
  const auto claims = verify_token(TokenKind::access, body.string("/access_token"), unix_seconds(f.clock.now));
  REQUIRE(claims.has_value());
  CHECK(claims->exp - claims->iat == 20);
  CHECK(claims->sub == k_reader_id);
}

TEST_CASE("IAM accepts a Content-Type with parameters and a Basic Authorization header", "[sim][iam]")
{
  Fixture f;
  auto request = iam_request(f.iam_form(f.identity_token(), "profile_name=reader"));
  request.headers[0].value = "application/x-www-form-urlencoded; charset=utf-8";
  request.headers.push_back({"Authorization", "Basic Yng6Yng="});
  CHECK(f.respond(request).status == 200);
}

TEST_CASE("IAM rejects bad CR-token grants with the documented status and errorCode", "[sim][iam]")
{
  Fixture f;
  const auto token = f.identity_token();
  auto json_type = iam_request(f.iam_form(token, "profile_name=reader"));
  json_type.headers[0].value = "application/json";
  auto get = iam_request("");
  get.method = "GET";
  struct Case
  {
    Request request;
    int status;
    std::string code;
  };
  const std::vector<Case> cases{
    {json_type, 400, "BXNIM0102E"},
    {get, 405, "BXNIM0100E"},
    {iam_request("grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey=x&profile_name=reader"), 400,
     "BXNIM0103E"},
    {iam_request(fmt::format("cr_token={}&profile_name=reader", token)), 400, "BXNIM0109E"},
    {iam_request(fmt::format("grant_type={}&profile_name=reader", k_grant)), 400, "BXNIM0109E"},
    {iam_request(fmt::format("grant_type={}&cr_token=&profile_name=reader", k_grant)), 400, "BXNIM0109E"},
    {iam_request(f.iam_form(token, "scope=ibm")), 400, "BXNIM0109E"},
    {iam_request(f.iam_form(token, "profile_name=")), 400, "BXNIM0109E"},
    {iam_request(f.iam_form(token, "profile_name=reader&profile_name=reader")), 400, "BXNIM0101E"},
    {iam_request(f.iam_form(token, "profile_name=read%zzer")), 400, "BXNIM0101E"},
    {iam_request(f.iam_form("not.a.token", "profile_name=reader")), 401, "BXNIM0407E"},
    {iam_request(f.iam_form(token, "profile_name=nobody")), 400, "BXNIM0398E"},
    {iam_request(f.iam_form(token, "profile_id=Profile-unknown&profile_name=reader")), 400, "BXNIM0398E"},
  };
  for (const auto& c : cases) {
    INFO(c.request.method << " case " << (&c - cases.data()));
    const auto response = f.respond(c.request);
    CHECK(response.status == c.status);
    CHECK(error_code(response) == c.code);
    Body body(response.body);
    CHECK(body.string("/context/requestId").size() == 36);
    REQUIRE(response.headers.size() >= 1);
  }
  CHECK(f.sim.stats().iam == cases.size());
  CHECK(f.sim.stats().by_profile.at(std::string(k_reader_id)) == 0);
}

TEST_CASE("IAM rejects a profile id and name that name different profiles", "[sim][iam]")
{
  Fixture f;
  const auto response =
    f.respond(iam_request(f.iam_form(f.identity_token(), fmt::format("profile_id={}&profile_name=deployer", k_reader_id))));
  CHECK(response.status == 400);
  CHECK(error_code(response) == "BXNIM0398E");
  Body body(response.body);
  CHECK(body.string("/errorMessage") == "Selected trusted profile not eligible.");
  CHECK(body.string("/errorDetails") == "profile_id and profile_name name different trusted profiles");
}

TEST_CASE("IAM rejects an expired identity token as CR token", "[sim][iam]")
{
  Fixture f;
  const auto token = f.identity_token(R"({"expires_in": 5})");
  f.clock.now += 4s;
  CHECK(f.respond(iam_request(f.iam_form(token, "profile_name=reader"))).status == 200);
  f.clock.now += 1s;
  check_cr_token_rejected(f.respond(iam_request(f.iam_form(token, "profile_name=reader"))), "token expired");
}

TEST_CASE("IAM rejects its own access token as CR token", "[sim][iam]")
{
  Fixture f;
  const auto first = f.respond(iam_request(f.iam_form(f.identity_token(), "profile_name=reader")));
  const auto access = Body(first.body).string("/access_token");
  check_cr_token_rejected(f.respond(iam_request(f.iam_form(access, "profile_name=reader"))),
                          "an IAM access token is not a CR token");
}

TEST_CASE("error replies never echo the CR token", "[sim][iam]")
{
  Fixture f;
  const auto token = f.identity_token();
  const auto response = f.respond(iam_request(f.iam_form(token, "profile_name=nobody")));
  CHECK(response.status == 400);
  CHECK(response.body.find(token) == std::string::npos);
}

// ---------------------------------------------------------------------------
// Faults and counters

TEST_CASE("a status fault answers with the target's error body and Retry-After, count times", "[sim][faults]")
{
  Fixture f;
  f.post_fault(R"({"target":"iam","mode":"status","status":503,"retry_after_s":2,"count":2})");
  const auto token = f.identity_token(); // IMDS is not affected
  for (int i = 0; i < 2; ++i) {
    const auto response = f.respond(iam_request(f.iam_form(token, "profile_name=reader")));
    CHECK(response.status == 503);
    CHECK(error_code(response) == "BXNIM0503E");
    REQUIRE(std::any_of(response.headers.begin(), response.headers.end(),
                        [](const Header& h) { return h.name == "Retry-After" && h.value == "2"; }));
  }
  CHECK(f.respond(iam_request(f.iam_form(token, "profile_name=reader"))).status == 200);
  CHECK(f.sim.stats().iam == 3);
}

TEST_CASE("a status fault on IMDS answers with the IMDS error body until cleared", "[sim][faults]")
{
  Fixture f;
  f.post_fault(R"({"target":"imds_token","mode":"status","status":500})");
  for (int i = 0; i < 3; ++i) {
    const auto response = f.respond(imds_token_request());
    CHECK(response.status == 500);
    CHECK(error_code(response) == "service_error");
    CHECK(Body(response.body).integer("/status_code") == 500);
  }
  CHECK(f.respond(make_request("DELETE", "/sim/faults")).status == 204);
  CHECK(f.respond(imds_token_request()).status == 200);
  CHECK(f.sim.stats().imds_token == 4);
}

TEST_CASE("hang, reset, garbage and slow faults become the matching actions", "[sim][faults]")
{
  SimConfig config;
  config.latency = 30ms;
  Fixture f(config);
  f.post_fault(R"({"target":"imds_token","mode":"hang","count":1})");
  CHECK(f.sim.handle(imds_token_request()).kind == Action::Kind::hang);
  f.post_fault(R"({"target":"imds_token","mode":"reset","count":1})");
  CHECK(f.sim.handle(imds_token_request()).kind == Action::Kind::reset);
  f.post_fault(R"({"target":"imds_token","mode":"garbage","count":1})");
  const auto garbage = f.sim.handle(imds_token_request());
  CHECK(garbage.kind == Action::Kind::respond);
  CHECK(garbage.response.status == 200);
  simdjson::dom::parser parser;
  CHECK_FALSE(iamtok::json::parse_document(parser, garbage.response.body).has_value());
  f.post_fault(R"({"target":"imds_token","mode":"slow","delay_ms":500,"count":1})");
  const auto slow = f.sim.handle(imds_token_request());
  CHECK(slow.delay == 530ms);
  CHECK(slow.response.status == 200);
  const auto normal = f.sim.handle(imds_token_request());
  CHECK(normal.delay == 30ms);
  CHECK(f.sim.stats().imds_token == 5);
}

TEST_CASE("a fault for all targets applies to every emulated endpoint but not to control", "[sim][faults]")
{
  Fixture f;
  const auto token = f.identity_token();
  f.post_fault(R"({"target":"all","mode":"status","status":429})");
  CHECK(f.respond(imds_token_request()).status == 429);
  CHECK(f.respond(imds_iam_request(token, R"({"trusted_profile":{"name":"reader"}})")).status == 429);
  CHECK(f.respond(iam_request(f.iam_form(token, "profile_name=reader"))).status == 429);
  CHECK(f.respond(make_request("GET", "/sim/stats")).status == 200);
  SECTION("a target's own rule wins over the rule for all")
  {
    f.post_fault(R"({"target":"iam","mode":"status","status":502})");
    CHECK(f.respond(iam_request(f.iam_form(token, "profile_name=reader"))).status == 502);
    CHECK(f.respond(imds_token_request()).status == 429);
  }
  SECTION("a new rule for a target replaces the old one")
  {
    f.post_fault(R"({"target":"all","mode":"status","status":500,"count":1})");
    CHECK(f.respond(imds_token_request()).status == 500);
    CHECK(f.respond(imds_token_request()).status == 200);
  }
}

TEST_CASE("stats report per-endpoint and per-profile counts and reset zeroes them", "[sim][stats]")
{
  Fixture f;
  f.sim.note_connection();
  const auto token = f.identity_token();
  CHECK(f.respond(iam_request(f.iam_form(token, "profile_name=reader"))).status == 200);
  CHECK(f.respond(make_request("GET", "/nowhere")).status == 404);
  const auto stats = f.respond(make_request("GET", "/sim/stats"));
  REQUIRE(stats.status == 200);
  Body body(stats.body);
  CHECK(body.integer("/imds_token") == 1);
  CHECK(body.integer("/imds_iam_token") == 0);
  CHECK(body.integer("/iam") == 1);
  CHECK(body.integer("/connections") == 1);
  CHECK(body.integer("/by_profile/Profile-00000000-0000-4000-8000-000000000001") == 1);
  CHECK(body.integer("/by_profile/Profile-00000000-0000-4000-8000-000000000002") == 0);

  CHECK(f.respond(make_request("POST", "/sim/reset")).status == 204);
  Body after(f.respond(make_request("GET", "/sim/stats")).body);
  CHECK(after.integer("/imds_token") == 0);
  CHECK(after.integer("/iam") == 0);
  CHECK(after.integer("/connections") == 0);
  CHECK(after.integer("/by_profile/Profile-00000000-0000-4000-8000-000000000001") == 0);
}

TEST_CASE("control endpoints validate fault rules and answer loopback clients only", "[sim][control]")
{
  Fixture f;
  for (const std::string json :
       {R"({"target":"iam"})", R"({"mode":"hang"})", R"({"target":"dns","mode":"hang"})",
        R"({"target":"iam","mode":"explode"})", R"({"target":"iam","mode":"status","status":200})",
        R"({"target":"iam","mode":"hang","count":0})", R"({"target":"iam","mode":"slow","delay_ms":-1})",
        R"({"target":"iam","mode":"hang","colour":"red"})", R"({"target":"iam","mode":"hang","target":"iam"})",
        R"(not json)"}) {
    INFO(json);
    CHECK(f.respond(make_request("POST", "/sim/faults", {}, json)).status == 400);
  }
  CHECK(f.respond(make_request("GET", "/sim/faults")).status == 405);
  CHECK(f.respond(make_request("GET", "/sim/nothing")).status == 404);
  auto remote = make_request("GET", "/sim/stats");
  remote.from_loopback = false;
  CHECK(f.respond(remote).status == 403);
}

// ---------------------------------------------------------------------------
// Command line

TEST_CASE("a --profile value splits on its first two colons only", "[sim][options]")
{
  const auto full = parse_profile("Profile-1:ci-deployer:crn:v1:bluemix:public:iam-identity::a/x::profile:Profile-1");
  REQUIRE(full.has_value());
  CHECK(full->id == "Profile-1");
  CHECK(full->name == "ci-deployer");
  CHECK(full->crn == "crn:v1:bluemix:public:iam-identity::a/x::profile:Profile-1");
  const auto id_only = parse_profile("Profile-2");
  REQUIRE(id_only.has_value());
  CHECK(id_only->name.empty());
  CHECK(id_only->crn == profile_crn("Profile-2"));
  const auto no_name = parse_profile("Profile-3::crn:v1:x");
  REQUIRE(no_name.has_value());
  CHECK(no_name->name.empty());
  CHECK(no_name->crn == "crn:v1:x");
  CHECK_FALSE(parse_profile(":name").has_value());
}

TEST_CASE("the command line has documented defaults and refuses non-loopback listeners", "[sim][options]")
{
  const auto parse = [](std::vector<std::string_view> args) { return parse_options(args); };
  const auto defaults = parse({});
  REQUIRE(defaults.has_value());
  CHECK(defaults->listen_host == "127.0.0.1");
  CHECK(defaults->listen_port == 0);
  REQUIRE(defaults->sim.profiles.size() == 2);
  CHECK(defaults->sim.profiles[0].id == k_reader_id);
  CHECK(defaults->sim.profiles[0].name == "reader");
  CHECK(defaults->sim.profiles[1].name == "deployer");
  CHECK(defaults->sim.iam_lifetime == 3600s);

  const auto custom = parse({"--listen", "[::1]:8080", "--profile", "P-1:one", "--profile", "P-2", "--iam-lifetime",
                             "5", "--latency-ms", "50", "--seed", "7", "--port-file", "/tmp/x", "--default-profile",
                             "one", "--quiet"});
  REQUIRE(custom.has_value());
  CHECK(custom->listen_host == "::1");
  CHECK(custom->listen_port == 8080);
  REQUIRE(custom->sim.profiles.size() == 2);
  CHECK(custom->sim.default_profile_id == "P-1");
  CHECK(custom->sim.iam_lifetime == 5s);
  CHECK(custom->sim.latency == 50ms);
  CHECK(custom->sim.seed == 7);
  CHECK(custom->port_file == "/tmp/x");
  CHECK(custom->quiet);

  CHECK(parse({"--listen", "127.0.0.2:0"}).has_value());
  CHECK(parse({"--listen", "localhost:0"}).has_value());
  CHECK_FALSE(parse({"--listen", "0.0.0.0:0"}).has_value());
  CHECK_FALSE(parse({"--listen", "10.1.2.3:80"}).has_value());
  CHECK_FALSE(parse({"--listen", "127.0.0.1:70000"}).has_value());
  CHECK_FALSE(parse({"--listen", "127.0.0.1"}).has_value());
  CHECK_FALSE(parse({"--profile", "P-1:a", "--profile", "P-1:b"}).has_value());
  CHECK_FALSE(parse({"--profile", "P-1:a", "--profile", "P-2:a"}).has_value());
  CHECK_FALSE(parse({"--default-profile", "nobody"}).has_value());
  CHECK_FALSE(parse({"--iam-lifetime", "0"}).has_value());
  CHECK_FALSE(parse({"--latency-ms"}).has_value());
  CHECK_FALSE(parse({"--bogus"}).has_value());
  CHECK(parse({"--help"})->help);
  CHECK(usage().find("Profile-00000000-0000-4000-8000-000000000002  deployer") != std::string::npos);
}

// ---------------------------------------------------------------------------
// Faults that follow what sits in front of the real services

TEST_CASE("the redirect, html and short_jwt faults answer as documented", "[sim][faults]")
{
  Fixture f;
  const auto token = f.identity_token();
  const auto header = [](const Response& r, std::string_view name) {
    for (const auto& h : r.headers) {
      if (h.name == name) {
        return h.value;
      }
    }
    return std::string();
  };
  const auto by_id = fmt::format(R"({{"trusted_profile": {{"id": "{}"}}}})", k_reader_id);

  FaultRule redirect;
  redirect.mode = FaultMode::redirect;
  redirect.status = 307;
  redirect.location = "https://elsewhere.invalid/x";
  redirect.remaining = 1;
  f.sim.set_fault(Target::imds_iam_token, redirect);
  const auto moved = f.respond(imds_iam_request(token, by_id));
  CHECK(moved.status == 307);
  CHECK(header(moved, "Location") == "https://elsewhere.invalid/x");

  FaultRule html;
  html.mode = FaultMode::html;
  html.status = 502;
  html.remaining = 1;
  f.sim.set_fault(Target::imds_iam_token, html);
  const auto page = f.respond(imds_iam_request(token, by_id));
  CHECK(page.status == 502);
  CHECK(page.content_type == "text/html");
  CHECK(page.body.starts_with("<html>"));
  CHECK_FALSE(header(page, "X-Request-Id").empty());

  FaultRule short_jwt;
  short_jwt.mode = FaultMode::short_jwt;
  short_jwt.jwt_lifetime = std::chrono::seconds(5);
  short_jwt.remaining = 1;
  f.sim.set_fault(Target::imds_iam_token, short_jwt);
  const auto reply = f.respond(imds_iam_request(token, by_id));
  REQUIRE(reply.status == 200);
  Body body(reply.body);
  CHECK(body.integer("/expires_in") == 3600);
  const auto claims = verify_token(TokenKind::access, body.string("/access_token"), unix_seconds(f.clock.now));
  REQUIRE(claims.has_value());
  CHECK(claims->exp - claims->iat == 5);
  // Only the one request: the next token is whole again.
  Body next(f.respond(imds_iam_request(token, by_id)).body);
  const auto whole = verify_token(TokenKind::access, next.string("/access_token"), unix_seconds(f.clock.now));
  REQUIRE(whole.has_value());
  CHECK(whole->exp - whole->iat == 3600);
}

// ---------------------------------------------------------------------------
// Reply bytes (the daemon's parsers and the SDK tests read them as they are)

TEST_CASE("error, stats and control replies keep their exact bytes", "[sim]")
{
  // The first request id of seed 1; each reply comes from a fresh simulator.
  const std::string trace = "2245bd5f-bb68-4f68-a2eb-92502318fa4e";
  CHECK(Fixture().respond(make_request("GET", "/nope")).body
        == R"({"errors":[{"code":"not_found","message":"The requested resource was not found.",)"
           R"("more_info":"https://cloud.ibm.com/docs/vpc?topic=vpc-imd-about"}],"status_code":404,"trace":")"
             + trace + "\"}");
  CHECK(Fixture().respond(imds_token_request("/identity/v1/token?version=2021-01-01", "")).body
        == R"({"errors":[{"code":"invalid_version_range","message":"The `version` value cannot be before `2022-03-01`.",)"
           R"("more_info":"https://cloud.ibm.com/docs/vpc?topic=vpc-imd-about",)"
           R"("target":{"name":"version","type":"parameter","value":"2021-01-01"}}],"status_code":400,"trace":")"
             + trace + "\"}");
  CHECK(Fixture().respond(make_request("GET", "/identity/token")).body
        == R"({"errorCode":"BXNIM0100E","errorMessage":"Method not allowed.","errorDetails":"use POST",)"
           R"("context":{"requestId":")"
             + trace
             + R"(","requestType":"incoming.OIDC_Token","instanceId":"iamtoken-sim","host":"iamtoken-sim",)"
               R"("clusterName":"iamtoken-sim","locale":"en_US","startTime":"23.11.2026 08:00:00:000 GMT",)"
               R"("endTime":"23.11.2026 08:00:00:000 GMT","elapsedTime":"0"}})");
  CHECK(Fixture().respond(make_request("GET", "/sim/stats")).body
        == R"({"imds_token":0,"imds_iam_token":0,"iam":0,"by_profile":{"Profile-00000000-0000-4000-8000-000000000001":0,)"
           R"("Profile-00000000-0000-4000-8000-000000000002":0},"connections":0})");
  CHECK(Fixture().respond(make_request("POST", "/sim/faults", {}, R"({"target":"all","mode":"hang","a b":1})")).body
        == R"({"error":"unknown field <key>"})");
}
