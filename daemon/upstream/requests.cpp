#include "daemon/upstream/requests.hpp"

#include "proto/json.hpp"

#include <fmt/format.h>

namespace iamtok::upstream {

namespace {

void append_form_encoded(std::string& out, std::string_view text)
{
  static constexpr std::string_view k_hex = "0123456789ABCDEF";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'
        || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(k_hex[byte >> 4]);
      out.push_back(k_hex[byte & 0x0F]);
    }
  }
}

void append_form_field(std::string& out, std::string_view name, std::string_view value)
{
  if (!out.empty()) {
    out.push_back('&');
  }
  out.append(name);
  out.push_back('=');
  append_form_encoded(out, value);
}

} // namespace

std::string form_encode(std::string_view text)
{
  std::string out;
  append_form_encoded(out, text);
  return out;
}

std::optional<ImdsPaths> imds_paths(std::string_view version)
{
  if (version == "2025-08-26") {
    return ImdsPaths{"/identity/v1/token", "/identity/v1/iam_tokens"};
  }
  if (version == "2022-03-01") {
    return ImdsPaths{"/instance_identity/v1/token", "/instance_identity/v1/iam_token"};
  }
  return std::nullopt;
}

std::string imds_token_body(int expires_in)
{
  return fmt::format(R"({{"expires_in":{}}})", expires_in);
}

std::string imds_exchange_body(const engine::ProfileTarget& profile)
{
  std::string_view key;
  std::string_view value;
  if (!profile.id.empty()) {
    key = "id";
    value = profile.id;
  } else if (!profile.crn.empty()) {
    key = "crn";
    value = profile.crn;
  } else if (!profile.name.empty()) {
    key = "name";
    value = profile.name;
  } else {
    return {};
  }
  std::string body = R"({"trusted_profile":{")";
  body.append(key);
  body += "\":";
  json::append_quoted(body, value);
  body += "}}";
  return body;
}

std::string iam_exchange_body(const Secret& cr_token, const engine::ProfileTarget& profile)
{
  std::string body;
  // Room for everything up front, so no reallocation leaves a copy of the
  // token behind in freed memory.
  body.reserve(cr_token.size() * 3 + (profile.id.size() + profile.name.size() + profile.crn.size()) * 3
               + 128);
  append_form_field(body, "grant_type", "urn:ibm:params:oauth:grant-type:cr-token");
  append_form_field(body, "cr_token", cr_token.expose());
  if (!profile.id.empty()) {
    append_form_field(body, "profile_id", profile.id);
  }
  if (!profile.name.empty()) {
    append_form_field(body, "profile_name", profile.name);
  }
  if (!profile.crn.empty()) {
    append_form_field(body, "profile_crn", profile.crn);
  }
  return body;
}

} // namespace iamtok::upstream
