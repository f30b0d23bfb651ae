#include "util/strings.hpp"

#include <algorithm>

namespace iamtok::util {

std::string_view trim_right(std::string_view text) noexcept
{
  while (!text.empty() && is_space(text.back())) {
    text.remove_suffix(1);
  }
  return text;
}

std::string_view trim(std::string_view text) noexcept
{
  while (!text.empty() && is_space(text.front())) {
    text.remove_prefix(1);
  }
  return trim_right(text);
}

std::string to_lower(std::string_view text)
{
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](char c) { return to_lower(c); });
  return out;
}

bool iequals(std::string_view a, std::string_view b) noexcept
{
  return a.size() == b.size()
         && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return to_lower(x) == to_lower(y); });
}

bool istarts_with(std::string_view text, std::string_view prefix) noexcept
{
  return text.size() >= prefix.size() && iequals(text.substr(0, prefix.size()), prefix);
}

bool is_name(std::string_view name, std::size_t max_size) noexcept
{
  return !name.empty() && name.size() <= max_size && std::all_of(name.begin(), name.end(), is_name_char);
}

} // namespace iamtok::util
