// libFuzzer target: json::parse_document must accept any bytes without
// crashing, and append_quoted must turn any bytes into a JSON string literal
// that is valid UTF-8 and parses back to the input (or, for input that is
// not UTF-8, to the input with U+FFFD in place of the bad bytes).

#include "proto/json.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace iamtok::json;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  simdjson::dom::parser parser;

  const auto document = parse_document(parser, input);
  if (!document) {
    const auto& message = document.error();
    if (message.empty() || message.find('\n') != std::string::npos || !is_valid_utf8(message)) {
      std::abort();
    }
  } else if (!is_valid_utf8(input)) {
    std::abort(); // simdjson validates UTF-8 of the whole document
  } else if (find_duplicate_key(*document)) {
    std::abort(); // parse_document rejects duplicate keys
  }

  const bool valid = is_valid_utf8(input);
  const auto literal = quoted(input);
  if (!is_valid_utf8(literal) || literal.size() < 2 || literal.front() != '"' || literal.back() != '"') {
    std::abort();
  }
  for (const char c : literal) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      std::abort(); // control characters are always escaped
    }
  }
  const auto back = parse_document(parser, literal);
  if (!back) {
    std::abort();
  }
  std::string_view text;
  if (back->get_string().get(text) != simdjson::SUCCESS) {
    std::abort();
  }
  if (valid && text != input) {
    std::abort();
  }
  if (!valid && (text.size() < input.size() || text.find("\xEF\xBF\xBD") == std::string_view::npos)) {
    std::abort(); // each bad byte becomes the 3-byte U+FFFD
  }
  std::string appended = "x";
  append_quoted(appended, input);
  if (std::string_view(appended).substr(1) != literal) {
    std::abort();
  }
  return 0;
}
