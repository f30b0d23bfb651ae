#include "daemon/config/reader.hpp"

#include "proto/json.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace iamtok::config::read {

namespace {

using simdjson::dom::element_type;

std::string without_trailing_slashes(std::string_view url)
{
  while (url.ends_with('/') && !url.ends_with("://")) {
    url.remove_suffix(1);
  }
  return std::string(url);
}

// A name the NameResolver knows, through `lookup` (its user or group).
template<typename Lookup>
std::optional<NamedId> resolved_name(Reader& reader, element value, const std::string& path, std::string_view what,
                                     Lookup lookup)
{
  const auto name = nonempty_string(reader, value, path);
  if (!name) {
    return std::nullopt;
  }
  std::string owned(*name);
  if (const auto id = lookup(owned)) {
    return NamedId{std::move(owned), *id};
  }
  reader.add(path, fmt::format("unknown {} {}", what, quote(owned)));
  return std::nullopt;
}

} // namespace

void Reader::add(std::string path, std::string message)
{
  m_problems.push_back({std::move(path), std::move(message)});
}

void Reader::unknown_key(const std::string& path, std::string_view key)
{
  // A key that the path cannot show is quoted in the message.
  std::string shown;
  json::append_path_key(shown, key);
  add(path, shown == key ? "unknown key" : fmt::format("unknown key {}", quote(key)));
}

void Reader::saw(std::string path)
{
  m_seen.insert(std::move(path));
}

bool Reader::has(std::string_view path) const
{
  return m_seen.find(path) != m_seen.end();
}

std::string quote(std::string_view value)
{
  constexpr std::size_t k_max = 80;
  if (value.size() <= k_max) {
    return json::quoted(value);
  }
  return json::quoted(value.substr(0, k_max)) + "...";
}

std::string child(const std::string& path, std::string_view key)
{
  std::string out = path;
  json::append_path_key(out, key);
  return out;
}

std::string item(const std::string& path, std::size_t index)
{
  std::string out = path;
  json::append_path_index(out, index);
  return out;
}

std::optional<simdjson::dom::object> object(Reader& reader, element value, const std::string& path)
{
  simdjson::dom::object result;
  if (value.get_object().get(result) != simdjson::SUCCESS) {
    reader.add(path, "must be an object");
    return std::nullopt;
  }
  return result;
}

std::optional<std::string_view> string(Reader& reader, element value, const std::string& path)
{
  std::string_view result;
  if (value.get_string().get(result) != simdjson::SUCCESS) {
    reader.add(path, "must be a string");
    return std::nullopt;
  }
  return result;
}

std::optional<std::string_view> nonempty_string(Reader& reader, element value, const std::string& path)
{
  auto result = string(reader, value, path);
  if (result && result->empty()) {
    reader.add(path, "must not be empty");
    return std::nullopt;
  }
  return result;
}

std::optional<std::string> absolute_path(Reader& reader, element value, const std::string& path)
{
  const auto text = string(reader, value, path);
  if (!text) {
    return std::nullopt;
  }
  if (!text->starts_with('/') || text->find('\0') != std::string_view::npos) {
    reader.add(path, fmt::format("must be an absolute path (is {})", quote(*text)));
    return std::nullopt;
  }
  return std::string(*text);
}

std::optional<mode_t> file_mode(Reader& reader, element value, const std::string& path)
{
  const auto text = string(reader, value, path);
  if (!text) {
    return std::nullopt;
  }
  const bool octal = !text->empty() && text->size() <= 4
                     && std::all_of(text->begin(), text->end(), [](char c) { return c >= '0' && c <= '7'; });
  if (!octal) {
    reader.add(path, fmt::format("must be octal digits like \"0660\" (is {})", quote(*text)));
    return std::nullopt;
  }
  mode_t mode = 0;
  for (const char c : *text) {
    mode = static_cast<mode_t>(mode * 8 + static_cast<mode_t>(c - '0'));
  }
  if (mode > 0777) {
    reader.add(path, fmt::format("must be at most \"0777\" (is {})", quote(*text)));
    return std::nullopt;
  }
  return mode;
}

std::optional<NamedId> user_name(Reader& reader, element value, const std::string& path)
{
  return resolved_name(reader, value, path, "user", [&](const std::string& name) { return reader.names().user(name); });
}

std::optional<NamedId> group_name(Reader& reader, element value, const std::string& path)
{
  return resolved_name(reader, value, path, "group",
                       [&](const std::string& name) { return reader.names().group(name); });
}

std::optional<std::int64_t> integer(Reader& reader, element value, const std::string& path, std::int64_t min,
                                    std::int64_t max)
{
  std::int64_t result = 0;
  switch (value.type()) {
  case element_type::INT64:
    result = value.get_int64().value_unsafe();
    break;
  case element_type::UINT64: // only used above INT64_MAX
    reader.add(path, fmt::format("must be between {} and {} (is {})", min, max, value.get_uint64().value_unsafe()));
    return std::nullopt;
  default:
    reader.add(path, "must be an integer");
    return std::nullopt;
  }
  if (result < min || result > max) {
    reader.add(path, fmt::format("must be between {} and {} (is {})", min, max, result));
    return std::nullopt;
  }
  return result;
}

std::optional<double> Number::operator()(Reader& reader, element value, const std::string& path) const
{
  double result = 0;
  switch (value.type()) {
  case element_type::INT64: result = static_cast<double>(value.get_int64().value_unsafe()); break;
  case element_type::UINT64: result = static_cast<double>(value.get_uint64().value_unsafe()); break;
  case element_type::DOUBLE: result = value.get_double().value_unsafe(); break;
  default:
    reader.add(path, "must be a number");
    return std::nullopt;
  }
  if (!(result >= min && result <= max)) {
    reader.add(path, fmt::format("must be between {} and {} (is {})", min, max, result));
    return std::nullopt;
  }
  return result;
}

std::string one_of_message(std::span<const std::string_view> names, std::string_view got)
{
  std::string out = "must be ";
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) {
      out += i + 1 == names.size() ? " or " : ", ";
    }
    out += json::quoted(names[i]);
  }
  return fmt::format("{} (is {})", out, quote(got));
}

std::optional<std::size_t> one_of(Reader& reader, element value, const std::string& path, std::size_t count,
                                  const std::function<std::string_view(std::size_t)>& name)
{
  const auto text = string(reader, value, path);
  if (!text) {
    return std::nullopt;
  }
  std::vector<std::string_view> names;
  for (std::size_t i = 0; i < count; ++i) {
    if (name(i) == *text) {
      return i;
    }
    names.push_back(name(i));
  }
  reader.add(path, one_of_message(names, *text));
  return std::nullopt;
}

std::optional<std::string> Endpoint::operator()(Reader& reader, element value, const std::string& path) const
{
  const auto text = string(reader, value, path);
  if (!text) {
    return std::nullopt;
  }
  const auto url = parse_url(*text);
  if (!url) {
    reader.add(path, fmt::format("must be an http:// or https:// URL with a host, an optional port and "
                                 "path, and no query (is {})",
                                 quote(*text)));
    return std::nullopt;
  }
  if (schemes == Schemes::https_unless_loopback && url->scheme != "https" && !is_loopback_host(url->host)) {
    reader.add(path, fmt::format("must use https:// unless the host is loopback (is {})", quote(*text)));
    return std::nullopt;
  }
  return without_trailing_slashes(*text);
}

bool for_each_item(Reader& reader, element value, const std::string& path, std::string_view if_empty,
                   const std::function<void(element entry, const std::string& path)>& each)
{
  simdjson::dom::array entries;
  if (value.get_array().get(entries) != simdjson::SUCCESS) {
    reader.add(path, "must be an array");
    return false;
  }
  if (entries.size() == 0 && !if_empty.empty()) {
    reader.add(path, std::string(if_empty));
    return false;
  }
  std::size_t index = 0;
  for (const auto entry : entries) {
    each(entry, item(path, index++));
  }
  return true;
}

} // namespace iamtok::config::read
