#include "http/form.hpp"

#include <algorithm>

namespace iamtok::http {

namespace {

int hex_value(char c)
{
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

} // namespace

std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space)
{
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) {
        return std::nullopt;
      }
      const int hi = hex_value(text[i + 1]);
      const int lo = hex_value(text[i + 2]);
      if (hi < 0 || lo < 0) {
        return std::nullopt;
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

tl::expected<FormFields, std::string> parse_form(std::string_view text)
{
  FormFields fields;
  while (!text.empty()) {
    const auto amp = text.find('&');
    const auto piece = text.substr(0, amp);
    text = amp == std::string_view::npos ? std::string_view{} : text.substr(amp + 1);
    if (piece.empty()) {
      continue;
    }
    const auto eq = piece.find('=');
    auto name = percent_decode(piece.substr(0, eq));
    auto value = percent_decode(eq == std::string_view::npos ? std::string_view{} : piece.substr(eq + 1));
    if (!name || !value) {
      return tl::unexpected(std::string("bad percent-encoding in form data"));
    }
    fields.emplace_back(std::move(*name), std::move(*value));
  }
  return fields;
}

std::optional<std::string_view> find_field(const FormFields& fields, std::string_view name)
{
  const auto it = std::find_if(fields.begin(), fields.end(), [&](const auto& f) { return f.first == name; });
  if (it == fields.end()) {
    return std::nullopt;
  }
  return std::string_view(it->second);
}

std::size_t count_field(const FormFields& fields, std::string_view name)
{
  return static_cast<std::size_t>(
    std::count_if(fields.begin(), fields.end(), [&](const auto& f) { return f.first == name; }));
}

} // namespace iamtok::http
