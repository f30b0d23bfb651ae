#include "daemon/http/routes.hpp"

#include "daemon/config/config.hpp"
#include "http/form.hpp"
#include "proto/json.hpp"
#include "proto/secret.hpp"
#include "util/strings.hpp"

#include <fmt/format.h>
#include <simdjson.h>

#include <sys/random.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <ctime>
#include <span>
#include <stdexcept>
#include <utility>

namespace iamtok::http {

namespace {

using util::iequals;
using util::trim;

constexpr std::string_view k_cr_token_grant = "urn:ibm:params:oauth:grant-type:cr-token";
constexpr std::string_view k_form = "application/x-www-form-urlencoded";
constexpr std::string_view k_metrics_type = "text/plain; version=0.0.4; charset=utf-8";
constexpr std::chrono::seconds k_default_handle_lifetime{300};
constexpr std::int64_t k_min_handle_lifetime = 5;
constexpr std::int64_t k_max_handle_lifetime = 3600;

enum class Kind { iam_token, imds_handle, imds_iam_token, healthz, readyz, metrics };

struct Route
{
  std::string_view path;
  std::string_view method;
  Kind kind;
};

constexpr std::array k_routes{
  Route{"/identity/token", "POST", Kind::iam_token},
  Route{"/instance_identity/v1/token", "PUT", Kind::imds_handle},
  Route{"/identity/v1/token", "PUT", Kind::imds_handle},
  Route{"/instance_identity/v1/iam_token", "POST", Kind::imds_iam_token},
  Route{"/identity/v1/iam_tokens", "POST", Kind::imds_iam_token},
  Route{"/healthz", "GET", Kind::healthz},
  Route{"/readyz", "GET", Kind::readyz},
  Route{"/metrics", "GET", Kind::metrics},
};

Response plain(int status, std::string body = {})
{
  Response r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(body);
  return r;
}

int status_of(proto::ErrorCode code)
{
  switch (code) {
  case proto::ErrorCode::bad_request:
  case proto::ErrorCode::unknown_profile: return 400;
  case proto::ErrorCode::request_too_large: return 413;
  case proto::ErrorCode::forbidden: return 403;
  case proto::ErrorCode::busy:
  case proto::ErrorCode::unavailable: return 503;
  case proto::ErrorCode::internal: return 500;
  }
  return 500;
}

void add_retry_after(Response& r, const proto::ErrorInfo& error)
{
  if (r.status == 503) {
    r.headers.push_back({"Retry-After", std::to_string(std::max<std::int64_t>(error.retry_after_s.value_or(1), 1))});
  }
}

bool all_digits(std::string_view text)
{
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "YYYY-MM-DD" (any date: old SDKs send 2021-09-20).
bool is_date(std::string_view text)
{
  return text.size() == 10 && text[4] == '-' && text[7] == '-' && all_digits(text.substr(0, 4))
         && all_digits(text.substr(5, 2)) && all_digits(text.substr(8, 2));
}

// The last ':'-separated segment of a CRN ("Profile-2" of "...::profile:Profile-2").
std::string_view last_segment(std::string_view crn)
{
  const auto colon = crn.rfind(':');
  return colon == std::string_view::npos ? crn : crn.substr(colon + 1);
}

bool matches_id(const config::Profile& p, std::string_view id)
{
  return p.profile_id == id || (!p.profile_crn.empty() && p.profile_crn.ends_with(fmt::format(":profile:{}", id)));
}

bool matches_crn(const config::Profile& p, std::string_view crn)
{
  return p.profile_crn == crn || (!p.profile_id.empty() && p.profile_id == last_segment(crn));
}

} // namespace

// ---------------------------------------------------------------------------
// Handles

bool HandleTable::add(std::string handle, uid_t uid, WallClock::time_point expires, WallClock::time_point now)
{
  if (now - m_last_sweep >= std::chrono::seconds(10) || m_handles.size() >= k_max) {
    sweep(now);
  }
  auto& count = m_per_uid[uid];
  if (count >= k_per_uid) {
    // This uid's oldest handle makes room: one user cannot crowd out another.
    auto oldest = m_handles.end();
    for (auto it = m_handles.begin(); it != m_handles.end(); ++it) {
      if (it->second.uid == uid && (oldest == m_handles.end() || it->second.order < oldest->second.order)) {
        oldest = it;
      }
    }
    if (oldest != m_handles.end()) {
      m_handles.erase(oldest);
      --count;
    }
  } else if (m_handles.size() >= k_max) {
    if (count == 0) {
      m_per_uid.erase(uid);
    }
    return false;
  }
  m_handles[std::move(handle)] = Entry{uid, expires, m_next++};
  ++count;
  return true;
}

bool HandleTable::valid(std::string_view handle, uid_t uid, WallClock::time_point now) const
{
  const auto it = m_handles.find(handle);
  return it != m_handles.end() && it->second.uid == uid && now < it->second.expires;
}

void HandleTable::sweep(WallClock::time_point now)
{
  m_last_sweep = now;
  for (auto it = m_handles.begin(); it != m_handles.end();) {
    if (now >= it->second.expires) {
      auto count = m_per_uid.find(it->second.uid);
      if (count != m_per_uid.end() && --count->second == 0) {
        m_per_uid.erase(count);
      }
      it = m_handles.erase(it);
    } else {
      ++it;
    }
  }
}

// ---------------------------------------------------------------------------
// Helpers

bool is_loopback_host_header(std::string_view host)
{
  std::string_view name = host;
  std::string_view port;
  if (host.starts_with('[')) {
    const auto close = host.find(']');
    if (close == std::string_view::npos) {
      return false;
    }
    name = host.substr(0, close + 1);
    port = host.substr(close + 1);
  } else if (const auto colon = host.find(':'); colon != std::string_view::npos) {
    name = host.substr(0, colon);
    port = host.substr(colon);
  }
  if (!port.empty() && (port[0] != ':' || port.size() > 6 || !all_digits(port.substr(1)))) {
    return false;
  }
  return !name.empty() && config::is_loopback_host(name);
}

std::vector<const config::Profile*> select_profiles(const config::Config& config, const Selector& selector)
{
  std::vector<const config::Profile*> out;
  const bool none = !selector.id && !selector.crn && !selector.name;
  bool name_by_profile_name = false;
  if (selector.name) {
    name_by_profile_name = std::any_of(config.profiles.begin(), config.profiles.end(),
                                       [&](const config::Profile& p) { return p.profile_name == *selector.name; });
  }
  for (const auto& p : config.profiles) {
    if (none) {
      if (p.profile_id.empty() && p.profile_name.empty() && p.profile_crn.empty()) {
        out.push_back(&p);
      }
      continue;
    }
    if (selector.id && !matches_id(p, *selector.id)) {
      continue;
    }
    if (selector.crn && !matches_crn(p, *selector.crn)) {
      continue;
    }
    if (selector.name && (name_by_profile_name ? p.profile_name != *selector.name : p.name != *selector.name)) {
      continue;
    }
    out.push_back(&p);
  }
  return out;
}

std::string rfc3339(WallClock::time_point t)
{
  const std::time_t seconds = WallClock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&seconds, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
}

// ---------------------------------------------------------------------------
// Routes

Routes::Routes(server::Dispatcher& dispatcher, engine::Engine& engine, RoutePorts ports)
  : m_dispatcher(dispatcher),
    m_engine(engine),
    m_ports(std::move(ports))
{
  if (!m_ports.random) {
    m_ports.random = [](std::span<unsigned char> out) {
      std::size_t done = 0;
      while (done < out.size()) {
        const auto n = ::getrandom(out.data() + done, out.size() - done, 0);
        if (n < 0) {
          if (errno == EINTR) {
            continue;
          }
          throw std::runtime_error("getrandom failed");
        }
        done += static_cast<std::size_t>(n);
      }
    };
  }
  m_ports.random(m_id_prefix);
}

namespace {

// Two lowercase hex digits per byte, appended to `out`.
void append_hex(std::string& out, std::span<const unsigned char> bytes)
{
  static constexpr char k_hex[] = "0123456789abcdef";
  for (const unsigned char b : bytes) {
    out.push_back(k_hex[b >> 4]);
    out.push_back(k_hex[b & 0x0F]);
  }
}

} // namespace

std::string Routes::random_hex(std::size_t bytes)
{
  std::vector<unsigned char> raw(bytes);
  m_ports.random(raw);
  std::string out;
  out.reserve(bytes * 2);
  append_hex(out, raw);
  return out;
}

std::string Routes::uuid()
{
  std::array<unsigned char, 16> b{};
  std::copy(m_id_prefix.begin(), m_id_prefix.end(), b.begin());
  const std::uint64_t n = ++m_id_counter;
  for (std::size_t i = 0; i < 8; ++i) {
    b[8 + i] = static_cast<unsigned char>(n >> (56 - 8 * i));
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);
  // 8-4-4-4-12 hex digits.
  std::string out;
  out.reserve(36);
  const std::span<const unsigned char> all(b);
  append_hex(out, all.subspan(0, 4));
  for (const std::size_t at : {4, 6, 8}) {
    out.push_back('-');
    append_hex(out, all.subspan(at, 2));
  }
  out.push_back('-');
  append_hex(out, all.subspan(10, 6));
  return out;
}

void Routes::handle(const Request& request, const server::Caller* caller, Done done)
{
  auto finish = [this, &done](Counted counted, Response response) {
    count(counted);
    done(std::move(response));
  };
  const auto* host = request.header("Host");
  if (host != nullptr && !is_loopback_host_header(*host)) {
    finish({std::nullopt, proto::ErrorCode::forbidden}, plain(403, "Host must be localhost or a loopback address\n"));
    return;
  }
  if (request.header("Origin") != nullptr) {
    finish({std::nullopt, proto::ErrorCode::forbidden}, plain(403, "requests from web pages are refused\n"));
    return;
  }
  if (caller == nullptr) {
    finish({std::nullopt, proto::ErrorCode::forbidden}, plain(403, "the calling user could not be identified\n"));
    return;
  }
  const Route* route = nullptr;
  bool path_known = false;
  std::string allow;
  for (const auto& r : k_routes) {
    if (r.path == request.path) {
      path_known = true;
      if (r.method == request.method) {
        route = &r;
      } else {
        allow = std::string(r.method);
      }
    }
  }
  if (!path_known) {
    finish({std::nullopt, proto::ErrorCode::bad_request}, plain(404, "no such path\n"));
    return;
  }
  if (route == nullptr) {
    auto r = plain(405, "method not allowed\n");
    r.headers.push_back({"Allow", allow});
    finish({std::nullopt, proto::ErrorCode::bad_request}, std::move(r));
    return;
  }
  const std::optional<proto::Op> op = route->kind == Kind::imds_handle ? std::nullopt
                                      : route->kind == Kind::healthz    ? std::optional(proto::Op::ping)
                                      : route->kind == Kind::readyz     ? std::optional(proto::Op::status)
                                      : route->kind == Kind::metrics    ? std::optional(proto::Op::metrics)
                                                                        : std::optional(proto::Op::token);
  Finish finish_route = [this, op, done = std::move(done)](std::optional<proto::ErrorCode> error, Response response) {
    count({op, error});
    done(std::move(response));
  };
  switch (route->kind) {
  case Kind::healthz: finish_route(std::nullopt, plain(200, "ok\n")); return;
  case Kind::readyz: {
    std::string missing;
    for (const auto& profile : m_engine.status().profiles) {
      const bool valid = profile.state == engine::State::fresh || profile.state == engine::State::refreshing
                         || profile.state == engine::State::stale;
      if (!valid) {
        missing += missing.empty() ? profile.name : ", " + profile.name;
      }
    }
    if (missing.empty()) {
      finish_route(std::nullopt, plain(200, "ready\n"));
    } else {
      finish_route(proto::ErrorCode::unavailable, plain(503, fmt::format("no valid token: {}\n", missing)));
    }
    return;
  }
  case Kind::metrics: {
    auto text = m_dispatcher.metrics_text();
    if (!text) {
      finish_route(proto::ErrorCode::internal, plain(500, "metrics are not available\n"));
      return;
    }
    auto r = plain(200, std::move(*text));
    r.content_type = std::string(k_metrics_type);
    finish_route(std::nullopt, std::move(r));
    return;
  }
  case Kind::iam_token: iam_token(request, *caller, std::move(finish_route)); return;
  case Kind::imds_handle: imds_handle(request, *caller, std::move(finish_route)); return;
  case Kind::imds_iam_token: imds_iam_token(request, *caller, std::move(finish_route)); return;
  }
}

// ---------------------------------------------------------------------------
// IAM style: POST /identity/token

namespace {

Response json_response(int status, std::string body)
{
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response iam_error(int status, std::string_view code, std::string_view message, const std::string& request_id)
{
  return json_response(status, fmt::format(R"({{"errorCode":{},"errorMessage":{},"context":{{"requestId":{}}}}})",
                                           json::quoted(code), json::quoted(message), json::quoted(request_id)));
}

Response imds_error(int status, std::string_view code, std::string_view message, const std::string& trace)
{
  return json_response(status, fmt::format(R"({{"errors":[{{"code":{},"message":{}}}],"trace":{}}})",
                                           json::quoted(code), json::quoted(message), json::quoted(trace)));
}

// True if `body` is one JSON object (no duplicate keys) or blank (read as
// {}), set in `out`; it lives as long as `parser`.
bool json_object(simdjson::dom::parser& parser, std::string_view body, simdjson::dom::object& out)
{
  const auto doc = json::parse_document(parser, trim(body).empty() ? std::string_view("{}") : body);
  return doc && doc->get_object().get(out) == simdjson::SUCCESS;
}

// What `selector` asks for, for the audit trail: "id=..., name=...".
std::string describe(const Selector& selector)
{
  std::string out;
  for (const auto& [key, value] : {std::pair{"id", &selector.id}, std::pair{"crn", &selector.crn},
                                  std::pair{"name", &selector.name}}) {
    if (*value) {
      out += fmt::format("{}{}={}", out.empty() ? "" : ", ", key, **value);
    }
  }
  return out.empty() ? std::string("(the default profile)") : out;
}

// The first profile `selector` matches that `caller` may use, or the error:
// none configured (unknown_profile) or none for this caller (forbidden);
// either is audited.
tl::expected<std::string, proto::ErrorInfo> pick(server::Dispatcher& dispatcher, const Selector& selector,
                                                 const server::Caller& caller)
{
  const auto candidates = select_profiles(dispatcher.config(), selector);
  if (candidates.empty()) {
    proto::ErrorInfo error{proto::ErrorCode::unknown_profile, "no configured profile matches", {}, {}};
    dispatcher.deny(caller, describe(selector), error);
    return tl::unexpected(std::move(error));
  }
  for (const auto* p : candidates) {
    if (dispatcher.may_use(*p, caller)) {
      return p->name;
    }
  }
  auto denied = dispatcher.authorize(candidates.front()->name, caller);
  return tl::unexpected(denied ? std::move(*denied)
                               : proto::ErrorInfo{proto::ErrorCode::forbidden, "caller may not use this profile", {}, {}});
}

} // namespace

void Routes::iam_token(const Request& request, const server::Caller& caller, Finish done)
{
  const std::string request_id = uuid();
  auto fail = [&](proto::ErrorCode code, std::string_view message) {
    done(code, iam_error(status_of(code), proto::to_string(code), message, request_id));
  };
  const auto* type = request.header("Content-Type");
  if (type == nullptr || media_type(*type) != k_form) {
    fail(proto::ErrorCode::bad_request, "Content-Type must be application/x-www-form-urlencoded");
    return;
  }
  const auto form = parse_form(request.body);
  if (!form) {
    fail(proto::ErrorCode::bad_request, "the form body cannot be decoded");
    return;
  }
  for (const auto* name : {"grant_type", "cr_token", "profile_id", "profile_name", "profile_crn"}) {
    if (count_field(*form, name) > 1) {
      fail(proto::ErrorCode::bad_request, fmt::format("{} given more than once", name));
      return;
    }
  }
  const auto grant_type = find_field(*form, "grant_type");
  if (!grant_type || *grant_type != k_cr_token_grant) {
    fail(proto::ErrorCode::bad_request, fmt::format("grant_type must be {}", k_cr_token_grant));
    return;
  }
  const auto cr_token = find_field(*form, "cr_token");
  if (!cr_token || trim(*cr_token).empty()) {
    fail(proto::ErrorCode::bad_request, "cr_token is required (any non-blank value: the caller is identified by uid)");
    return;
  }
  Selector selector;
  const auto take = [&](std::string_view field, std::optional<std::string>& out) {
    if (const auto value = find_field(*form, field); value && !value->empty()) {
      out = std::string(*value);
    }
  };
  take("profile_id", selector.id);
  take("profile_crn", selector.crn);
  take("profile_name", selector.name);
  if (!selector.id && !selector.crn && !selector.name) {
    fail(proto::ErrorCode::bad_request, "one of profile_id, profile_name, profile_crn is required");
    return;
  }
  const auto profile = pick(m_dispatcher, selector, caller);
  if (!profile) {
    fail(profile.error().code, profile.error().message);
    return;
  }
  m_dispatcher.grant(*profile, caller, std::nullopt,
                     [request_id, done = std::move(done)](tl::expected<engine::Grant, proto::ErrorInfo> result) {
                       if (!result) {
                         auto r = iam_error(status_of(result.error().code), proto::to_string(result.error().code),
                                            result.error().message, request_id);
                         add_retry_after(r, result.error());
                         done(result.error().code, std::move(r));
                         return;
                       }
                       Response r;
                       r.body = fmt::format(R"({{"access_token":{},"refresh_token":"not_supported",)"
                                            R"("token_type":"Bearer","expires_in":{},"expiration":{},)"
                                            R"("scope":"ibm openid"}})",
                                            json::quoted(result->access_token.expose()), result->expires_in,
                                            result->expires_at);
                       r.headers.push_back({"Cache-Control", "no-store"});
                       done(std::nullopt, std::move(r));
                     });
}

// ---------------------------------------------------------------------------
// IMDS style

void Routes::imds_handle(const Request& request, const server::Caller& caller, Finish done)
{
  const std::string trace = uuid();
  auto fail = [&](int status, std::string_view code, std::string_view message) {
    done(proto::ErrorCode::bad_request, imds_error(status, code, message, trace));
  };
  const auto* flavor = request.header("Metadata-Flavor");
  if (flavor == nullptr || *flavor != "ibm") {
    fail(400, "missing_metadata_flavor", "the Metadata-Flavor: ibm header is required");
    return;
  }
  const auto query = parse_form(request.query);
  const auto version = query ? find_field(*query, "version") : std::nullopt;
  if (!version || !is_date(*version)) {
    fail(400, "missing_version", "the version query parameter (a date, YYYY-MM-DD) is required");
    return;
  }
  auto lifetime = k_default_handle_lifetime;
  simdjson::dom::parser parser;
  simdjson::dom::object object;
  if (!json_object(parser, request.body, object)) {
    fail(400, "bad_request", "the body must be a JSON object");
    return;
  }
  if (const auto field = object["expires_in"]; field.error() == simdjson::SUCCESS) {
    std::int64_t seconds = 0;
    if (field.get_int64().get(seconds) != simdjson::SUCCESS || seconds < k_min_handle_lifetime
        || seconds > k_max_handle_lifetime) {
      fail(400, "invalid_expires_in", fmt::format("expires_in must be an integer from {} to {}",
                                                  k_min_handle_lifetime, k_max_handle_lifetime));
      return;
    }
    lifetime = std::chrono::seconds(seconds);
  }
  const auto now = m_ports.now();
  const auto expires = now + lifetime;
  std::string handle = random_hex(32);
  if (!m_handles.add(handle, caller.uid, expires, now)) {
    auto r = imds_error(503, "busy", "too many live tokens; retry shortly", trace);
    r.headers.push_back({"Retry-After", "1"});
    done(proto::ErrorCode::busy, std::move(r));
    return;
  }
  Response r;
  r.body = fmt::format(R"({{"access_token":{},"created_at":{},"expires_at":{},"expires_in":{}}})", json::quoted(handle),
                       json::quoted(rfc3339(now)), json::quoted(rfc3339(expires)), lifetime.count());
  r.headers.push_back({"Cache-Control", "no-store"});
  wipe_string(handle);
  done(std::nullopt, std::move(r));
}

void Routes::imds_iam_token(const Request& request, const server::Caller& caller, Finish done)
{
  const std::string trace = uuid();
  // `counted`: the socket protocol's code this error counts as.
  auto fail = [&](int status, std::string_view code, std::string_view message,
                  proto::ErrorCode counted = proto::ErrorCode::bad_request) {
    done(counted, imds_error(status, code, message, trace));
  };
  const auto* authorization = request.header("Authorization");
  std::string_view handle;
  if (authorization != nullptr && authorization->size() > 7 && iequals(authorization->substr(0, 7), "Bearer ")) {
    handle = trim(std::string_view(*authorization).substr(7));
  }
  const auto now = m_ports.now();
  if (handle.empty() || !m_handles.valid(handle, caller.uid, now)) {
    fail(401, "unauthenticated", "a valid token from PUT /instance_identity/v1/token is required");
    return;
  }
  Selector selector;
  simdjson::dom::parser parser;
  simdjson::dom::object object;
  if (!json_object(parser, request.body, object)) {
    fail(400, "bad_request", "the body must be a JSON object");
    return;
  }
  if (const auto tp = object["trusted_profile"]; tp.error() == simdjson::SUCCESS) {
    simdjson::dom::object fields;
    if (tp.get_object().get(fields) != simdjson::SUCCESS) {
      fail(400, "bad_request", "trusted_profile must be an object");
      return;
    }
    for (const auto& [key, out] : {std::pair{"id", &selector.id}, std::pair{"crn", &selector.crn},
                                  std::pair{"name", &selector.name}}) {
      if (const auto value = fields[key]; value.error() == simdjson::SUCCESS) {
        std::string_view text;
        if (value.get_string().get(text) != simdjson::SUCCESS || text.empty()) {
          fail(400, "bad_request", fmt::format("trusted_profile.{} must be a non-empty string", key));
          return;
        }
        *out = std::string(text);
      }
    }
  }
  const bool no_selector = !selector.id && !selector.crn && !selector.name;
  if (no_selector && select_profiles(m_dispatcher.config(), selector).empty()) {
    fail(400, "missing_field", "trusted_profile is required: no profile is configured without one");
    return;
  }
  const auto profile = pick(m_dispatcher, selector, caller);
  if (!profile) {
    fail(status_of(profile.error().code), proto::to_string(profile.error().code), profile.error().message,
         profile.error().code);
    return;
  }
  m_dispatcher.grant(*profile, caller, std::nullopt,
                     [clock = m_ports.now, trace, done = std::move(done)](
                       tl::expected<engine::Grant, proto::ErrorInfo> result) {
                       if (!result) {
                         auto r = imds_error(status_of(result.error().code), proto::to_string(result.error().code),
                                             result.error().message, trace);
                         add_retry_after(r, result.error());
                         done(result.error().code, std::move(r));
                         return;
                       }
                       const auto issued = clock();
                       const auto expires = WallClock::time_point(std::chrono::seconds(result->expires_at));
                       Response r;
                       r.body = fmt::format(R"({{"access_token":{},"created_at":{},"expires_at":{},"expires_in":{}}})",
                                            json::quoted(result->access_token.expose()), json::quoted(rfc3339(issued)),
                                            json::quoted(rfc3339(expires)), result->expires_in);
                       r.headers.push_back({"Cache-Control", "no-store"});
                       done(std::nullopt, std::move(r));
                     });
}

} // namespace iamtok::http
