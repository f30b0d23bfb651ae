#include "sim/simulator.hpp"

#include "proto/json.hpp"
#include "sim/context.hpp"
#include "sim/jwt.hpp"
#include "util/strings.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>

// The shared state, the routing and the faults; each service answers in a
// file of its own: sim/imds.cpp, sim/iam.cpp, sim/control.cpp.

namespace iamtok::sim {

namespace {

using namespace std::chrono_literals;

constexpr std::string_view k_imds_more_info = "https://cloud.ibm.com/docs/vpc?topic=vpc-imd-about";

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

// "23.11.2026 08:00:00:000 GMT", as IAM writes its context times.
std::string iam_time(SysTime t)
{
  const auto tm = utc(t);
  return fmt::format("{:02}.{:02}.{:04} {:02}:{:02}:{:02}:{:03} GMT",
                     tm.tm_mday, tm.tm_mon + 1, tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, millis(t));
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

} // namespace

std::string iso8601(SysTime t)
{
  const auto tm = utc(t);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis(t));
}

Response json_response(int status, std::string body)
{
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response method_not_allowed(Response r, std::string_view allow)
{
  r.headers.push_back({"Allow", std::string(allow)});
  return r;
}

std::int64_t RequestContext::start_unix() const
{
  return std::chrono::duration_cast<std::chrono::seconds>(start.time_since_epoch()).count();
}

Response RequestContext::imds_error(int status, std::string_view code, std::string_view message,
                                        std::optional<ErrorTarget> target) const
{
  json::ObjectWriter error;
  error.string("code", code).string("message", message).string("more_info", k_imds_more_info);
  if (target) {
    json::ObjectWriter what;
    what.string("name", target->name).string("type", target->type);
    if (target->value) {
      what.string("value", *target->value);
    }
    error.raw("target", what.finish());
  }
  json::ObjectWriter body;
  body.raw("errors", "[" + error.finish() + "]").integer("status_code", status).string("trace", trace);
  return json_response(status, body.finish());
}

Response RequestContext::iam_error(int status, std::string_view code, std::string_view message,
                                       std::string_view details, SysTime end) const
{
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(end - start).count();
  json::ObjectWriter context;
  context.string("requestId", trace)
    .string("requestType", "incoming.OIDC_Token")
    .string("instanceId", "iamtoken-sim")
    .string("host", "iamtoken-sim")
    .string("clusterName", "iamtoken-sim")
    .string("locale", "en_US")
    .string("startTime", iam_time(start))
    .string("endTime", iam_time(end))
    .string("elapsedTime", std::to_string(elapsed));
  json::ObjectWriter body;
  body.string("errorCode", code)
    .string("errorMessage", message)
    .string("errorDetails", details)
    .raw("context", context.finish());
  Response r = json_response(status, body.finish());
  r.headers.push_back({"Transaction-Id", trace});
  return r;
}

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
  const std::string iam_id = "iam-" + profile.id;
  json::ObjectWriter account;
  account.boolean("valid", true).string("bss", k_account_id);
  json::ObjectWriter payload;
  payload.string("iam_id", iam_id)
    .string("id", iam_id)
    .string("realmid", "iam")
    .string("identifier", profile.id)
    .string("sub", profile.id)
    .string("sub_type", "Profile")
    .string("profile_id", profile.id)
    .string("name", profile.name)
    .raw("account", account.finish())
    .string("iss", "https://iamtoken-sim.local/identity")
    .string("grant_type", grant)
    .string("scope", "ibm openid")
    .string("client_id", "default")
    .string("jti", uuid())
    .integer("iat", iat)
    .integer("exp", iat + jwt_lifetime(m_config.iam_lifetime.count()));
  ++m_stats.by_profile[profile.id];
  return mint_token(TokenKind::access, payload.finish());
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

Response Simulator::fault_response(Target target, int status, RequestContext& ctx)
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
  RequestContext ctx{m_clock(), uuid()};
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

} // namespace iamtok::sim
