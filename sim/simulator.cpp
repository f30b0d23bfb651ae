#include "sim/simulator.hpp"

#include "proto/json.hpp"
#include "http/form.hpp"
#include "sim/jwt.hpp"
#include "util/strings.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <ctime>

namespace iamtok::sim {

using http::count_field;
using http::find_field;
using http::parse_form;

namespace {

using namespace std::chrono_literals;
using SysTime = std::chrono::system_clock::time_point;

constexpr std::string_view k_old_token_path = "/instance_identity/v1/token";
constexpr std::string_view k_new_token_path = "/identity/v1/token";
constexpr std::string_view k_old_iam_token_path = "/instance_identity/v1/iam_token";
constexpr std::string_view k_new_iam_token_path = "/identity/v1/iam_tokens";
constexpr std::string_view k_iam_path = "/identity/token";

// IMDS API versions: a date from the first identity API version up to today
// (earlier dates get invalid_version_range); from k_new_api_version on, the
// /instance_identity paths are gone.
constexpr std::string_view k_min_api_version = "2022-03-01";
constexpr std::string_view k_new_api_version = "2025-08-26";

constexpr std::string_view k_cr_token_grant = "urn:ibm:params:oauth:grant-type:cr-token";
constexpr std::string_view k_imds_more_info = "https://cloud.ibm.com/docs/vpc?topic=vpc-imd-about";
constexpr std::string_view k_instance_id = "0717_00000000-0000-4000-8000-0000000000a1";
constexpr std::int64_t k_default_identity_lifetime = 300;
constexpr std::int64_t k_min_identity_lifetime = 5;
constexpr std::int64_t k_max_identity_lifetime = 3600;

std::string instance_crn()
{
  return fmt::format("crn:v1:bluemix:public:is:us-south-1:a/{}::instance:{}", k_account_id, k_instance_id);
}

std::tm utc(SysTime t)
{
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  return tm;
}

int millis(SysTime t)
{
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  return static_cast<int>(((ms % 1000) + 1000) % 1000);
}

// "2026-11-23T08:00:00.000Z", as IMDS writes created_at and expires_at.
std::string iso8601(SysTime t)
{
  const auto tm = utc(t);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis(t));
}

// "23.11.2026 08:00:00:000 GMT", as IAM writes its context times.
std::string iam_time(SysTime t)
{
  const auto tm = utc(t);
  return fmt::format("{:02}.{:02}.{:04} {:02}:{:02}:{:02}:{:03} GMT",
                     tm.tm_mday, tm.tm_mon + 1, tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, millis(t));
}

std::string today(SysTime t)
{
  const auto tm = utc(t);
  return fmt::format("{:04}-{:02}-{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

// True for a real calendar date written YYYY-MM-DD.
bool is_date(std::string_view s)
{
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') {
    return false;
  }
  for (const std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (s[i] < '0' || s[i] > '9') {
      return false;
    }
  }
  const auto number = [&](std::size_t pos, std::size_t len) {
    int n = 0;
    for (std::size_t i = pos; i < pos + len; ++i) {
      n = n * 10 + (s[i] - '0');
    }
    return n;
  };
  const int year = number(0, 4);
  const int month = number(5, 2);
  const int day = number(8, 2);
  if (month < 1 || month > 12 || day < 1) {
    return false;
  }
  constexpr std::array<int, 12> k_days{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  const int max_day = k_days[static_cast<std::size_t>(month - 1)] + (month == 2 && leap ? 1 : 0);
  return day <= max_day;
}

// An input value short and printable enough to echo in an error target.
std::string echo(std::string_view value)
{
  std::string out;
  for (const char c : value.substr(0, 64)) {
    out.push_back(c >= 0x20 && c < 0x7F ? c : '?');
  }
  return out;
}

struct ErrorTarget
{
  std::string name;
  std::string type; // "field", "parameter" or "header"
  std::optional<std::string> value;
};

Response json_response(int status, std::string body)
{
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response control_error(int status, std::string_view message)
{
  std::string body = "{\"error\":";
  json::append_quoted(body, message);
  body += '}';
  return json_response(status, std::move(body));
}

Response method_not_allowed(Response r, std::string_view allow)
{
  r.headers.push_back({"Allow", std::string(allow)});
  return r;
}

std::optional<Target> classify(std::string_view path)
{
  if (path == k_old_token_path || path == k_new_token_path) {
    return Target::imds_token;
  }
  if (path == k_old_iam_token_path || path == k_new_iam_token_path) {
    return Target::imds_iam_token;
  }
  if (path == k_iam_path) {
    return Target::iam;
  }
  return std::nullopt;
}

std::string_view imds_code_for(int status)
{
  switch (status) {
  case 401: return "unauthenticated";
  case 403: return "unauthorized";
  case 404: return "not_found";
  case 429: return "too_many_requests";
  default: return status >= 500 ? "service_error" : "invalid_request";
  }
}

// A JSON integer in [lo, hi], or nullopt.
std::optional<std::int64_t> integer_in(simdjson::dom::element e, std::int64_t lo, std::int64_t hi)
{
  std::int64_t value = 0;
  if (e.get(value) != simdjson::SUCCESS || value < lo || value > hi) {
    return std::nullopt;
  }
  return value;
}

} // namespace

struct Simulator::Context
{
  SysTime start;
  std::string trace; // IMDS "trace" / IAM "context.requestId"

  Response imds_error(int status, std::string_view code, std::string_view message,
                      std::optional<ErrorTarget> target = std::nullopt) const
  {
    std::string body = "{\"errors\":[{\"code\":";
    json::append_quoted(body, code);
    body += ",\"message\":";
    json::append_quoted(body, message);
    body += ",\"more_info\":";
    json::append_quoted(body, k_imds_more_info);
    if (target) {
      body += ",\"target\":{\"name\":";
      json::append_quoted(body, target->name);
      body += ",\"type\":";
      json::append_quoted(body, target->type);
      if (target->value) {
        body += ",\"value\":";
        json::append_quoted(body, *target->value);
      }
      body += '}';
    }
    body += "}],\"status_code\":";
    body += std::to_string(status);
    body += ",\"trace\":";
    json::append_quoted(body, trace);
    body += '}';
    return json_response(status, std::move(body));
  }

  Response iam_error(int status, std::string_view code, std::string_view message, std::string_view details,
                     SysTime end) const
  {
    std::string body = "{\"errorCode\":";
    json::append_quoted(body, code);
    body += ",\"errorMessage\":";
    json::append_quoted(body, message);
    body += ",\"errorDetails\":";
    json::append_quoted(body, details);
    body += ",\"context\":{\"requestId\":";
    json::append_quoted(body, trace);
    body += ",\"requestType\":\"incoming.OIDC_Token\",\"instanceId\":\"iamtoken-sim\",\"host\":\"iamtoken-sim\"";
    body += ",\"clusterName\":\"iamtoken-sim\",\"locale\":\"en_US\",\"startTime\":";
    json::append_quoted(body, iam_time(start));
    body += ",\"endTime\":";
    json::append_quoted(body, iam_time(end));
    body += fmt::format(",\"elapsedTime\":\"{}\"}}}}",
                        std::chrono::duration_cast<std::chrono::milliseconds>(end - start).count());
    Response r = json_response(status, std::move(body));
    r.headers.push_back({"Transaction-Id", trace});
    return r;
  }
};

std::vector<Profile> default_profiles()
{
  return {
    {"Profile-00000000-0000-4000-8000-000000000001", "reader",
     profile_crn("Profile-00000000-0000-4000-8000-000000000001")},
    {"Profile-00000000-0000-4000-8000-000000000002", "deployer",
     profile_crn("Profile-00000000-0000-4000-8000-000000000002")},
  };
}

std::string profile_crn(std::string_view id)
{
  return fmt::format("crn:v1:bluemix:public:iam-identity::a/{}::profile:{}", k_account_id, id);
}

Simulator::Simulator(SimConfig config, WallClock clock)
  : m_config(std::move(config)),
    m_clock(std::move(clock)),
    m_random(m_config.seed)
{
  reset_stats();
}

void Simulator::reset_stats()
{
  m_stats = Stats{};
  for (const auto& p : m_config.profiles) {
    m_stats.by_profile[p.id] = 0;
  }
}

void Simulator::set_fault(std::optional<Target> target, FaultRule rule)
{
  m_faults[target] = rule;
}

void Simulator::clear_faults()
{
  m_faults.clear();
}

std::string Simulator::uuid()
{
  std::uint64_t hi = m_random();
  std::uint64_t lo = m_random();
  hi = (hi & ~0xF000ULL) | 0x4000ULL;                       // version 4
  lo = (lo & ~(0xC0ULL << 56)) | (0x80ULL << 56);           // RFC 4122 variant
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                     hi >> 32, (hi >> 16) & 0xFFFF, hi & 0xFFFF, lo >> 48, lo & 0xFFFFFFFFFFFFULL);
}

std::int64_t Simulator::now_unix() const
{
  return std::chrono::duration_cast<std::chrono::seconds>(m_clock().time_since_epoch()).count();
}

const Profile* Simulator::find_profile(std::string_view field, std::string_view value) const
{
  for (const auto& p : m_config.profiles) {
    const std::string& candidate = field == "id" ? p.id : field == "name" ? p.name : p.crn;
    if (!candidate.empty() && candidate == value) {
      return &p;
    }
  }
  return nullptr;
}

Secret Simulator::mint_access_token(const Profile& profile, std::int64_t iat, std::string_view grant)
{
  std::string payload = "{\"iam_id\":";
  json::append_quoted(payload, "iam-" + profile.id);
  payload += ",\"id\":";
  json::append_quoted(payload, "iam-" + profile.id);
  payload += ",\"realmid\":\"iam\",\"identifier\":";
  json::append_quoted(payload, profile.id);
  payload += ",\"sub\":";
  json::append_quoted(payload, profile.id);
  payload += ",\"sub_type\":\"Profile\",\"profile_id\":";
  json::append_quoted(payload, profile.id);
  payload += ",\"name\":";
  json::append_quoted(payload, profile.name);
  payload += ",\"account\":{\"valid\":true,\"bss\":";
  json::append_quoted(payload, k_account_id);
  payload += "},\"iss\":\"https://iamtoken-sim.local/identity\",\"grant_type\":";
  json::append_quoted(payload, grant);
  payload += ",\"scope\":\"ibm openid\",\"client_id\":\"default\",\"jti\":";
  json::append_quoted(payload, uuid());
  payload += fmt::format(",\"iat\":{},\"exp\":{}}}", iat, iat + jwt_lifetime(m_config.iam_lifetime.count()));
  ++m_stats.by_profile[profile.id];
  return mint_token(TokenKind::access, payload);
}

std::int64_t Simulator::jwt_lifetime(std::int64_t lifetime) const
{
  return m_short_jwt ? std::min<std::int64_t>(lifetime, m_short_jwt->count()) : lifetime;
}

std::optional<FaultRule> Simulator::take_fault(Target target)
{
  auto it = m_faults.find(target);
  if (it == m_faults.end()) {
    it = m_faults.find(std::nullopt);
  }
  if (it == m_faults.end()) {
    return std::nullopt;
  }
  FaultRule rule = it->second;
  if (it->second.remaining && --*it->second.remaining <= 0) {
    m_faults.erase(it);
  }
  return rule;
}

Response Simulator::fault_response(Target target, int status, Context& ctx)
{
  const auto message = fmt::format("{} (fault injected by iamtoken-sim).", reason_phrase(status));
  if (target == Target::iam) {
    return ctx.iam_error(status, fmt::format("BXNIM{:04}E", status), message, "injected fault", m_clock());
  }
  return ctx.imds_error(status, imds_code_for(status), message);
}

Action Simulator::handle(const Request& request)
{
  if (request.path == "/sim" || request.path.starts_with("/sim/")) {
    return handle_control(request);
  }
  Context ctx{m_clock(), uuid()};
  const auto target = classify(request.path);
  if (!target) {
    return Action{Action::Kind::respond, 0ms,
                  ctx.imds_error(404, "not_found", "The requested resource was not found.")};
  }
  switch (*target) {
  case Target::imds_token: ++m_stats.imds_token; break;
  case Target::imds_iam_token: ++m_stats.imds_iam_token; break;
  case Target::iam: ++m_stats.iam; break;
  }

  Action action;
  action.delay = m_config.latency;
  const auto fault = take_fault(*target);
  if (fault) {
    switch (fault->mode) {
    case FaultMode::status:
      action.response = fault_response(*target, fault->status, ctx);
      if (fault->retry_after_s) {
        action.response.headers.push_back({"Retry-After", std::to_string(*fault->retry_after_s)});
      }
      break;
    case FaultMode::hang:
      action.kind = Action::Kind::hang;
      return action;
    case FaultMode::reset:
      action.kind = Action::Kind::reset;
      return action;
    case FaultMode::garbage:
      action.response.content_type = "text/html";
      action.response.body = "<html><body><h1>iamtoken-sim</h1>this is not JSON</body></html>\n";
      break;
    case FaultMode::redirect:
      action.response.status = fault->status;
      action.response.content_type = "text/html";
      action.response.body = "<html><body>Moved</body></html>\n";
      action.response.headers.push_back({"Location", fault->location});
      break;
    case FaultMode::html:
      action.response.status = fault->status;
      action.response.content_type = "text/html";
      action.response.body = fmt::format("<html><head><title>{} {}</title></head><body><h1>{}</h1>"
                                         "<p>iamtoken-sim: an error page that is not JSON</p></body></html>\n",
                                         fault->status, reason_phrase(fault->status), reason_phrase(fault->status));
      break;
    case FaultMode::slow:
      action.delay += fault->delay;
      break;
    case FaultMode::short_jwt:
      m_short_jwt = fault->jwt_lifetime;
      break;
    }
  }
  const bool answered = fault && fault->mode != FaultMode::slow && fault->mode != FaultMode::short_jwt;
  if (!answered) {
    switch (*target) {
    case Target::imds_token: action.response = handle_imds_token(request, ctx); break;
    case Target::imds_iam_token: action.response = handle_imds_iam_token(request, ctx); break;
    case Target::iam: action.response = handle_iam(request, ctx); break;
    }
    m_short_jwt.reset();
  }
  // Every reply carries the request id in a header, as the services do:
  // X-Request-Id (= the body's trace) at IMDS, Transaction-Id at IAM.
  const std::string_view id_header = *target == Target::iam ? "Transaction-Id" : "X-Request-Id";
  const bool has_id = std::any_of(action.response.headers.begin(), action.response.headers.end(),
                                  [&](const Header& h) { return util::iequals(h.name, id_header); });
  if (!has_id) {
    action.response.headers.push_back({std::string(id_header), ctx.trace});
  }
  return action;
}

std::optional<Response> Simulator::check_imds(const Request& request, Context& ctx, std::string_view method,
                                              bool flavor_required)
{
  if (request.method != method) {
    return method_not_allowed(
      ctx.imds_error(405, "method_not_allowed", "The method is not allowed for the requested resource."), method);
  }
  const auto query = parse_form(request.query);
  if (!query) {
    return ctx.imds_error(400, "invalid_request", "The query string is not valid.");
  }
  const auto version = find_field(*query, "version");
  if (!version) {
    return ctx.imds_error(400, "missing_field", "The `version` query parameter is required.",
                          ErrorTarget{"version", "parameter", std::nullopt});
  }
  if (is_date(*version) && *version < k_min_api_version) {
    return ctx.imds_error(400, "invalid_version_range",
                          fmt::format("The `version` value cannot be before `{}`.", k_min_api_version),
                          ErrorTarget{"version", "parameter", echo(*version)});
  }
  if (!is_date(*version) || *version > today(ctx.start)) {
    return ctx.imds_error(400, "invalid_value",
                          fmt::format("The `version` query parameter must be a date from `{}` to today.",
                                      k_min_api_version),
                          ErrorTarget{"version", "parameter", echo(*version)});
  }
  const bool old_path = request.path == k_old_token_path || request.path == k_old_iam_token_path;
  if (old_path && *version >= k_new_api_version) {
    return ctx.imds_error(404, "not_found", "The requested resource was not found.");
  }
  const auto* flavor = request.header("Metadata-Flavor");
  if (flavor == nullptr && flavor_required) {
    return ctx.imds_error(400, "missing_value", "The `Metadata-Flavor` header is required.",
                          ErrorTarget{"Metadata-Flavor", "header", std::nullopt});
  }
  if (flavor != nullptr && *flavor != "ibm") {
    return ctx.imds_error(400, "invalid_value", "The `Metadata-Flavor` header must be `ibm`.",
                          ErrorTarget{"Metadata-Flavor", "header", echo(*flavor)});
  }
  return std::nullopt;
}

Response Simulator::handle_imds_token(const Request& request, Context& ctx)
{
  if (auto error = check_imds(request, ctx, "PUT", true)) {
    return std::move(*error);
  }
  // Like IMDS, a JSON body is accepted whatever its Content-Type says (IBM's
  // own curl examples send -d '{}', curl's form content type).

  std::int64_t lifetime = k_default_identity_lifetime;
  std::optional<std::string> nonce;
  if (!request.body.empty()) {
    simdjson::dom::parser parser;
    const auto doc = json::parse_document(parser, request.body);
    simdjson::dom::object object;
    if (!doc || doc->get(object) != simdjson::SUCCESS) {
      return ctx.imds_error(400, "invalid_request", "The request body must be a JSON object.");
    }
    for (const auto field : object) {
      if (field.key == "expires_in") {
        std::int64_t value = 0;
        if (field.value.get(value) != simdjson::SUCCESS) {
          return ctx.imds_error(400, "invalid_value", "The `expires_in` field must be an integer.",
                                ErrorTarget{"expires_in", "field", std::nullopt});
        }
        if (value < k_min_identity_lifetime) {
          return ctx.imds_error(400, "invalid_value",
                                fmt::format("The `expires_in` field must be at least `{}`.", k_min_identity_lifetime),
                                ErrorTarget{"expires_in", "field", std::to_string(value)});
        }
        if (value > k_max_identity_lifetime) {
          return ctx.imds_error(400, "invalid_value",
                                fmt::format("The `expires_in` field must not exceed `{}`.", k_max_identity_lifetime),
                                ErrorTarget{"expires_in", "field", std::to_string(value)});
        }
        lifetime = value;
      } else if (field.key == "nonce") {
        std::string_view value;
        if (field.value.get(value) != simdjson::SUCCESS || value.size() > 256) {
          return ctx.imds_error(400, "invalid_value", "The `nonce` field must be a string of at most 256 characters.",
                                ErrorTarget{"nonce", "field", std::nullopt});
        }
        nonce = std::string(value);
      } else {
        std::string name;
        json::append_path_key(name, field.key);
        return ctx.imds_error(400, "unknown_field", fmt::format("The field `{}` is not allowed.", name),
                              ErrorTarget{name, "field", std::nullopt});
      }
    }
  }

  const std::int64_t iat = std::chrono::duration_cast<std::chrono::seconds>(ctx.start.time_since_epoch()).count();
  std::string payload = "{\"iss\":\"https://iamtoken-sim.local/instance_identity\",\"sub\":";
  json::append_quoted(payload, instance_crn());
  payload += ",\"instance_id\":";
  json::append_quoted(payload, k_instance_id);
  payload += ",\"account\":{\"bss\":";
  json::append_quoted(payload, k_account_id);
  payload += "},\"jti\":";
  json::append_quoted(payload, uuid());
  if (nonce) {
    payload += ",\"nonce\":";
    json::append_quoted(payload, *nonce);
  }
  payload += fmt::format(",\"iat\":{},\"exp\":{}}}", iat, iat + jwt_lifetime(lifetime));
  const Secret token = mint_token(TokenKind::identity, payload);

  std::string body = "{\"access_token\":";
  json::append_quoted(body, token.expose());
  body += ",\"created_at\":";
  json::append_quoted(body, iso8601(ctx.start));
  body += ",\"expires_at\":";
  json::append_quoted(body, iso8601(ctx.start + std::chrono::seconds(lifetime)));
  body += fmt::format(",\"expires_in\":{}}}", lifetime);
  return json_response(200, std::move(body));
}

Response Simulator::handle_imds_iam_token(const Request& request, Context& ctx)
{
  // go-sdk-core sends no Metadata-Flavor on this call, so it is only checked
  // when present.
  if (auto error = check_imds(request, ctx, "POST", false)) {
    return std::move(*error);
  }
  const auto* authorization = request.header("Authorization");
  if (authorization == nullptr || authorization->size() <= 7 || !util::istarts_with(*authorization, "Bearer ")) {
    return ctx.imds_error(401, "unauthenticated",
                          "The request needs an `Authorization: Bearer` header with an instance identity token.",
                          ErrorTarget{"Authorization", "header", std::nullopt});
  }
  const auto claims = verify_token(TokenKind::identity, std::string_view(*authorization).substr(7), now_unix());
  if (!claims) {
    return ctx.imds_error(401, "unauthenticated",
                          fmt::format("The instance identity token is not valid: {}.", to_string(claims.error())),
                          ErrorTarget{"Authorization", "header", std::nullopt});
  }
  const Profile* profile = nullptr;
  bool named = false;
  if (!request.body.empty()) {
    simdjson::dom::parser parser;
    const auto doc = json::parse_document(parser, request.body);
    simdjson::dom::object object;
    if (!doc || doc->get(object) != simdjson::SUCCESS) {
      return ctx.imds_error(400, "invalid_request", "The request body must be a JSON object.");
    }
    for (const auto field : object) {
      if (field.key != "trusted_profile") {
        std::string name;
        json::append_path_key(name, field.key);
        return ctx.imds_error(400, "unknown_field", fmt::format("The field `{}` is not allowed.", name),
                              ErrorTarget{name, "field", std::nullopt});
      }
      const auto invalid = ctx.imds_error(
        400, "invalid_value", "The `trusted_profile` field must be an object with exactly one of `id`, `crn`, `name`.",
        ErrorTarget{"trusted_profile", "field", std::nullopt});
      simdjson::dom::object identity;
      if (field.value.get(identity) != simdjson::SUCCESS || identity.size() != 1) {
        return invalid;
      }
      const auto member = *identity.begin();
      std::string_view value;
      if ((member.key != "id" && member.key != "crn" && member.key != "name")
          || member.value.get(value) != simdjson::SUCCESS || value.empty()) {
        return invalid;
      }
      named = true;
      profile = find_profile(member.key, value);
      if (profile == nullptr) {
        return ctx.imds_error(400, "profile_not_linked", "The trusted profile is not linked to this instance.",
                              ErrorTarget{fmt::format("trusted_profile.{}", member.key), "field", echo(value)});
      }
    }
  }
  if (!named) {
    if (m_config.default_profile_id) {
      profile = find_profile("id", *m_config.default_profile_id);
    }
    if (profile == nullptr) {
      return ctx.imds_error(400, "missing_field",
                            "The `trusted_profile` field is required: this instance has no default trusted profile.",
                            ErrorTarget{"trusted_profile", "field", std::nullopt});
    }
  }

  const std::int64_t iat = std::chrono::duration_cast<std::chrono::seconds>(ctx.start.time_since_epoch()).count();
  const Secret token = mint_access_token(*profile, iat, "urn:ibm:params:oauth:grant-type:cr-token");
  std::string body = "{\"access_token\":";
  json::append_quoted(body, token.expose());
  body += ",\"created_at\":";
  json::append_quoted(body, iso8601(ctx.start));
  body += ",\"expires_at\":";
  json::append_quoted(body, iso8601(ctx.start + m_config.iam_lifetime));
  body += fmt::format(",\"expires_in\":{}}}", m_config.iam_lifetime.count());
  return json_response(200, std::move(body));
}

Response Simulator::handle_iam(const Request& request, Context& ctx)
{
  const auto fail = [&](int status, std::string_view code, std::string_view message, std::string_view details) {
    return ctx.iam_error(status, code, message, details, m_clock());
  };
  if (request.method != "POST") {
    return method_not_allowed(fail(405, "BXNIM0100E", "Method not allowed.", "use POST"), "POST");
  }
  const auto* content_type = request.header("Content-Type");
  if (content_type == nullptr || media_type(*content_type) != "application/x-www-form-urlencoded") {
    return fail(400, "BXNIM0102E", "Unsupported content type.",
                "the request body must be application/x-www-form-urlencoded");
  }
  const auto form = parse_form(request.body);
  if (!form) {
    return fail(400, "BXNIM0101E", "Malformed request.", form.error());
  }
  for (const std::string_view name : {"grant_type", "cr_token", "profile_id", "profile_name", "profile_crn"}) {
    if (count_field(*form, name) > 1) {
      return fail(400, "BXNIM0101E", "Malformed request.", fmt::format("parameter {} given more than once", name));
    }
  }
  const auto grant_type = find_field(*form, "grant_type");
  if (!grant_type || grant_type->empty()) {
    return fail(400, "BXNIM0109E", "Property missing or empty.", "grant_type");
  }
  if (*grant_type != k_cr_token_grant) {
    return fail(400, "BXNIM0103E", "Unsupported grant type.",
                fmt::format("this endpoint supports only {}", k_cr_token_grant));
  }
  const auto cr_token = find_field(*form, "cr_token");
  if (!cr_token || cr_token->empty()) {
    return fail(400, "BXNIM0109E", "Property missing or empty.", "cr_token");
  }
  const std::array<std::pair<std::string_view, std::string_view>, 3> selectors{
    {{"profile_id", "id"}, {"profile_name", "name"}, {"profile_crn", "crn"}}};
  const bool any_profile = std::any_of(selectors.begin(), selectors.end(), [&](const auto& s) {
    const auto value = find_field(*form, s.first);
    return value && !value->empty();
  });
  if (!any_profile) {
    return fail(400, "BXNIM0109E", "Property missing or empty.", "one of profile_id, profile_name, profile_crn");
  }

  const auto claims = verify_token(TokenKind::identity, *cr_token, now_unix());
  if (!claims) {
    const bool is_access_token =
      claims.error() == TokenError::bad_signature && verify_token(TokenKind::access, *cr_token, now_unix());
    return fail(401, "BXNIM0407E", "Provided token is invalid.",
                is_access_token ? std::string_view("an IAM access token is not a CR token")
                                : to_string(claims.error()));
  }

  const Profile* profile = nullptr;
  std::string_view chosen_by;
  for (const auto& [param, field] : selectors) {
    const auto value = find_field(*form, param);
    if (!value || value->empty()) {
      continue;
    }
    const Profile* match = find_profile(field, *value);
    if (match == nullptr) {
      return fail(400, "BXNIM0398E", "Selected trusted profile not eligible.",
                  fmt::format("no trusted profile with that {} trusts this compute resource", param));
    }
    if (profile != nullptr && match != profile) {
      return fail(400, "BXNIM0398E", "Selected trusted profile not eligible.",
                  fmt::format("{} and {} name different trusted profiles", chosen_by, param));
    }
    profile = match;
    chosen_by = param;
  }

  const std::int64_t iat = std::chrono::duration_cast<std::chrono::seconds>(ctx.start.time_since_epoch()).count();
  const Secret token = mint_access_token(*profile, iat, k_cr_token_grant);
  std::string body = "{\"access_token\":";
  json::append_quoted(body, token.expose());
  body += fmt::format(
    ",\"refresh_token\":\"not_supported\",\"token_type\":\"Bearer\",\"expires_in\":{},\"expiration\":{},"
    "\"scope\":\"ibm openid\"}}",
    m_config.iam_lifetime.count(), iat + m_config.iam_lifetime.count());
  Response r = json_response(200, std::move(body));
  r.headers.push_back({"Transaction-Id", ctx.trace});
  return r;
}

namespace {

std::optional<Target> parse_target(std::string_view s, bool& all)
{
  all = s == "all";
  if (s == "imds_token") {
    return Target::imds_token;
  }
  if (s == "imds_iam_token") {
    return Target::imds_iam_token;
  }
  if (s == "iam") {
    return Target::iam;
  }
  return std::nullopt;
}

std::optional<FaultMode> parse_mode(std::string_view s)
{
  if (s == "status") return FaultMode::status;
  if (s == "hang") return FaultMode::hang;
  if (s == "reset") return FaultMode::reset;
  if (s == "garbage") return FaultMode::garbage;
  if (s == "slow") return FaultMode::slow;
  if (s == "redirect") return FaultMode::redirect;
  if (s == "html") return FaultMode::html;
  if (s == "short_jwt") return FaultMode::short_jwt;
  return std::nullopt;
}

} // namespace

Action Simulator::handle_control(const Request& request)
{
  const auto respond = [](Response r) { return Action{Action::Kind::respond, 0ms, std::move(r)}; };
  if (!request.from_loopback) {
    return respond(control_error(403, "control endpoints answer loopback clients only"));
  }
  const auto no_content = [] {
    Response r;
    r.status = 204;
    return r;
  };
  if (request.path == "/sim/stats") {
    if (request.method != "GET") {
      return respond(method_not_allowed(control_error(405, "use GET"), "GET"));
    }
    std::string body = fmt::format("{{\"imds_token\":{},\"imds_iam_token\":{},\"iam\":{},\"by_profile\":{{",
                                   m_stats.imds_token, m_stats.imds_iam_token, m_stats.iam);
    bool first = true;
    for (const auto& [id, count] : m_stats.by_profile) {
      if (!first) {
        body += ',';
      }
      first = false;
      json::append_quoted(body, id);
      body += fmt::format(":{}", count);
    }
    body += fmt::format("}},\"connections\":{}}}", m_stats.connections);
    return respond(json_response(200, std::move(body)));
  }
  if (request.path == "/sim/reset") {
    if (request.method != "POST") {
      return respond(method_not_allowed(control_error(405, "use POST"), "POST"));
    }
    reset_stats();
    return respond(no_content());
  }
  if (request.path != "/sim/faults") {
    return respond(control_error(404, "unknown control endpoint"));
  }
  if (request.method == "DELETE") {
    clear_faults();
    return respond(no_content());
  }
  if (request.method != "POST") {
    return respond(method_not_allowed(control_error(405, "use POST or DELETE"), "POST, DELETE"));
  }

  simdjson::dom::parser parser;
  const auto doc = json::parse_document(parser, request.body);
  if (!doc) {
    return respond(control_error(400, doc.error()));
  }
  simdjson::dom::object object;
  if (doc->get(object) != simdjson::SUCCESS) {
    return respond(control_error(400, "the body must be a JSON object"));
  }
  std::optional<Target> target;
  bool all = false;
  bool have_target = false;
  std::optional<FaultMode> mode;
  FaultRule rule;
  bool status_given = false;
  for (const auto field : object) {
    std::string_view text;
    if (field.key == "target") {
      if (field.value.get(text) != simdjson::SUCCESS || (!(target = parse_target(text, all)) && !all)) {
        return respond(control_error(400, "target: one of imds_token, imds_iam_token, iam, all"));
      }
      have_target = true;
    } else if (field.key == "mode") {
      if (field.value.get(text) != simdjson::SUCCESS || !(mode = parse_mode(text))) {
        return respond(control_error(400, "mode: one of status, hang, reset, garbage, slow, redirect, html, "
                                          "short_jwt"));
      }
    } else if (field.key == "status") {
      const auto v = integer_in(field.value, 300, 599);
      if (!v) {
        return respond(control_error(400, "status: an integer from 300 to 599"));
      }
      rule.status = static_cast<int>(*v);
      status_given = true;
    } else if (field.key == "location") {
      if (field.value.get(text) != simdjson::SUCCESS || text.empty() || text.size() > 512) {
        return respond(control_error(400, "location: a non-empty string of at most 512 characters"));
      }
      rule.location = std::string(text);
    } else if (field.key == "jwt_lifetime_s") {
      const auto v = integer_in(field.value, 1, 86400);
      if (!v) {
        return respond(control_error(400, "jwt_lifetime_s: an integer from 1 to 86400"));
      }
      rule.jwt_lifetime = std::chrono::seconds(*v);
    } else if (field.key == "retry_after_s") {
      const auto v = integer_in(field.value, 0, 86400);
      if (!v) {
        return respond(control_error(400, "retry_after_s: an integer from 0 to 86400"));
      }
      rule.retry_after_s = static_cast<int>(*v);
    } else if (field.key == "delay_ms") {
      const auto v = integer_in(field.value, 0, 600000);
      if (!v) {
        return respond(control_error(400, "delay_ms: an integer from 0 to 600000"));
      }
      rule.delay = std::chrono::milliseconds(*v);
    } else if (field.key == "count") {
      const auto v = integer_in(field.value, 1, 1'000'000'000);
      if (!v) {
        return respond(control_error(400, "count: an integer from 1 to 1000000000"));
      }
      rule.remaining = *v;
    } else {
      std::string name;
      json::append_path_key(name, field.key);
      return respond(control_error(400, fmt::format("unknown field {}", name)));
    }
  }
  if (!have_target || !mode) {
    return respond(control_error(400, "target and mode are required"));
  }
  if (*mode == FaultMode::redirect) {
    if (!status_given) {
      rule.status = 302;
    } else if (rule.status >= 400) {
      return respond(control_error(400, "status: a redirect takes a status from 300 to 399"));
    }
  } else if (!status_given && *mode == FaultMode::html) {
    rule.status = 502;
  } else if (status_given && rule.status < 400) {
    return respond(control_error(400, "status: from 400 to 599 (300 to 399 only with mode redirect)"));
  }
  rule.mode = *mode;
  set_fault(target, rule);
  return respond(no_content());
}

} // namespace iamtok::sim
