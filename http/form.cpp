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
  const std::string_view special = plus_is_space ? "%+" : "%";
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    // Copy the run up to the next escape in one go (a CR token is one run).
    const auto run = std::min(text.find_first_of(special), text.size());
    out.append(text.substr(0, run));
    text.remove_prefix(run);
    if (text.empty()) {
      break;
    }
    if (text[0] == '+') {
      out.push_back(' ');
      text.remove_prefix(1);
      continue;
    }
    if (text.size() < 3) {
      return std::nullopt;
    }
    const int hi = hex_value(text[1]);
    const int lo = hex_value(text[2]);
    if (hi < 0 || lo < 0) {
      return std::nullopt;
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    text.remove_prefix(3);
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
