#pragma once

// JWT-shaped tokens for the simulator: header.payload.signature, base64url
// without padding, HS256 with a built-in development key per token kind. An
// instance identity token (the CR token) and an IAM access token are signed
// with different keys, so neither passes for the other.

#include "proto/secret.hpp"
#include "util/base64.hpp"

#include <tl/expected.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace iamtok::sim {

// base64url without padding (util/base64.hpp).
using util::base64url_decode;
using util::base64url_encode;

enum class TokenKind {
  identity, // instance identity token from IMDS (accepted as CR token by IAM)
  access,   // IAM access token for a trusted profile
};

// The claims the simulator reads back from a token.
struct Claims
{
  std::string sub;
  std::int64_t iat = 0;
  std::int64_t exp = 0;
  std::string jti;
  std::string profile_id; // access tokens only
};

enum class TokenError {
  malformed,     // not three base64url parts with a JSON header and payload
  bad_signature, // not signed by the simulator's key for that kind
  expired,       // exp is not after `now`
};

// Short fixed text for an error ("malformed token", ...); never token content.
std::string_view to_string(TokenError error);

// A signed token whose payload is `payload_json` (an object the caller built).
Secret mint_token(TokenKind kind, std::string_view payload_json);

// The claims of `token` if it is a well-formed token of `kind` signed by the
// simulator and not expired at Unix time `now`; otherwise why not.
tl::expected<Claims, TokenError> verify_token(TokenKind kind, std::string_view token, std::int64_t now);

} // namespace iamtok::sim
