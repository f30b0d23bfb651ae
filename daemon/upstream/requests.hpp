#pragma once

// The bodies and paths of the requests iamtokend sends (docs/upstream.md),
// byte for byte. Pure: no Asio, no curl.

#include "daemon/engine/ports.hpp"
#include "proto/secret.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace iamtok::upstream {

// `text` percent-encoded for application/x-www-form-urlencoded: letters,
// digits and "-._~" stay, every other byte becomes %XX (upper-case hex).
std::string form_encode(std::string_view text);

// The IMDS paths of an API version: "2025-08-26" -> /identity/v1/token and
// /identity/v1/iam_tokens; "2022-03-01" -> /instance_identity/v1/token and
// /instance_identity/v1/iam_token. nullopt for any other version.
struct ImdsPaths
{
  std::string_view token;
  std::string_view iam_token;
};
std::optional<ImdsPaths> imds_paths(std::string_view version);

// {"expires_in":N}: the body of the IMDS instance identity token PUT.
std::string imds_token_body(int expires_in);

// {"trusted_profile":{"id":...}} (else "crn", else "name", the first one
// set) for the IMDS iam_token POST; empty (no body: the instance's default
// profile) when `profile` names none.
std::string imds_exchange_body(const engine::ProfileTarget& profile);

// The IAM CR-token grant form: grant_type=urn%3Aibm%3A...%3Acr-token
// &cr_token=...&profile_id=...&profile_name=...&profile_crn=... (the profile
// fields that are set, in that order). Holds the CR token: the caller wipes it
// (iamtok::wipe_string) once sent.
std::string iam_exchange_body(const Secret& cr_token, const engine::ProfileTarget& profile);

} // namespace iamtok::upstream
