// IMDS (docs/upstream.md): the instance identity token (PUT .../token) and
// its exchange for an IAM access token (POST .../iam_token[s]), in both API
// generations.

#include "sim/simulator.hpp"

#include "http/form.hpp"
#include "proto/json.hpp"
#include "sim/context.hpp"
#include "sim/jwt.hpp"
#include "util/strings.hpp"

#include <fmt/format.h>

#include <array>

namespace iamtok::sim {

using http::find_field;
using http::parse_form;

namespace {

using Member = simdjson::dom::key_value_pair;

// IMDS API versions: a date from the first identity API version up to today
// (earlier dates get invalid_version_range); from k_new_api_version on, the
// /instance_identity paths are gone.
constexpr std::string_view k_min_api_version = "2022-03-01";
constexpr std::string_view k_new_api_version = "2025-08-26";

constexpr std::string_view k_instance_id = "0717_00000000-0000-4000-8000-0000000000a1";
constexpr std::int64_t k_default_identity_lifetime = 300;
constexpr std::int64_t k_min_identity_lifetime = 5;
constexpr std::int64_t k_max_identity_lifetime = 3600;

std::string instance_crn()
{
  return fmt::format("crn:v1:bluemix:public:is:us-south-1:a/{}::instance:{}", k_account_id, k_instance_id);
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

// The checks both IMDS calls share, in order: method, `version`, the path's
// API generation, Metadata-Flavor. The error reply, or nullopt.
std::optional<Response> check_imds(const Request& request, const RequestContext& ctx, std::string_view method,
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
  const std::string today = iso8601(ctx.start).substr(0, 10); // YYYY-MM-DD
  if (!is_date(*version) || *version > today) {
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

// Calls `visit` on each member of the request's JSON object body (on none
// for an empty body) until it returns an error reply. That reply, the one to
// a body that is not a JSON object, or nullopt.
template<typename Visit>
std::optional<Response> for_each_member(const Request& request, const RequestContext& ctx, Visit visit)
{
  if (request.body.empty()) {
    return std::nullopt;
  }
  simdjson::dom::parser parser;
  const auto doc = json::parse_document(parser, request.body);
  simdjson::dom::object object;
  if (!doc || doc->get(object) != simdjson::SUCCESS) {
    return ctx.imds_error(400, "invalid_request", "The request body must be a JSON object.");
  }
  for (const auto field : object) {
    if (auto error = visit(field)) {
      return error;
    }
  }
  return std::nullopt;
}

Response unknown_field(const RequestContext& ctx, std::string_view key)
{
  std::string name;
  json::append_path_key(name, key);
  return ctx.imds_error(400, "unknown_field", fmt::format("The field `{}` is not allowed.", name),
                        ErrorTarget{name, "field", std::nullopt});
}

// The reply both IMDS calls give: the token, when it was made and how long it lasts.
Response token_reply(const Secret& token, SysTime created, std::chrono::seconds lifetime)
{
  json::ObjectWriter body;
  body.string("access_token", token.expose())
    .string("created_at", iso8601(created))
    .string("expires_at", iso8601(created + lifetime))
    .integer("expires_in", lifetime.count());
  return json_response(200, body.finish());
}

} // namespace

Response Simulator::handle_imds_token(const Request& request, RequestContext& ctx)
{
  if (auto error = check_imds(request, ctx, "PUT", true)) {
    return std::move(*error);
  }
  // Like IMDS, a JSON body is accepted whatever its Content-Type says (IBM's
  // own curl examples send -d '{}', curl's form content type).

  std::int64_t lifetime = k_default_identity_lifetime;
  std::optional<std::string> nonce;
  auto error = for_each_member(request, ctx, [&](const Member& field) -> std::optional<Response> {
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
      return unknown_field(ctx, field.key);
    }
    return std::nullopt;
  });
  if (error) {
    return std::move(*error);
  }

  const std::int64_t iat = ctx.start_unix();
  json::ObjectWriter account;
  account.string("bss", k_account_id);
  json::ObjectWriter payload;
  payload.string("iss", "https://iamtoken-sim.local/instance_identity")
    .string("sub", instance_crn())
    .string("instance_id", k_instance_id)
    .raw("account", account.finish())
    .string("jti", uuid());
  if (nonce) {
    payload.string("nonce", *nonce);
  }
  payload.integer("iat", iat).integer("exp", iat + jwt_lifetime(lifetime));
  const Secret token = mint_token(TokenKind::identity, payload.finish());
  return token_reply(token, ctx.start, std::chrono::seconds(lifetime));
}

Response Simulator::handle_imds_iam_token(const Request& request, RequestContext& ctx)
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
  auto error = for_each_member(request, ctx, [&](const Member& field) -> std::optional<Response> {
    if (field.key != "trusted_profile") {
      return unknown_field(ctx, field.key);
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
    return std::nullopt;
  });
  if (error) {
    return std::move(*error);
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

  const Secret token = mint_access_token(*profile, ctx.start_unix(), k_cr_token_grant);
  return token_reply(token, ctx.start, m_config.iam_lifetime);
}

} // namespace iamtok::sim
