#include "proto/json.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

using iamtok::json::append_quoted;
using iamtok::json::ObjectWriter;
using iamtok::json::find_duplicate_key;
using iamtok::json::is_valid_utf8;
using iamtok::json::parse_document;
namespace json = iamtok::json;

namespace {

// The string value of a one-string document such as "\"abc\"".
std::string parse_string(std::string_view document)
{
  simdjson::dom::parser parser;
  auto root = parse_document(parser, document);
  REQUIRE(root);
  std::string_view text;
  REQUIRE(root->get_string().get(text) == simdjson::SUCCESS);
  return std::string(text);
}

std::string parse_error(std::string_view document)
{
  simdjson::dom::parser parser;
  auto root = parse_document(parser, document);
  REQUIRE_FALSE(root);
  return root.error();
}

} // namespace

TEST_CASE("append_quoted escapes quotes, backslashes and control characters")
{
  CHECK(json::quoted("plain") == "\"plain\"");
  CHECK(json::quoted("a\"b") == R"("a\"b")");
  CHECK(json::quoted("a\\b") == R"("a\\b")");
  CHECK(json::quoted("line\nnext") == R"("line\nnext")");
  CHECK(json::quoted("\b\f\r\t") == R"("\b\f\r\t")");
  CHECK(json::quoted("\x01") == R"("\u0001")");
  CHECK(json::quoted("\x1f") == R"("\u001f")");
  CHECK(json::quoted("\x7f") == R"("\u007f")");
  CHECK(json::quoted(std::string_view("a\0b", 3)) == R"("a\u0000b")");
  CHECK(json::quoted("") == "\"\"");
}

TEST_CASE("append_quoted appends to what is already in the buffer")
{
  std::string out = "{\"k\":";
  append_quoted(out, "v");
  CHECK(out == "{\"k\":\"v\"");
}

TEST_CASE("append_quoted keeps well-formed UTF-8 and replaces each invalid byte with U+FFFD")
{
  const std::string replacement = "\xEF\xBF\xBD";
  CHECK(json::quoted("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80") == "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"");
  CHECK(json::quoted("a\xFFz") == "\"a" + replacement + "z\"");
  CHECK(json::quoted("\xC3") == "\"" + replacement + "\"");                            // truncated
  CHECK(json::quoted("\xC0\x80") == "\"" + replacement + replacement + "\"");          // overlong NUL
  CHECK(json::quoted("\xED\xA0\x80") == "\"" + replacement + replacement + replacement + "\""); // surrogate
  CHECK(json::quoted("\xF4\x90\x80\x80").find('\xF4') == std::string::npos);          // > U+10FFFF
  CHECK(is_valid_utf8(json::quoted("\xE2\x82 \x80\xBF \xF0\x9F\x98")));
}

TEST_CASE("every single byte and byte pair quotes to a valid JSON string")
{
  for (int first = 0; first < 256; ++first) {
    for (int second = 0; second < 256; second += 7) {
      const std::string text = {static_cast<char>(first), static_cast<char>(second)};
      const std::string out = json::quoted(text);
      CAPTURE(first, second);
      REQUIRE(is_valid_utf8(out));
      const std::string back = parse_string(out);
      if (is_valid_utf8(text)) {
        REQUIRE(back == text);
      }
    }
  }
}

TEST_CASE("a byte that needs care is found at every position of a long plain run")
{
  // Long runs are scanned 8 bytes at a time: each byte value, at each offset
  // of a word and across word edges, must come out exactly as it does alone.
  for (int byte = 0; byte < 256; ++byte) {
    const std::string alone = json::quoted(std::string(1, static_cast<char>(byte)));
    const std::string middle = alone.substr(1, alone.size() - 2);
    for (std::size_t at = 0; at < 24; ++at) {
      std::string text(24, 'x');
      text[at] = static_cast<char>(byte);
      CAPTURE(byte, at);
      REQUIRE(json::quoted(text) == "\"" + std::string(at, 'x') + middle + std::string(23 - at, 'x') + "\"");
    }
  }
}

TEST_CASE("ObjectWriter writes an object with no member as {}")
{
  CHECK(ObjectWriter().finish() == "{}");
}

TEST_CASE("ObjectWriter keeps members in the order given, without whitespace")
{
  ObjectWriter writer;
  writer.string("b", "x").string("a", "y").string("c", "");
  CHECK(writer.finish() == R"({"b":"x","a":"y","c":""})");
}

TEST_CASE("ObjectWriter escapes quotes, backslashes and control characters in values and keys")
{
  ObjectWriter writer;
  writer.string("q", "say \"hi\"")
    .string("b", "a\\b")
    .string("c", "line\nnext\t\x01\x1f\x7f")
    .string("nul", std::string_view("a\0b", 3))
    .string("k\"\n", "v");
  CHECK(writer.finish()
        == R"({"q":"say \"hi\"","b":"a\\b","c":"line\nnext\t\u0001\u001f\u007f","nul":"a\u0000b","k\"\n":"v"})");
}

TEST_CASE("ObjectWriter keeps non-ASCII UTF-8 and replaces invalid bytes with U+FFFD")
{
  ObjectWriter writer;
  writer.string("caf\xC3\xA9", "\xE2\x82\xAC \xF0\x9F\x98\x80").string("bad", "a\xFFz");
  const std::string text = writer.finish();
  CHECK(text == "{\"caf\xC3\xA9\":\"\xE2\x82\xAC \xF0\x9F\x98\x80\",\"bad\":\"a\xEF\xBF\xBDz\"}");
  CHECK(is_valid_utf8(text));
}

TEST_CASE("ObjectWriter writes integers of every width and sign, and booleans")
{
  ObjectWriter writer;
  writer.integer("zero", 0)
    .integer("int", -42)
    .integer("min", std::numeric_limits<std::int64_t>::min())
    .integer("max", std::numeric_limits<std::uint64_t>::max())
    .integer("short", static_cast<unsigned short>(65535))
    .boolean("yes", true)
    .boolean("no", false);
  CHECK(writer.finish()
        == R"({"zero":0,"int":-42,"min":-9223372036854775808,"max":18446744073709551615,"short":65535,)"
           R"("yes":true,"no":false})");
}

TEST_CASE("ObjectWriter nests raw JSON values such as another writer's object and an array")
{
  ObjectWriter inner;
  inner.string("name", "reader").integer("n", 1);
  ObjectWriter outer;
  outer.raw("profile", inner.finish()).raw("list", "[1,2]").raw("empty", ObjectWriter().finish()).string("after", "x");
  const std::string text = outer.finish();
  CHECK(text == R"({"profile":{"name":"reader","n":1},"list":[1,2],"empty":{},"after":"x"})");

  simdjson::dom::parser parser;
  auto root = parse_document(parser, text);
  REQUIRE(root);
  std::string_view name;
  REQUIRE(root->at_pointer("/profile/name").get(name) == simdjson::SUCCESS);
  CHECK(name == "reader");
}

TEST_CASE("is_valid_utf8 rejects overlongs, surrogates and code points past U+10FFFF")
{
  CHECK(is_valid_utf8(""));
  CHECK(is_valid_utf8("ascii"));
  CHECK(is_valid_utf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF"));
  CHECK_FALSE(is_valid_utf8("\xC0\xAF"));
  CHECK_FALSE(is_valid_utf8("\xE0\x80\xAF"));
  CHECK_FALSE(is_valid_utf8("\xED\xA0\x80"));
  CHECK_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));
  CHECK_FALSE(is_valid_utf8("\xFF"));
  CHECK_FALSE(is_valid_utf8("\xC3"));
}

TEST_CASE("parse_document accepts one whole document with surrounding whitespace")
{
  simdjson::dom::parser parser;
  auto root = parse_document(parser, " {\"a\":[1,2,{\"b\":null}]}\r\n");
  REQUIRE(root);
  std::int64_t value = 0;
  REQUIRE(root->at_pointer("/a/1").get(value) == simdjson::SUCCESS);
  CHECK(value == 2);
}

TEST_CASE("parse_document rejects syntax errors, trailing values and empty input")
{
  CHECK(parse_error("{} {}").rfind("invalid JSON: ", 0) == 0);
  CHECK(parse_error("{\"a\":1}x").rfind("invalid JSON: ", 0) == 0);
  CHECK(parse_error("{\"a\":1,}").rfind("invalid JSON: ", 0) == 0);
  CHECK(parse_error("{\"op\":tru}").rfind("invalid JSON: ", 0) == 0);
  CHECK(parse_error("") == "invalid JSON: empty document");
  CHECK(parse_error(" \n") == "invalid JSON: empty document");
  CHECK(parse_error("{\"a\":\"unterminated}").rfind("invalid JSON: ", 0) == 0);
}

TEST_CASE("parse_document rejects invalid UTF-8 and raw control characters in strings")
{
  CHECK(parse_error("{\"a\":\"\xFF\"}") == "invalid JSON: invalid UTF-8");
  CHECK(parse_error("{\"a\":\"x\x01y\"}") == "invalid JSON: unescaped control character in a string");
  CHECK(parse_error("{\"a\":\"x\ny\"}") == "invalid JSON: unescaped control character in a string");
}

TEST_CASE("parse_document rejects deep nesting and numbers out of range without crashing")
{
  const std::string deep = std::string(5000, '[') + std::string(5000, ']');
  CHECK(parse_error(deep) == "invalid JSON: nested too deeply");
  const std::string deep_objects = [] {
    std::string s;
    for (int i = 0; i < 5000; ++i) {
      s += "{\"a\":";
    }
    s += "1";
    return s + std::string(5000, '}');
  }();
  CHECK(parse_error(deep_objects) == "invalid JSON: nested too deeply");
  CHECK(parse_error("{\"a\":1e400}") == "invalid JSON: invalid or out-of-range number");
  CHECK(parse_error("{\"a\":99999999999999999999}") == "invalid JSON: invalid or out-of-range number");
}

TEST_CASE("parse_document rejects duplicate keys at the top level and nested, naming the path")
{
  CHECK(parse_error(R"({"op":"ping","op":"token"})") == "duplicate key op");
  CHECK(parse_error(R"({"a":1,"b":{"c":1,"c":2}})") == "duplicate key b.c");
  CHECK(parse_error(R"({"profiles":[{"name":"a"},{"name":"b"},{"name":"c","name":"d"}]})")
        == "duplicate key profiles[2].name");
  CHECK(parse_error(R"([0,[1,{"x":1,"x":1}]])") == "duplicate key [1][1].x");
  // Escapes are decoded before comparing: "\u0061" is "a".
  CHECK(parse_error(R"({"a":1,"\u0061":2})") == "duplicate key a");
}

TEST_CASE("duplicate keys are found in objects with many members too")
{
  std::string document = "{";
  for (int i = 0; i < 100; ++i) {
    document += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  }
  simdjson::dom::parser parser;
  CHECK(parse_document(parser, document + "\"last\":0}"));
  CHECK(parse_error(document + "\"k57\":0}") == "duplicate key k57");
}

TEST_CASE("paths never show keys that could carry a value")
{
  const std::string long_key(100, 'k');
  CHECK(parse_error("{\"" + long_key + "\":{\"x\":1,\"x\":2}}") == "duplicate key <key>.x");
  CHECK(parse_error(R"({"a b":1,"a b":2})") == "duplicate key <key>");
}

TEST_CASE("error messages never contain the input's values")
{
  const std::string secret = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0.c2ln";
  CHECK(parse_error("{\"t\":\"" + secret + "\",").find("eyJ") == std::string::npos);
  CHECK(parse_error("{\"t\":\"" + secret + "\",\"t\":\"" + secret + "\"}").find("eyJ") == std::string::npos);
  CHECK(parse_error("\"" + secret + "\xFF\"").find("eyJ") == std::string::npos);
}

TEST_CASE("find_duplicate_key returns nothing for a clean document")
{
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  REQUIRE(parser.parse(std::string_view(R"({"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]})")).get(root)
          == simdjson::SUCCESS);
  CHECK_FALSE(find_duplicate_key(root));
}

TEST_CASE("the parsed document does not depend on the input buffer")
{
  simdjson::dom::parser parser;
  std::string text = R"({"name":"reader"})";
  auto root = parse_document(parser, text);
  REQUIRE(root);
  text.assign(text.size(), 'x');
  std::string_view name;
  REQUIRE(root->at_key("name").get(name) == simdjson::SUCCESS);
  CHECK(name == "reader");
}

TEST_CASE("wipe_strings zeroes the parser's copy of string values")
{
  simdjson::dom::parser parser;
  auto root = parse_document(parser, R"({"access_token":"not-a-real-token-value"})");
  REQUIRE(root);
  std::string_view token;
  REQUIRE(root->at_key("access_token").get(token) == simdjson::SUCCESS);
  REQUIRE(token.size() == 22);
  iamtok::json::wipe_strings(parser);
  CHECK(token.find_first_not_of('\0') == std::string_view::npos);
}
