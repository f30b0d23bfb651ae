#pragma once

// base64url (RFC 4648 §5) without padding: the encoding of a JWT's parts.

#include <optional>
#include <string>
#include <string_view>

namespace iamtok::util {

std::string base64url_encode(std::string_view data);

// Decodes `text` into `out`, reserved up front so that no copy of a secret
// is left behind by a reallocation. False for a character outside the
// alphabet (padding included) or a length no encoding has; `out` may then
// hold part of the bytes (wipe it if they are secret).
bool base64url_decode(std::string_view text, std::string& out);

// The decoded bytes, or nullopt as above.
std::optional<std::string> base64url_decode(std::string_view text);

} // namespace iamtok::util
