#pragma once

// ASCII string helpers: locale-independent, for protocol and config text.

#include <string>
#include <string_view>

namespace iamtok::util {

// True for ' ', '\t', '\n', '\v', '\f' and '\r'.
constexpr bool is_space(char c) noexcept
{
  return c == ' ' || (c >= '\t' && c <= '\r');
}

// `text` without leading and trailing ASCII whitespace.
std::string_view trim(std::string_view text) noexcept;
// `text` without trailing ASCII whitespace.
std::string_view trim_right(std::string_view text) noexcept;

// 'A'..'Z' mapped to 'a'..'z'; every other byte unchanged.
constexpr char to_lower(char c) noexcept
{
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}
// `text` with ASCII letters in lower case.
std::string to_lower(std::string_view text);

// True when `a` and `b` are equal but for the case of ASCII letters.
bool iequals(std::string_view a, std::string_view b) noexcept;
// True when `text` starts with `prefix`, ignoring the case of ASCII letters.
bool istarts_with(std::string_view text, std::string_view prefix) noexcept;

// True for the characters of a local name: [A-Za-z0-9._-].
constexpr bool is_name_char(char c) noexcept
{
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.'
         || c == '_' || c == '-';
}
// True when `name` is 1..`max_size` characters, each is_name_char().
bool is_name(std::string_view name, std::size_t max_size = 64) noexcept;

} // namespace iamtok::util
