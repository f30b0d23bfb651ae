#include "proto/json.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <unordered_set>
#include <vector>

namespace iamtok::json {

namespace {

// Length of the well-formed UTF-8 sequence starting at s[0] (Unicode Table
// 3-7), or 0 if it is not one.
std::size_t utf8_sequence_length(std::string_view s) noexcept
{
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const auto in = [](unsigned char c, unsigned char lo, unsigned char hi) { return c >= lo && c <= hi; };
  const unsigned char b0 = byte(0);
  if (b0 < 0x80) {
    return 1;
  }
  if (in(b0, 0xC2, 0xDF)) {
    return s.size() >= 2 && in(byte(1), 0x80, 0xBF) ? 2 : 0;
  }
  if (in(b0, 0xE0, 0xEF)) {
    if (s.size() < 3) {
      return 0;
    }
    const unsigned char lo = b0 == 0xE0 ? 0xA0 : 0x80;
    const unsigned char hi = b0 == 0xED ? 0x9F : 0xBF;
    return in(byte(1), lo, hi) && in(byte(2), 0x80, 0xBF) ? 3 : 0;
  }
  if (in(b0, 0xF0, 0xF4)) {
    if (s.size() < 4) {
      return 0;
    }
    const unsigned char lo = b0 == 0xF0 ? 0x90 : 0x80;
    const unsigned char hi = b0 == 0xF4 ? 0x8F : 0xBF;
    return in(byte(1), lo, hi) && in(byte(2), 0x80, 0xBF) && in(byte(3), 0x80, 0xBF) ? 4 : 0;
  }
  return 0;
}

bool needs_care(char c) noexcept
{
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u >= 0x7F || c == '"' || c == '\\';
}

// Length of the run from text[at] on that needs no care: 8 bytes at a time
// while no byte of the word needs it (SWAR: the usual has-zero-byte and
// has-byte-less-than tests, exact as yes/no answers), then byte by byte. A
// token is one long run, so this is most of the cost of a token reply.
std::size_t plain_run(std::string_view text, std::size_t at) noexcept
{
  constexpr std::uint64_t ones = 0x0101010101010101ULL;
  constexpr std::uint64_t highs = 0x8080808080808080ULL;
  const auto has_zero_byte = [](std::uint64_t v) { return (v - ones) & ~v & highs; };
  std::size_t i = at;
  for (; i + 8 <= text.size(); i += 8) {
    std::uint64_t w = 0;
    std::memcpy(&w, text.data() + i, sizeof w);
    const std::uint64_t care = (w & highs)                       // 0x80 and above
                               | ((w - ones * 0x20) & ~w & highs) // below 0x20
                               | has_zero_byte(w ^ (ones * 0x7F)) | has_zero_byte(w ^ (ones * '"'))
                               | has_zero_byte(w ^ (ones * '\\'));
    if (care != 0) {
      break;
    }
  }
  while (i < text.size() && !needs_care(text[i])) {
    ++i;
  }
  return i - at;
}

bool is_safe_key(std::string_view key) noexcept
{
  return !key.empty() && key.size() <= 64 && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'
           || c == '-';
  });
}

// The keys of one object seen so far: a linear scan for the usual handful,
// a hash set for big objects (so a huge object cannot take quadratic time).
class KeySet
{
public:
  // False if `key` was already there.
  bool insert(std::string_view key)
  {
    if (m_keys.size() < k_linear_max) {
      if (std::find(m_keys.begin(), m_keys.end(), key) != m_keys.end()) {
        return false;
      }
      m_keys.push_back(key);
      return true;
    }
    if (m_set.empty()) {
      m_set.insert(m_keys.begin(), m_keys.end());
    }
    return m_set.insert(key).second;
  }

private:
  static constexpr std::size_t k_linear_max = 16;
  std::vector<std::string_view> m_keys;
  std::unordered_set<std::string_view> m_set;
};

// Depth is bounded by the parser's max_depth (1024 by default), so recursion
// is safe here.
bool find_duplicate(simdjson::dom::element element, std::string& path)
{
  const std::size_t path_size = path.size();
  if (simdjson::dom::object object; element.get_object().get(object) == simdjson::SUCCESS) {
    KeySet seen;
    for (const auto field : object) {
      append_path_key(path, field.key);
      if (!seen.insert(field.key) || find_duplicate(field.value, path)) {
        return true;
      }
      path.resize(path_size);
    }
  } else if (simdjson::dom::array array; element.get_array().get(array) == simdjson::SUCCESS) {
    std::size_t index = 0;
    for (const auto value : array) {
      append_path_index(path, index++);
      if (find_duplicate(value, path)) {
        return true;
      }
      path.resize(path_size);
    }
  }
  return false;
}

} // namespace

bool is_valid_utf8(std::string_view text) noexcept
{
  return simdjson::validate_utf8(text.data(), text.size());
}

void append_quoted(std::string& out, std::string_view text)
{
  static constexpr char k_hex[] = "0123456789abcdef";
  out.reserve(out.size() + text.size() + 2);
  out.push_back('"');
  std::size_t i = 0;
  while (i < text.size()) {
    // Copy the longest run that needs no care in one go (a token is one run).
    const std::size_t run = plain_run(text, i);
    out.append(text.substr(i, run));
    i += run;
    if (i == text.size()) {
      break;
    }
    const char c = text[i];
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x80) {
      const std::size_t length = utf8_sequence_length(text.substr(i));
      if (length == 0) {
        out.append("\xEF\xBF\xBD"); // U+FFFD REPLACEMENT CHARACTER
        i += 1;
      } else {
        out.append(text.substr(i, length));
        i += length;
      }
      continue;
    }
    switch (c) {
    case '"': out.append("\\\""); break;
    case '\\': out.append("\\\\"); break;
    case '\b': out.append("\\b"); break;
    case '\f': out.append("\\f"); break;
    case '\n': out.append("\\n"); break;
    case '\r': out.append("\\r"); break;
    case '\t': out.append("\\t"); break;
    default: {
      const char escape[] = {'\\', 'u', '0', '0', k_hex[u >> 4], k_hex[u & 0xF]};
      out.append(escape, sizeof escape);
      break;
    }
    }
    i += 1;
  }
  out.push_back('"');
}

std::string quoted(std::string_view text)
{
  std::string out;
  append_quoted(out, text);
  return out;
}

void ObjectWriter::begin_member(std::string_view key)
{
  if (m_out.size() > 1) {
    m_out.push_back(',');
  }
  append_quoted(m_out, key);
  m_out.push_back(':');
}

ObjectWriter& ObjectWriter::string(std::string_view key, std::string_view value)
{
  begin_member(key);
  append_quoted(m_out, value);
  return *this;
}

ObjectWriter& ObjectWriter::boolean(std::string_view key, bool value)
{
  begin_member(key);
  m_out.append(value ? "true" : "false");
  return *this;
}

ObjectWriter& ObjectWriter::raw(std::string_view key, std::string_view json)
{
  begin_member(key);
  m_out.append(json);
  return *this;
}

std::string ObjectWriter::finish()
{
  std::string out = std::move(m_out);
  out.push_back('}');
  m_out.clear();
  return out;
}

std::string_view describe_error(simdjson::error_code error) noexcept
{
  switch (error) {
  case simdjson::SUCCESS: return "no error";
  case simdjson::CAPACITY: return "document too large";
  case simdjson::MEMALLOC: return "out of memory";
  case simdjson::DEPTH_ERROR: return "nested too deeply";
  case simdjson::STRING_ERROR: return "invalid string or escape";
  case simdjson::T_ATOM_ERROR:
  case simdjson::F_ATOM_ERROR:
  case simdjson::N_ATOM_ERROR: return "invalid literal";
  case simdjson::NUMBER_ERROR: return "invalid or out-of-range number";
  case simdjson::UTF8_ERROR: return "invalid UTF-8";
  case simdjson::EMPTY: return "empty document";
  case simdjson::UNESCAPED_CHARS: return "unescaped control character in a string";
  case simdjson::UNCLOSED_STRING: return "unclosed string";
  case simdjson::INCORRECT_TYPE: return "wrong type";
  case simdjson::NUMBER_OUT_OF_RANGE: return "number out of range";
  case simdjson::NO_SUCH_FIELD: return "missing field";
  case simdjson::TRAILING_CONTENT: return "trailing content after the value";
  case simdjson::INCOMPLETE_ARRAY_OR_OBJECT: return "unterminated array or object";
  default: return "syntax error";
  }
}

tl::expected<simdjson::dom::element, std::string>
parse_document(simdjson::dom::parser& parser, std::string_view text)
{
  simdjson::padded_string padded(text);
  simdjson::dom::element root;
  const auto error = parser.parse(padded).get(root);
  // The copy may hold a secret (an IAM reply); the DOM does not refer to it.
  explicit_bzero(padded.data(), padded.size());
  if (error != simdjson::SUCCESS) {
    return tl::unexpected(fmt::format("invalid JSON: {}", describe_error(error)));
  }
  if (auto path = find_duplicate_key(root)) {
    return tl::unexpected(fmt::format("duplicate key {}", *path));
  }
  return root;
}

void wipe_strings(simdjson::dom::parser& parser) noexcept
{
  // The size document::allocate() gave the buffer (simdjson 3.0).
  const std::size_t capacity = parser.doc.capacity();
  if (capacity != 0 && parser.doc.string_buf) {
    explicit_bzero(parser.doc.string_buf.get(), SIMDJSON_ROUNDUP_N(5 * capacity / 3 + simdjson::SIMDJSON_PADDING, 64));
  }
}

std::optional<std::string> find_duplicate_key(simdjson::dom::element element)
{
  std::string path;
  if (find_duplicate(element, path)) {
    return path;
  }
  return std::nullopt;
}

void append_path_key(std::string& path, std::string_view key)
{
  if (!path.empty()) {
    path.push_back('.');
  }
  path.append(is_safe_key(key) ? key : std::string_view("<key>"));
}

void append_path_index(std::string& path, std::size_t index)
{
  fmt::format_to(std::back_inserter(path), "[{}]", index);
}

} // namespace iamtok::json
