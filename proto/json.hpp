#pragma once

// Shared JSON helpers: whole-document parsing with simdjson's DOM API (which
// validates everything, unlike On-Demand), duplicate-key detection, and
// output escaping with a small object writer. Used by the protocol codec,
// the config loader, the upstream reply parsers and the simulator.

#include <simdjson.h>
#include <tl/expected.hpp>

#include <charconv>
#include <concepts>
#include <optional>
#include <string>
#include <string_view>

namespace iamtok::json {

// True if `text` is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF).
bool is_valid_utf8(std::string_view text) noexcept;

// Appends `text` to `out` as a JSON string literal, quotes included: escapes
// '"', '\\', DEL and every control character (short escapes for \b \f \n \r
// \t, \u00XX for the rest). Each byte that is not part of well-formed UTF-8
// becomes U+FFFD, so the output is always valid UTF-8.
void append_quoted(std::string& out, std::string_view text);
std::string quoted(std::string_view text);

// Builds the text of one JSON object, members in the order they are added,
// without whitespace: ObjectWriter().string("a", "x").integer("n", 1).finish()
// is {"a":"x","n":1}, and an object with no member is {}. Keys and string
// values are quoted by append_quoted; raw() appends a value that is already
// JSON text (a nested object from another writer, an array) as it is given.
// Nothing checks that keys are distinct.
class ObjectWriter
{
public:
  ObjectWriter& string(std::string_view key, std::string_view value);
  ObjectWriter& boolean(std::string_view key, bool value);
  ObjectWriter& raw(std::string_view key, std::string_view json);

  template<std::integral T>
    requires(!std::same_as<T, bool>)
  ObjectWriter& integer(std::string_view key, T value)
  {
    char digits[24]; // 20 for the longest 64-bit value, sign included
    const char* end = std::to_chars(digits, digits + sizeof digits, value).ptr;
    return raw(key, std::string_view(digits, static_cast<std::size_t>(end - digits)));
  }

  // The object's text, closing brace included. Call it once: it takes the
  // text out of the writer.
  std::string finish();

private:
  // Appends the separator (from the second member on), the quoted key and ':'.
  void begin_member(std::string_view key);

  std::string m_out = "{";
};

// A short, fixed description of a simdjson error ("syntax error", "invalid
// UTF-8", "nested too deeply", ...); never contains input.
std::string_view describe_error(simdjson::error_code error) noexcept;

// Parses one whole JSON document (a trailing second value or any syntax
// error fails) from a padded copy of `text` and rejects duplicate object keys
// anywhere in it. On failure returns a one-line message, "invalid JSON: <why>"
// or "duplicate key <path>", never echoing input values. The returned element
// lives as long as `parser` and its next parse(); it does not refer to `text`.
tl::expected<simdjson::dom::element, std::string>
parse_document(simdjson::dom::parser& parser, std::string_view text);

// Zeroes the parser's copy of the last document's string values; call it
// (or let a parser go out of scope only after it) when that document held a
// secret such as an access token.
void wipe_strings(simdjson::dom::parser& parser) noexcept;

// Calls wipe_strings(parser) when it goes out of scope: declare one right
// after a parser that will parse a document holding a secret.
struct WipeOnExit
{
  explicit WipeOnExit(simdjson::dom::parser& p) noexcept : parser(p) {}
  simdjson::dom::parser& parser;
  WipeOnExit(const WipeOnExit&) = delete;
  WipeOnExit& operator=(const WipeOnExit&) = delete;
  ~WipeOnExit() { wipe_strings(parser); }
};

// The JSON path of the first duplicate key in `element` (document order), or
// nullopt if there is none. Paths look like "profiles[2].name"; a key that is
// not 1-64 characters of [A-Za-z0-9_-] is shown as "<key>" so no input value
// can leak through a path.
std::optional<std::string> find_duplicate_key(simdjson::dom::element element);

// Appends `key` to a JSON path the way find_duplicate_key does ("a" + "b" ->
// "a.b", unsafe keys as "<key>"); and an array index ("a" + 2 -> "a[2]").
void append_path_key(std::string& path, std::string_view key);
void append_path_index(std::string& path, std::size_t index);

} // namespace iamtok::json
