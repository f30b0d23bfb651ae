// daemon/http/routes.hpp: every route, the profile selection rules, both
// error shapes, and the IMDS-style handles' binding to a uid and their
// expiry, on the engine fakes in simulated time with an injected wall clock.
// Tokens are compared, never printed.

#include "daemon/http/routes.hpp"
#include "daemon/log/log.hpp"
#include "tests/support/log_capture.hpp"
#include "tests/unit/engine_fakes.hpp"
#include "tests/support/dispatch_fixture.hpp"

#include <catch2/catch.hpp>
#include <simdjson.h>

#include <optional>
#include <regex>
#include <vector>

using namespace iamtok;
using namespace iamtok::engine::testing;
using http::Request;
using http::Response;
using server::Caller;

namespace {

using test::k_daemon_uid;
constexpr std::string_view k_crn3 = "crn:v1:bluemix:public:iam-identity::a/1::profile:P3";
constexpr std::string_view k_grant = "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Acr-token&cr_token=x";

using test::profile;

const config::Allow k_only_1001{{1001}, {}, {}, {}};

// reader: by id; deployer: by profile_name; ops-1001 and ops: one trusted
// profile by CRN under two local names; locked: only uid 1001; default: no
// selector (the instance default).
config::Config make_config()
{
  config::Config config;
  config.profiles = {
    profile("reader", "P1", "", ""),
    profile("deployer", "", "ci-deployer", ""),
    profile("ops-1001", "", "", std::string(k_crn3), k_only_1001),
    profile("ops", "", "", std::string(k_crn3)),
    profile("locked", "P4", "", "", k_only_1001),
    profile("default", "", "", ""),
  };
  return config;
}

Caller caller(uid_t uid)
{
  return Caller{uid, 100, 0, {}};
}

Request request(std::string method, std::string target, std::vector<http::Header> headers = {},
                std::string body = {})
{
  Request r;
  r.method = std::move(method);
  r.target = std::move(target);
  const auto question = r.target.find('?');
  r.path = r.target.substr(0, question);
  if (question != std::string::npos) {
    r.query = r.target.substr(question + 1);
  }
  r.headers = std::move(headers);
  r.headers.push_back({"Host", "127.0.0.1:8911"});
  r.body = std::move(body);
  return r;
}

Request iam(std::string form)
{
  return request("POST", "/identity/token", {{"Content-Type", "application/x-www-form-urlencoded"}}, std::move(form));
}

Request mint(std::string body = {}, std::string target = "/instance_identity/v1/token?version=2022-03-01")
{
  return request("PUT", std::move(target), {{"Metadata-Flavor", "ibm"}}, std::move(body));
}

Request trade(const std::string& handle, std::string body = {}, std::string target = "/instance_identity/v1/iam_token")
{
  return request("POST", std::move(target), {{"Authorization", "Bearer " + handle}}, std::move(body));
}

struct Fixture : FakePorts, test::DispatchStack
{
  explicit Fixture(config::Config c = make_config())
    : test::DispatchStack(ports(), std::move(c), k_daemon_uid, [] { return server::Traffic{}; }, server::Via::http)
  {
    upstream.answer_all(300s, 3600s);
  }

  http::WallClock::time_point wall = http::WallClock::time_point(std::chrono::seconds(1'795'000'000));
  std::uint8_t next_byte = 0;
  http::Routes routes{dispatcher, engine, http::RoutePorts{[this] { return wall; }, [this](std::span<unsigned char> out) {
                                                             for (auto& b : out) {
                                                               b = next_byte++;
                                                             }
                                                           }}};

  // Answers `r` from `who` (nullptr: unknown caller), running simulated time
  // until done (at most 60 s).
  Response ask(const Request& r, std::optional<Caller> who = caller(2000))
  {
    std::optional<Response> response;
    routes.handle(r, who ? &*who : nullptr, [&](Response out) { response = std::move(out); });
    for (int i = 0; i < 600 && !response; ++i) {
      timers.advance(100ms);
    }
    REQUIRE(response);
    return std::move(*response);
  }

  // The token the socket would hand `who` for `name`.
  std::string socket_token(const std::string& name, uid_t who = 2000)
  {
    std::optional<std::string> token;
    dispatcher.grant(name, caller(who), std::nullopt, [&](tl::expected<engine::Grant, proto::ErrorInfo> result) {
      REQUIRE(result);
      token = std::string(result->access_token.expose());
    });
    for (int i = 0; i < 600 && !token; ++i) {
      timers.advance(100ms);
    }
    REQUIRE(token);
    return *token;
  }
};

// The string or integer at `key` of a JSON object body (as text); "" if absent.
std::string field(const std::string& body, std::string_view key)
{
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(body).get(doc) != simdjson::SUCCESS) {
    return {};
  }
  simdjson::dom::element value;
  if (doc.at_pointer(key).get(value) != simdjson::SUCCESS) {
    return {};
  }
  if (value.is_string()) {
    return std::string(value.get_string().value());
  }
  if (value.is_int64()) {
    return std::to_string(value.get_int64().value());
  }
  return "<other>";
}

bool is_uuid(const std::string& text)
{
  return std::regex_match(text, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"));
}

bool is_rfc3339(const std::string& text)
{
  return std::regex_match(text, std::regex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"));
}

std::string header(const Response& r, std::string_view name)
{
  for (const auto& h : r.headers) {
    if (h.name == name) {
      return h.value;
    }
  }
  return {};
}

} // namespace

// ---------------------------------------------------------------------------
// Front checks

TEST_CASE("Host must be localhost or a loopback literal, with or without a port", "[http][routes]")
{
  for (const auto* ok : {"localhost", "LocalHost:8911", "127.0.0.1", "127.8.9.10:1", "[::1]", "[::1]:8911"}) {
    INFO(ok);
    CHECK(http::is_loopback_host_header(ok));
  }
  for (const auto* bad : {"", "example.com", "localhost.example.com", "10.0.0.1:8911", "[::2]:1", "::1",
                          "127.0.0.1:", "127.0.0.1:80:80", "127.0.0.1:x", "[::1", "localhost:1234567"}) {
    INFO(bad);
    CHECK_FALSE(http::is_loopback_host_header(bad));
  }
  Fixture f;
  auto r = request("GET", "/healthz");
  r.headers.back().value = "rebind.example:8911";
  CHECK(f.ask(r).status == 403);
}

TEST_CASE("a request with an Origin header or from an unknown caller is refused with 403", "[http][routes]")
{
  Fixture f;
  CHECK(f.ask(request("GET", "/healthz", {{"Origin", "http://127.0.0.1"}})).status == 403);
  CHECK(f.ask(request("GET", "/healthz"), std::nullopt).status == 403);
  CHECK(f.ask(request("GET", "/healthz")).status == 200);
}

TEST_CASE("unknown paths are 404 and wrong methods 405 with Allow", "[http][routes]")
{
  Fixture f;
  CHECK(f.ask(request("GET", "/")).status == 404);
  CHECK(f.ask(request("GET", "/identity/token/")).status == 404);
  for (const auto& [method, path, allow] :
       std::vector<std::tuple<std::string, std::string, std::string>>{{"GET", "/identity/token", "POST"},
                                                                       {"POST", "/instance_identity/v1/token", "PUT"},
                                                                       {"GET", "/identity/v1/iam_tokens", "POST"},
                                                                       {"POST", "/metrics", "GET"}}) {
    INFO(path);
    const auto r = f.ask(request(method, path));
    CHECK(r.status == 405);
    CHECK(header(r, "Allow") == allow);
  }
}

// ---------------------------------------------------------------------------
// Operations

TEST_CASE("healthz is ok, readyz names the profiles without a valid token, metrics serves the text", "[http][routes]")
{
  Fixture f;
  const auto health = f.ask(request("GET", "/healthz"));
  CHECK(health.status == 200);
  CHECK(health.body == "ok\n");
  const auto before = f.ask(request("GET", "/readyz"));
  CHECK(before.status == 503);
  CHECK(before.body.find("reader") != std::string::npos);
  f.engine.start();
  f.timers.advance(1s);
  CHECK(f.ask(request("GET", "/readyz")).status == 200);

  CHECK(f.ask(request("GET", "/metrics")).status == 500); // not set yet
  f.dispatcher.set_metrics([] { return std::string("iamtokend_build_info{version=\"x\"} 1\n"); });
  const auto metrics = f.ask(request("GET", "/metrics"));
  CHECK(metrics.status == 200);
  CHECK(metrics.content_type == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(metrics.body == "iamtokend_build_info{version=\"x\"} 1\n");
}

TEST_CASE("answered requests are counted by op and result", "[http][routes]")
{
  Fixture f;
  f.ask(request("GET", "/healthz"));
  f.ask(request("GET", "/nope"));
  f.ask(iam(fmt::format("{}&profile_id=P1", k_grant)));
  f.ask(iam(fmt::format("{}&profile_id=nope", k_grant)));
  const auto& counts = f.routes.request_counts();
  CHECK(counts.at(static_cast<std::size_t>(proto::Op::ping), 0) == 1);
  CHECK(counts.at(metrics::RequestCounts::k_ops - 1, 1 + static_cast<std::size_t>(proto::ErrorCode::bad_request)) == 1);
  CHECK(counts.at(static_cast<std::size_t>(proto::Op::token), 0) == 1);
  CHECK(counts.at(static_cast<std::size_t>(proto::Op::token),
                  1 + static_cast<std::size_t>(proto::ErrorCode::unknown_profile)) == 1);
}

// ---------------------------------------------------------------------------
// Profile selection

TEST_CASE("an id selects by profile_id or a CRN ending in :profile:<id>", "[http][selection]")
{
  const auto config = make_config();
  auto names = [&](http::Selector s) {
    std::vector<std::string> out;
    for (const auto* p : http::select_profiles(config, s)) {
      out.push_back(p->name);
    }
    return out;
  };
  CHECK(names({"P1", {}, {}}) == std::vector<std::string>{"reader"});
  CHECK(names({"P3", {}, {}}) == std::vector<std::string>{"ops-1001", "ops"});
  CHECK(names({"P9", {}, {}}).empty());
  // A CRN: by profile_crn, or by a profile_id equal to its last segment.
  CHECK(names({{}, std::string(k_crn3), {}}) == std::vector<std::string>{"ops-1001", "ops"});
  CHECK(names({{}, "crn:v1:bluemix:public:iam-identity::a/1::profile:P4", {}}) == std::vector<std::string>{"locked"});
  // A name: by profile_name, else by the local name.
  CHECK(names({{}, {}, "ci-deployer"}) == std::vector<std::string>{"deployer"});
  CHECK(names({{}, {}, "reader"}) == std::vector<std::string>{"reader"});
  CHECK(names({{}, {}, "deployer"}) == std::vector<std::string>{"deployer"});
  // Several selectors must agree.
  CHECK(names({"P3", std::string(k_crn3), "ops"}) == std::vector<std::string>{"ops"});
  CHECK(names({"P1", {}, "ci-deployer"}).empty());
  // None: the profiles configured with no trusted-profile field.
  CHECK(names({}) == std::vector<std::string>{"default"});
}

TEST_CASE("several matching profiles: the first in config order the caller may use", "[http][selection]")
{
  Fixture f;
  const auto as_1001 = f.ask(iam(fmt::format("{}&profile_id=P3", k_grant)), caller(1001));
  const auto as_2000 = f.ask(iam(fmt::format("{}&profile_id=P3", k_grant)), caller(2000));
  REQUIRE(as_1001.status == 200);
  REQUIRE(as_2000.status == 200);
  CHECK(field(as_1001.body, "/access_token") == f.socket_token("ops-1001", 1001));
  CHECK(field(as_2000.body, "/access_token") == f.socket_token("ops", 2000));
  CHECK(field(as_1001.body, "/access_token") != field(as_2000.body, "/access_token"));
}

// ---------------------------------------------------------------------------
// IAM style

TEST_CASE("the IAM-style grant answers every field IAM does, with the socket's token", "[http][iam]")
{
  Fixture f;
  const auto r = f.ask(iam(fmt::format("{}&profile_name=ci-deployer", k_grant)));
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "application/json");
  CHECK(field(r.body, "/access_token") == f.socket_token("deployer"));
  CHECK(field(r.body, "/refresh_token") == "not_supported");
  CHECK(field(r.body, "/token_type") == "Bearer");
  CHECK(field(r.body, "/scope") == "ibm openid");
  CHECK(std::stoll(field(r.body, "/expires_in")) > 3000);
  CHECK(std::stoll(field(r.body, "/expiration")) > FakeClock::k_unix_start);
  CHECK(header(r, "Cache-Control") == "no-store");
}

TEST_CASE("IAM-style errors carry errorCode, errorMessage and a request id", "[http][iam]")
{
  Fixture f;
  const auto check = [&](const Request& r, int status, std::string_view code, std::optional<Caller> who = caller(2000)) {
    const auto out = f.ask(r, who);
    CHECK(out.status == status);
    CHECK(field(out.body, "/errorCode") == code);
    CHECK_FALSE(field(out.body, "/errorMessage").empty());
    CHECK(is_uuid(field(out.body, "/context/requestId")));
  };
  check(iam("grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey=x&profile_id=P1"), 400, "bad_request");
  check(iam("grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Acr-token&profile_id=P1"), 400, "bad_request");
  check(iam("grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Acr-token&cr_token=+%20&profile_id=P1"), 400,
        "bad_request");
  check(iam(std::string(k_grant)), 400, "bad_request");
  check(iam(fmt::format("{}&profile_id=P1&profile_id=P1", k_grant)), 400, "bad_request");
  check(iam(fmt::format("{}&profile_id=%zz", k_grant)), 400, "bad_request");
  check(iam(fmt::format("{}&profile_id=P9", k_grant)), 400, "unknown_profile");
  check(iam(fmt::format("{}&profile_id=P1&profile_name=ci-deployer", k_grant)), 400, "unknown_profile");
  check(iam(fmt::format("{}&profile_id=P4", k_grant)), 403, "forbidden");
  auto json = iam(fmt::format("{}&profile_id=P1", k_grant));
  json.headers[0].value = "application/json";
  check(json, 400, "bad_request");
}

TEST_CASE("a profile selector that matches nothing, or nothing the caller may use, is audited", "[http][audit]")
{
  Fixture f;
  test::LogCapture capture(log::Level::warn);
  CHECK(f.ask(iam(fmt::format("{}&profile_id=P9&profile_name=nope", k_grant))).status == 400);
  CHECK(f.ask(iam(fmt::format("{}&profile_id=P4", k_grant))).status == 403);
  REQUIRE(capture.lines().size() == 2);
  CHECK(capture.lines()[0].find("via http profile id=P9, name=nope: unknown_profile (no configured profile matches)")
        != std::string::npos);
  CHECK(capture.lines()[1].find("via http profile locked: forbidden") != std::string::npos);
}

TEST_CASE("an engine with no token answers 503 with Retry-After in both shapes", "[http][iam][imds]")
{
  Fixture f;
  f.upstream.exchange_responder = [](const engine::ProfileTarget&, const Secret&) { return failed(http_error(500)); };
  const auto r = f.ask(iam(fmt::format("{}&profile_id=P1", k_grant)));
  CHECK(r.status == 503);
  CHECK(field(r.body, "/errorCode") == "unavailable");
  CHECK(std::stoi(header(r, "Retry-After")) >= 1);

  const auto handle = field(f.ask(mint()).body, "/access_token");
  const auto imds = f.ask(trade(handle, R"({"trusted_profile":{"id":"P1"}})"));
  CHECK(imds.status == 503);
  CHECK(field(imds.body, "/errors/0/code") == "unavailable");
  CHECK(std::stoi(header(imds, "Retry-After")) >= 1);
}

// ---------------------------------------------------------------------------
// IMDS style

TEST_CASE("IMDS-style handles are random, never the token, and trade for the socket's token", "[http][imds]")
{
  Fixture f;
  for (const auto& [token_path, iam_path] :
       {std::pair{"/instance_identity/v1/token?version=2021-09-20", "/instance_identity/v1/iam_token"},
        std::pair{"/identity/v1/token?version=2025-08-26", "/identity/v1/iam_tokens"}}) {
    INFO(token_path);
    const auto minted = f.ask(mint(R"({"expires_in":60})", token_path));
    REQUIRE(minted.status == 200);
    const auto handle = field(minted.body, "/access_token");
    CHECK(std::regex_match(handle, std::regex("[0-9a-f]{64}")));
    CHECK(field(minted.body, "/expires_in") == "60");
    CHECK(field(minted.body, "/created_at") == "2026-11-18T11:06:40Z");
    CHECK(field(minted.body, "/expires_at") == "2026-11-18T11:07:40Z");

    for (const auto& [body, name] : std::vector<std::pair<std::string, std::string>>{
           {R"({"trusted_profile":{"id":"P1"}})", "reader"},
           {R"({"trusted_profile":{"crn":"crn:v1:bluemix:public:iam-identity::a/1::profile:P4"}})", "locked"},
           {R"({"trusted_profile":{"name":"ci-deployer"}})", "deployer"},
           {"", "default"},
           {"{}", "default"}}) {
      INFO(body);
      const auto r = f.ask(trade(handle, body, iam_path), name == "locked" ? caller(1001) : caller(2000));
      if (name == "locked") {
        CHECK(r.status == 401); // the handle belongs to uid 2000
        continue;
      }
      REQUIRE(r.status == 200);
      CHECK(field(r.body, "/access_token") == f.socket_token(name));
      CHECK(handle != field(r.body, "/access_token"));
      CHECK(is_rfc3339(field(r.body, "/created_at")));
      CHECK(is_rfc3339(field(r.body, "/expires_at")));
      CHECK(std::stoll(field(r.body, "/expires_in")) > 0);
    }
  }
  CHECK(f.ask(mint()).body.find("\"expires_in\":300") != std::string::npos); // the default lifetime
}

TEST_CASE("a handle is refused once expired, for another uid, or when unknown", "[http][imds]")
{
  Fixture f;
  const auto handle = field(f.ask(mint(R"({"expires_in":5})")).body, "/access_token");
  const std::string body = R"({"trusted_profile":{"id":"P1"}})";
  CHECK(f.ask(trade(handle, body), caller(2000)).status == 200);
  const auto other = f.ask(trade(handle, body), caller(2001));
  CHECK(other.status == 401);
  CHECK(field(other.body, "/errors/0/code") == "unauthenticated");
  CHECK(is_uuid(field(other.body, "/trace")));
  CHECK(f.ask(trade(std::string(64, 'a'), body)).status == 401);
  CHECK(f.ask(request("POST", "/instance_identity/v1/iam_token", {}, body)).status == 401);
  CHECK(f.ask(request("POST", "/instance_identity/v1/iam_token", {{"Authorization", "Basic " + handle}}, body)).status
        == 401);
  f.wall += 4s;
  CHECK(f.ask(trade(handle, body)).status == 200);
  f.wall += 1s;
  CHECK(f.ask(trade(handle, body)).status == 401);
}

TEST_CASE("IMDS-style requests are checked as IMDS checks them, errors in IMDS's shape", "[http][imds]")
{
  Fixture f;
  const auto check = [&](const Request& r, int status, std::string_view code) {
    const auto out = f.ask(r);
    CHECK(out.status == status);
    CHECK(field(out.body, "/errors/0/code") == code);
    CHECK_FALSE(field(out.body, "/errors/0/message").empty());
    CHECK(is_uuid(field(out.body, "/trace")));
  };
  check(request("PUT", "/identity/v1/token?version=2025-08-26"), 400, "missing_metadata_flavor");
  check(request("PUT", "/identity/v1/token?version=2025-08-26", {{"Metadata-Flavor", "google"}}), 400,
        "missing_metadata_flavor");
  check(mint({}, "/identity/v1/token"), 400, "missing_version");
  check(mint({}, "/identity/v1/token?version=latest"), 400, "missing_version");
  check(mint(R"({"expires_in":4})"), 400, "invalid_expires_in");
  check(mint(R"({"expires_in":3601})"), 400, "invalid_expires_in");
  check(mint(R"({"expires_in":"60"})"), 400, "invalid_expires_in");
  check(mint("[1]"), 400, "bad_request");
  check(mint(R"({"a":1,"a":2})"), 400, "bad_request");

  const auto handle = field(f.ask(mint()).body, "/access_token");
  check(trade(handle, "not json"), 400, "bad_request");
  check(trade(handle, R"({"trusted_profile":"P1"})"), 400, "bad_request");
  check(trade(handle, R"({"trusted_profile":{"id":""}})"), 400, "bad_request");
  check(trade(handle, R"({"trusted_profile":{"id":7}})"), 400, "bad_request");
  check(trade(handle, R"({"trusted_profile":{"id":"P9"}})"), 400, "unknown_profile");
  check(trade(handle, R"({"trusted_profile":{"id":"P4"}})"), 403, "forbidden");
}

TEST_CASE("trading a handle without a selector needs a profile configured with none", "[http][imds]")
{
  auto config = make_config();
  config.profiles.pop_back(); // no "default"
  Fixture f(config);
  const auto handle = field(f.ask(mint()).body, "/access_token");
  const auto r = f.ask(trade(handle));
  CHECK(r.status == 400);
  CHECK(field(r.body, "/errors/0/code") == "missing_field");
}

TEST_CASE("the handle table is bounded per uid and sweeps expired handles", "[http][imds]")
{
  http::HandleTable table;
  const auto t0 = http::WallClock::time_point(std::chrono::seconds(1'000'000));
  for (std::size_t i = 0; i < http::HandleTable::k_per_uid; ++i) {
    REQUIRE(table.add(fmt::format("h{}", i), 7, t0 + 60s, t0));
  }
  REQUIRE(table.add("h-new", 7, t0 + 60s, t0));
  CHECK(table.size() == http::HandleTable::k_per_uid);
  CHECK_FALSE(table.valid("h0", 7, t0)); // the oldest made room
  CHECK(table.valid("h1", 7, t0));
  CHECK(table.valid("h-new", 7, t0));
  REQUIRE(table.add("other", 8, t0 + 5s, t0)); // another uid is not crowded out
  CHECK(table.valid("other", 8, t0));
  table.sweep(t0 + 5s);
  CHECK_FALSE(table.valid("other", 8, t0));
  CHECK(table.size() == http::HandleTable::k_per_uid);
  table.sweep(t0 + 60s);
  CHECK(table.size() == 0);
}
