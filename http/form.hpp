#pragma once

// application/x-www-form-urlencoded and URL query strings: "a=1&b=x%3Ay".

#include <tl/expected.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace iamtok::http {

using FormFields = std::vector<std::pair<std::string, std::string>>;

// `text` with each "%XX" replaced by its byte and, if `plus_is_space`, each
// '+' by a space; nullopt for a '%' not followed by two hex digits.
std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space = true);

// The decoded name/value pairs in order ("a" alone is a = ""; empty pieces
// between '&'s are skipped), or a short message for a bad percent escape.
tl::expected<FormFields, std::string> parse_form(std::string_view text);

// The value of the first field called `name`, if any.
std::optional<std::string_view> find_field(const FormFields& fields, std::string_view name);

// How many fields are called `name`.
std::size_t count_field(const FormFields& fields, std::string_view name);

} // namespace iamtok::http
