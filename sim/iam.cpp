// IAM (docs/upstream.md): the CR-token grant at POST /identity/token, which
// takes an IMDS instance identity token as CR token and a trusted profile.

#include "sim/simulator.hpp"

#include "http/form.hpp"
#include "proto/json.hpp"
#include "sim/context.hpp"
#include "sim/jwt.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>

namespace iamtok::sim {

using http::count_field;
using http::find_field;
using http::parse_form;

Response Simulator::handle_iam(const Request& request, RequestContext& ctx)
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

  const std::int64_t iat = ctx.start_unix();
  const Secret token = mint_access_token(*profile, iat, k_cr_token_grant);
  json::ObjectWriter reply;
  reply.string("access_token", token.expose())
    .string("refresh_token", "not_supported")
    .string("token_type", "Bearer")
    .integer("expires_in", m_config.iam_lifetime.count())
    .integer("expiration", iat + m_config.iam_lifetime.count())
    .string("scope", "ibm openid");
  Response r = json_response(200, reply.finish());
  r.headers.push_back({"Transaction-Id", ctx.trace});
  return r;
}

} // namespace iamtok::sim
