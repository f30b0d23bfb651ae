#pragma once

// Shared JSON helpers: whole-document parsing with simdjson's DOM API (which
// validates everything, unlike On-Demand), duplicate-key detection, and
// output escaping. Used by the protocol codec, the config loader, the
// upstream reply parsers and the simulator.

#include <simdjson.h>
#include <tl/expected.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace iamtok::json {

// True if `text` is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF).
bool is_valid_utf8(std::string_view text) noexcept;

// Appends `text` to `out` as a JSON string literal, quotes included: escapes
// '"', '\\' and control characters. Invalid UTF-8 bytes become U+FFFD.
void append_quoted(std::string& out, std::string_view text);
std::string quoted(std::string_view text);

// Parses one whole JSON document (a trailing second value or any syntax
// error fails) and rejects duplicate object keys anywhere in it. On failure
// returns a one-line message saying what is wrong (never echoing the input).
// The returned element lives as long as `parser` and its next parse().
tl::expected<simdjson::dom::element, std::string>
parse_document(simdjson::dom::parser& parser, std::string_view text);

// The JSON path ("a.b[2].c") of the first duplicate key in `element`, if any.
std::optional<std::string> find_duplicate_key(simdjson::dom::element element);

} // namespace iamtok::json
