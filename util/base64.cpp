#include "util/base64.hpp"

#include <cstdint>

namespace iamtok::util {

namespace {

constexpr std::string_view k_alphabet =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// The value of one base64url character, or -1.
int value_of(char c) noexcept
{
  if (c >= 'A' && c <= 'Z') {
    return c - 'A';
  }
  if (c >= 'a' && c <= 'z') {
    return c - 'a' + 26;
  }
  if (c >= '0' && c <= '9') {
    return c - '0' + 52;
  }
  if (c == '-') {
    return 62;
  }
  if (c == '_') {
    return 63;
  }
  return -1;
}

} // namespace

std::string base64url_encode(std::string_view data)
{
  std::string out;
  out.reserve((data.size() * 4 + 2) / 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : data) {
    acc = (acc << 8) | static_cast<unsigned char>(c);
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(k_alphabet[(acc >> bits) & 0x3F]);
    }
  }
  if (bits > 0) {
    out.push_back(k_alphabet[(acc << (6 - bits)) & 0x3F]);
  }
  return out;
}

bool base64url_decode(std::string_view text, std::string& out)
{
  if (text.size() % 4 == 1) {
    return false;
  }
  out.reserve(out.size() + text.size() * 3 / 4 + 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : text) {
    const int value = value_of(c);
    if (value < 0) {
      return false;
    }
    acc = (acc << 6) | static_cast<std::uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return true;
}

std::optional<std::string> base64url_decode(std::string_view text)
{
  std::string out;
  if (!base64url_decode(text, out)) {
    return std::nullopt;
  }
  return out;
}

} // namespace iamtok::util
