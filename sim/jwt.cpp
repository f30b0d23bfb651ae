#include "sim/jwt.hpp"

#include "proto/json.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>

namespace iamtok::sim {

namespace {

// Development keys: the simulator is a test tool, its tokens grant nothing.
constexpr std::string_view k_identity_key = "iamtoken-sim development key: instance identity";
constexpr std::string_view k_access_key = "iamtoken-sim development key: IAM access";

constexpr std::string_view k_header = R"({"alg":"HS256","typ":"JWT","kid":"iamtoken-sim"})";

std::string_view key_for(TokenKind kind)
{
  return kind == TokenKind::identity ? k_identity_key : k_access_key;
}

std::array<unsigned char, 32> hs256(std::string_view key, std::string_view data)
{
  std::array<unsigned char, 32> mac{};
  unsigned int length = 0;
  HMAC(EVP_sha256(),
       key.data(),
       static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()),
       data.size(),
       mac.data(),
       &length);
  return mac;
}

} // namespace

std::string_view to_string(TokenError error)
{
  switch (error) {
  case TokenError::malformed:
    return "malformed token";
  case TokenError::bad_signature:
    return "token not signed by this issuer";
  case TokenError::expired:
    return "token expired";
  }
  return "invalid token";
}

Secret mint_token(TokenKind kind, std::string_view payload_json)
{
  std::string token = base64url_encode(k_header);
  token += '.';
  token += base64url_encode(payload_json);
  const auto mac = hs256(key_for(kind), token);
  token += '.';
  token += base64url_encode({reinterpret_cast<const char*>(mac.data()), mac.size()});
  return Secret(std::move(token));
}

tl::expected<Claims, TokenError> verify_token(TokenKind kind, std::string_view token, std::int64_t now)
{
  const auto first = token.find('.');
  const auto second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
    return tl::unexpected(TokenError::malformed);
  }
  const auto signature = base64url_decode(token.substr(second + 1));
  const auto payload = base64url_decode(token.substr(first + 1, second - first - 1));
  const auto header = base64url_decode(token.substr(0, first));
  if (!signature || !payload || !header) {
    return tl::unexpected(TokenError::malformed);
  }
  const auto mac = hs256(key_for(kind), token.substr(0, second));
  if (signature->size() != mac.size() || CRYPTO_memcmp(signature->data(), mac.data(), mac.size()) != 0) {
    return tl::unexpected(TokenError::bad_signature);
  }

  simdjson::dom::parser parser;
  const json::WipeOnExit wipe{parser}; // the claims of a token
  const auto doc = json::parse_document(parser, *payload);
  if (!doc || !doc->is_object()) {
    return tl::unexpected(TokenError::malformed);
  }
  Claims claims;
  const auto object = doc->get_object().value_unsafe();
  std::string_view text;
  if (object["sub"].get(text) != simdjson::SUCCESS) {
    return tl::unexpected(TokenError::malformed);
  }
  claims.sub = text;
  if (object["jti"].get(text) != simdjson::SUCCESS) {
    return tl::unexpected(TokenError::malformed);
  }
  claims.jti = text;
  if (object["iat"].get(claims.iat) != simdjson::SUCCESS || object["exp"].get(claims.exp) != simdjson::SUCCESS) {
    return tl::unexpected(TokenError::malformed);
  }
  if (kind == TokenKind::access) {
    if (object["profile_id"].get(text) != simdjson::SUCCESS) {
      return tl::unexpected(TokenError::malformed);
    }
    claims.profile_id = text;
  }
  if (claims.exp <= now) {
    return tl::unexpected(TokenError::expired);
  }
  return claims;
}

} // namespace iamtok::sim
