#include "daemon/config/config.hpp"

#include "proto/json.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <map>
#include <system_error>

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace iamtok::config {

namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

constexpr std::size_t k_max_file_size = 1024 * 1024;
constexpr std::string_view k_imds_versions[] = {"2025-08-26", "2022-03-01"};
constexpr std::array<std::string_view, 3> k_cr_token_paths = {
  "/var/run/secrets/tokens/vault-token",
  "/var/run/secrets/tokens/sa-token",
  "/var/run/secrets/codeengine.cloud.ibm.com/compute-resource-token/token",
};

// A config value echoed in a message: JSON-quoted (so control characters
// cannot break the line) and cut at 80 bytes.
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

bool is_valid_name(std::string_view name)
{
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.'
           || c == '_' || c == '-';
  });
}

std::string without_trailing_slashes(std::string_view url)
{
  while (url.ends_with('/') && !url.ends_with("://")) {
    url.remove_suffix(1);
  }
  return std::string(url);
}

std::string errno_message(int error)
{
  return std::error_code(error, std::system_category()).message();
}

// Walks the document once, filling a Config and collecting every problem.
class Parser
{
public:
  explicit Parser(const NameResolver& resolver) : m_resolver(resolver) {}

  Config config;
  std::vector<Problem> problems;

  void root(element value);

private:
  struct ProfileSeen
  {
    std::string path;
    std::size_t identifiers = 0;
  };

  const NameResolver& m_resolver;
  bool m_saw_imds = false;
  bool m_saw_file = false;
  bool m_saw_exchange = false;
  std::vector<ProfileSeen> m_profiles_seen;

  void add(std::string path, std::string message)
  {
    problems.push_back({std::move(path), std::move(message)});
  }

  void unknown_key(const std::string& path, std::string_view key)
  {
    // A key that the path cannot show is quoted in the message.
    std::string shown;
    json::append_path_key(shown, key);
    add(path, shown == key ? "unknown key" : fmt::format("unknown key {}", quote(key)));
  }

  std::optional<simdjson::dom::object> object(element value, const std::string& path);
  std::optional<simdjson::dom::array> array(element value, const std::string& path);
  std::optional<std::string_view> string(element value, const std::string& path);
  std::optional<std::string_view> nonempty_string(element value, const std::string& path);
  std::optional<std::int64_t> integer(element value, const std::string& path, std::int64_t min,
                                      std::int64_t max);
  std::optional<double> number(element value, const std::string& path, double min, double max);
  std::optional<std::string> endpoint(element value, const std::string& path, bool https_only);
  std::optional<std::string> absolute_path(element value, const std::string& path);

  void socket(element value, const std::string& path);
  void http(element value, const std::string& path);
  void socket_mode(element value, const std::string& path);
  void source(element value, const std::string& path);
  void imds(element value, const std::string& path);
  void file(element value, const std::string& path);
  void iam(element value, const std::string& path);
  void refresh(element value, const std::string& path);
  void profiles(element value, const std::string& path);
  void profile(element value, const std::string& path, Profile& out, std::size_t& identifiers);
  void allow(element value, const std::string& path, Allow& out);
};

std::optional<simdjson::dom::object> Parser::object(element value, const std::string& path)
{
  simdjson::dom::object result;
  if (value.get_object().get(result) != simdjson::SUCCESS) {
    add(path, "must be an object");
    return std::nullopt;
  }
  return result;
}

std::optional<simdjson::dom::array> Parser::array(element value, const std::string& path)
{
  simdjson::dom::array result;
  if (value.get_array().get(result) != simdjson::SUCCESS) {
    add(path, "must be an array");
    return std::nullopt;
  }
  return result;
}

std::optional<std::string_view> Parser::string(element value, const std::string& path)
{
  std::string_view result;
  if (value.get_string().get(result) != simdjson::SUCCESS) {
    add(path, "must be a string");
    return std::nullopt;
  }
  return result;
}

std::optional<std::string_view> Parser::nonempty_string(element value, const std::string& path)
{
  auto result = string(value, path);
  if (result && result->empty()) {
    add(path, "must not be empty");
    return std::nullopt;
  }
  return result;
}

std::optional<std::int64_t>
Parser::integer(element value, const std::string& path, std::int64_t min, std::int64_t max)
{
  std::int64_t result = 0;
  switch (value.type()) {
  case element_type::INT64:
    result = value.get_int64().value_unsafe();
    break;
  case element_type::UINT64: // only used above INT64_MAX
    add(path, fmt::format("must be between {} and {} (is {})", min, max,
                          value.get_uint64().value_unsafe()));
    return std::nullopt;
  default:
    add(path, "must be an integer");
    return std::nullopt;
  }
  if (result < min || result > max) {
    add(path, fmt::format("must be between {} and {} (is {})", min, max, result));
    return std::nullopt;
  }
  return result;
}

std::optional<double> Parser::number(element value, const std::string& path, double min, double max)
{
  double result = 0;
  switch (value.type()) {
  case element_type::INT64: result = static_cast<double>(value.get_int64().value_unsafe()); break;
  case element_type::UINT64: result = static_cast<double>(value.get_uint64().value_unsafe()); break;
  case element_type::DOUBLE: result = value.get_double().value_unsafe(); break;
  default:
    add(path, "must be a number");
    return std::nullopt;
  }
  if (!(result >= min && result <= max)) {
    add(path, fmt::format("must be between {} and {} (is {})", min, max, result));
    return std::nullopt;
  }
  return result;
}

std::optional<std::string> Parser::endpoint(element value, const std::string& path, bool https_only)
{
  const auto text = string(value, path);
  if (!text) {
    return std::nullopt;
  }
  const auto url = parse_url(*text);
  if (!url) {
    add(path, fmt::format("must be an http:// or https:// URL with a host, an optional port and "
                          "path, and no query (is {})",
                          quote(*text)));
    return std::nullopt;
  }
  if (https_only && url->scheme != "https" && !is_loopback_host(url->host)) {
    add(path, fmt::format("must use https:// unless the host is loopback (is {})", quote(*text)));
    return std::nullopt;
  }
  return without_trailing_slashes(*text);
}

std::optional<std::string> Parser::absolute_path(element value, const std::string& path)
{
  const auto text = string(value, path);
  if (!text) {
    return std::nullopt;
  }
  if (!text->starts_with('/') || text->find('\0') != std::string_view::npos) {
    add(path, fmt::format("must be an absolute path (is {})", quote(*text)));
    return std::nullopt;
  }
  return std::string(*text);
}

void Parser::root(element value)
{
  simdjson::dom::object top;
  if (value.get_object().get(top) != simdjson::SUCCESS) {
    add("", "the configuration must be a JSON object");
    return;
  }
  bool saw_profiles = false;
  for (const auto field : top) {
    const std::string path = child("", field.key);
    if (field.key == "socket") {
      socket(field.value, path);
    } else if (field.key == "http") {
      http(field.value, path);
    } else if (field.key == "source") {
      source(field.value, path);
    } else if (field.key == "exchange") {
      m_saw_exchange = true;
      if (const auto text = string(field.value, path)) {
        if (*text == "iam") {
          config.exchange = Exchange::iam;
        } else if (*text == "imds") {
          config.exchange = Exchange::imds;
        } else {
          add(path, fmt::format("must be \"iam\" or \"imds\" (is {})", quote(*text)));
        }
      }
    } else if (field.key == "iam") {
      iam(field.value, path);
    } else if (field.key == "refresh") {
      refresh(field.value, path);
    } else if (field.key == "profiles") {
      saw_profiles = true;
      profiles(field.value, path);
    } else {
      unknown_key(path, field.key);
    }
  }
  if (!saw_profiles) {
    add("profiles", "is required (at least one profile)");
  }

  // Checks across sections, once every section has been read.
  if (m_saw_imds && config.source.type != SourceType::imds) {
    add("source.imds", "is only valid with \"type\": \"imds\"");
  }
  if (m_saw_file && config.source.type != SourceType::file) {
    add("source.file", "is only valid with \"type\": \"file\"");
  }
  if (!m_saw_exchange) {
    config.exchange = config.source.type == SourceType::imds ? Exchange::imds : Exchange::iam;
  }
  if (config.exchange == Exchange::imds && config.source.type != SourceType::imds) {
    add("exchange", "\"imds\" needs an imds source (source.type is \"file\")");
  }
  for (const auto& seen : m_profiles_seen) {
    if (config.exchange == Exchange::imds && seen.identifiers > 1) {
      add(seen.path, "with \"exchange\": \"imds\" give at most one of profile_id, profile_name, "
                     "profile_crn (none: the instance's default trusted profile)");
    }
    if (config.exchange == Exchange::iam && seen.identifiers == 0) {
      add(seen.path, "needs one of profile_id, profile_name, profile_crn (the IAM exchange has no "
                     "default trusted profile)");
    }
  }
}

void Parser::socket(element value, const std::string& path)
{
  const auto fields = object(value, path);
  if (!fields) {
    return;
  }
  auto& out = config.socket;
  for (const auto field : *fields) {
    const std::string at = child(path, field.key);
    if (field.key == "path") {
      if (auto text = absolute_path(field.value, at)) {
        constexpr std::size_t k_max = sizeof(sockaddr_un::sun_path) - 1;
        if (text->size() > k_max) {
          add(at, fmt::format("is {} bytes long; a socket path fits in {} bytes", text->size(), k_max));
        } else {
          out.path = std::move(*text);
        }
      }
    } else if (field.key == "mode") {
      socket_mode(field.value, at);
    } else if (field.key == "group") {
      if (const auto name = nonempty_string(field.value, at)) {
        if (const auto gid = m_resolver.group(std::string(*name))) {
          out.group = NamedId{std::string(*name), *gid};
        } else {
          add(at, fmt::format("unknown group {}", quote(*name)));
        }
      }
    } else if (field.key == "max_connections") {
      if (const auto n = integer(field.value, at, 1, 65536)) {
        out.max_connections = static_cast<std::uint32_t>(*n);
      }
    } else {
      unknown_key(at, field.key);
    }
  }
}

// The "http" section, self-contained: listen (required, loopback literals
// with a port, no duplicates) and max_connections (1-65536, default 256).
void Parser::http(element value, const std::string& path)
{
  const auto fields = object(value, path);
  if (!fields) {
    return;
  }
  HttpConfig out;
  bool saw_listen = false;
  for (const auto field : *fields) {
    const std::string at = child(path, field.key);
    if (field.key == "listen") {
      saw_listen = true;
      const auto entries = array(field.value, at);
      if (!entries) {
        continue;
      }
      if (entries->size() == 0) {
        add(at, "must list at least one address");
      }
      std::size_t index = 0;
      for (const auto entry : *entries) {
        const std::string entry_at = item(at, index++);
        const auto text = string(entry, entry_at);
        if (!text) {
          continue;
        }
        const auto listen = parse_http_listen(*text);
        if (!listen) {
          add(entry_at, fmt::format("must be a loopback address and a port, 127.0.0.1:8911 or [::1]:8911 "
                                    "(is {}): the endpoint must never be reachable from another host",
                                    quote(*text)));
        } else if (std::find(out.listen.begin(), out.listen.end(), *listen) != out.listen.end()) {
          add(entry_at, fmt::format("duplicate address {}", quote(*text)));
        } else {
          out.listen.push_back(*listen);
        }
      }
    } else if (field.key == "max_connections") {
      if (const auto n = integer(field.value, at, 1, 65536)) {
        out.max_connections = static_cast<std::uint32_t>(*n);
      }
    } else {
      unknown_key(at, field.key);
    }
  }
  if (!saw_listen) {
    add(child(path, "listen"), "is required (the loopback addresses to listen on)");
  }
  config.http = std::move(out);
}

void Parser::socket_mode(element value, const std::string& path)
{
  const auto text = string(value, path);
  if (!text) {
    return;
  }
  const bool octal = !text->empty() && text->size() <= 4
                     && std::all_of(text->begin(), text->end(), [](char c) { return c >= '0' && c <= '7'; });
  if (!octal) {
    add(path, fmt::format("must be octal digits like \"0660\" (is {})", quote(*text)));
    return;
  }
  mode_t mode = 0;
  for (const char c : *text) {
    mode = static_cast<mode_t>(mode * 8 + static_cast<mode_t>(c - '0'));
  }
  if (mode > 0777) {
    add(path, fmt::format("must be at most \"0777\" (is {})", quote(*text)));
    return;
  }
  config.socket.mode = mode;
}

void Parser::source(element value, const std::string& path)
{
  const auto fields = object(value, path);
  if (!fields) {
    return;
  }
  for (const auto field : *fields) {
    const std::string at = child(path, field.key);
    if (field.key == "type") {
      if (const auto text = string(field.value, at)) {
        if (*text == "imds") {
          config.source.type = SourceType::imds;
        } else if (*text == "file") {
          config.source.type = SourceType::file;
        } else {
          add(at, fmt::format("must be \"imds\" or \"file\" (is {})", quote(*text)));
        }
      }
    } else if (field.key == "imds") {
      m_saw_imds = true;
      imds(field.value, at);
    } else if (field.key == "file") {
      m_saw_file = true;
      file(field.value, at);
    } else {
      unknown_key(at, field.key);
    }
  }
}

void Parser::imds(element value, const std::string& path)
{
  const auto fields = object(value, path);
  if (!fields) {
    return;
  }
  auto& out = config.source.imds;
  for (const auto field : *fields) {
    const std::string at = child(path, field.key);
    if (field.key == "endpoint") {
      if (auto url = endpoint(field.value, at, false)) {
        out.endpoint = std::move(*url);
      }
    } else if (field.key == "version") {
      if (const auto text = string(field.value, at)) {
        if (std::find(std::begin(k_imds_versions), std::end(k_imds_versions), *text)
            != std::end(k_imds_versions)) {
          out.version = std::string(*text);
        } else {
          add(at, fmt::format("must be \"2025-08-26\" or \"2022-03-01\" (is {})", quote(*text)));
        }
      }
    } else if (field.key == "token_lifetime_s") {
      if (const auto n = integer(field.value, at, 5, 3600)) {
        out.token_lifetime = std::chrono::seconds(*n);
      }
    } else {
      unknown_key(at, field.key);
    }
  }
}

void Parser::file(element value, const std::string& path)
{
  const auto fields = object(value, path);
  if (!fields) {
    return;
  }
  for (const auto field : *fields) {
    const std::string at = child(path, field.key);
    if (field.key == "path") {
      if (auto text = absolute_path(field.value, at)) {
        config.source.file.path = std::move(*text);
      }
    } else {
      unknown_key(at, field.key);
    }
  }
}

void Parser::iam(element value, const std::string& path)
{
  const auto fields = object(value, path);
  if (!fields) {
    return;
  }
  for (const auto field : *fields) {
    const std::string at = child(path, field.key);
    if (field.key == "endpoint") {
      if (auto url = endpoint(field.value, at, true)) {
        config.iam.endpoint = std::move(*url);
      }
    } else {
      unknown_key(at, field.key);
    }
  }
}

void Parser::refresh(element value, const std::string& path)
{
  const auto fields = object(value, path);
  if (!fields) {
    return;
  }
  auto& out = config.refresh;
  for (const auto field : *fields) {
    const std::string at = child(path, field.key);
    if (field.key == "at_fraction") {
      if (const auto x = number(field.value, at, 0.5, 0.95)) {
        out.at_fraction = *x;
      }
    } else if (field.key == "min_valid_s") {
      if (const auto n = integer(field.value, at, 0, 1800)) {
        out.min_valid = std::chrono::seconds(*n);
      }
    } else if (field.key == "timeout_s") {
      if (const auto n = integer(field.value, at, 1, 300)) {
        out.timeout = std::chrono::seconds(*n);
      }
    } else if (field.key == "connect_timeout_s") {
      if (const auto n = integer(field.value, at, 1, 60)) {
        out.connect_timeout = std::chrono::seconds(*n);
      }
    } else {
      unknown_key(at, field.key);
    }
  }
}

void Parser::profiles(element value, const std::string& path)
{
  const auto items = array(value, path);
  if (!items) {
    return;
  }
  if (items->size() == 0) {
    add(path, "must list at least one profile");
    return;
  }
  std::map<std::string, std::size_t, std::less<>> first_index; // name -> index
  std::size_t index = 0;
  for (const auto entry : *items) {
    const std::string at = item(path, index);
    Profile parsed;
    std::size_t identifiers = 0;
    if (object(entry, at)) {
      profile(entry, at, parsed, identifiers);
      m_profiles_seen.push_back({at, identifiers});
      if (!parsed.name.empty()) {
        const auto [it, inserted] = first_index.emplace(parsed.name, index);
        if (!inserted) {
          add(child(at, "name"), fmt::format("duplicate name {} (also {})", quote(parsed.name),
                                             item(path, it->second)));
        }
      }
    }
    config.profiles.push_back(std::move(parsed));
    ++index;
  }
}

void Parser::profile(element value, const std::string& path, Profile& out, std::size_t& identifiers)
{
  bool saw_name = false;
  simdjson::dom::object fields;
  if (value.get_object().get(fields) != simdjson::SUCCESS) {
    return;
  }
  for (const auto field : fields) {
    const std::string at = child(path, field.key);
    if (field.key == "name") {
      saw_name = true;
      if (const auto text = string(field.value, at)) {
        if (is_valid_name(*text)) {
          out.name = std::string(*text);
        } else {
          add(at, fmt::format("must be 1 to 64 characters of A-Z a-z 0-9 . _ - (is {})", quote(*text)));
        }
      }
    } else if (field.key == "profile_id" || field.key == "profile_name" || field.key == "profile_crn") {
      ++identifiers;
      if (const auto text = nonempty_string(field.value, at)) {
        auto& target = field.key == "profile_id"     ? out.profile_id
                       : field.key == "profile_name" ? out.profile_name
                                                     : out.profile_crn;
        target = std::string(*text);
      }
    } else if (field.key == "allow") {
      out.allow.emplace();
      allow(field.value, at, *out.allow);
    } else {
      unknown_key(at, field.key);
    }
  }
  if (!saw_name) {
    add(child(path, "name"), "is required");
  }
}

void Parser::allow(element value, const std::string& path, Allow& out)
{
  const auto fields = object(value, path);
  if (!fields) {
    return;
  }
  constexpr std::int64_t k_max_id = 0xFFFFFFFE; // (uid_t)-1 means "no id"
  for (const auto field : *fields) {
    const std::string at = child(path, field.key);
    const bool ids = field.key == "uids" || field.key == "gids";
    const bool names = field.key == "users" || field.key == "groups";
    if (!ids && !names) {
      unknown_key(at, field.key);
      continue;
    }
    const auto entries = array(field.value, at);
    if (!entries) {
      continue;
    }
    std::size_t index = 0;
    for (const auto entry : *entries) {
      const std::string entry_at = item(at, index++);
      if (ids) {
        if (const auto id = integer(entry, entry_at, 0, k_max_id)) {
          if (field.key == "uids") {
            out.uids.push_back(static_cast<uid_t>(*id));
          } else {
            out.gids.push_back(static_cast<gid_t>(*id));
          }
        }
        continue;
      }
      const auto name = nonempty_string(entry, entry_at);
      if (!name) {
        continue;
      }
      const std::string owned(*name);
      if (field.key == "users") {
        if (const auto uid = m_resolver.user(owned)) {
          out.users.push_back({owned, *uid});
        } else {
          add(entry_at, fmt::format("unknown user {}", quote(owned)));
        }
      } else {
        if (const auto gid = m_resolver.group(owned)) {
          out.groups.push_back({owned, *gid});
        } else {
          add(entry_at, fmt::format("unknown group {}", quote(owned)));
        }
      }
    }
  }
}

class SystemResolver final : public NameResolver
{
public:
  std::optional<uid_t> user(const std::string& name) const override
  {
    passwd entry{};
    return lookup(name, entry, getpwnam_r) ? std::optional<uid_t>(entry.pw_uid) : std::nullopt;
  }

  std::optional<gid_t> group(const std::string& name) const override
  {
    group_entry entry{};
    return lookup(name, entry, getgrnam_r) ? std::optional<gid_t>(entry.gr_gid) : std::nullopt;
  }

private:
  using group_entry = struct group;

  // Calls a getXXnam_r function, growing its buffer on ERANGE (bounded).
  template<typename Entry, typename Function>
  static bool lookup(const std::string& name, Entry& entry, Function function)
  {
    if (name.empty() || name.find('\0') != std::string::npos) {
      return false;
    }
    std::vector<char> buffer(16 * 1024);
    for (int attempt = 0; attempt < 8; ++attempt) {
      Entry* result = nullptr;
      const int error = function(name.c_str(), &entry, buffer.data(), buffer.size(), &result);
      if (error == ERANGE) {
        buffer.resize(buffer.size() * 2);
        continue;
      }
      return error == 0 && result != nullptr;
    }
    return false;
  }
};

} // namespace

std::string to_string(const Problem& problem)
{
  return problem.path.empty() ? problem.message : fmt::format("{}: {}", problem.path, problem.message);
}

const NameResolver& system_resolver()
{
  static const SystemResolver resolver;
  return resolver;
}

bool Allow::matches(uid_t uid, gid_t gid, std::span<const gid_t> supplementary) const
{
  const auto has_uid = [&](uid_t u) {
    return std::find(uids.begin(), uids.end(), u) != uids.end()
           || std::any_of(users.begin(), users.end(), [&](const NamedId& n) { return n.id == u; });
  };
  const auto has_gid = [&](gid_t g) {
    return std::find(gids.begin(), gids.end(), g) != gids.end()
           || std::any_of(groups.begin(), groups.end(), [&](const NamedId& n) { return n.id == g; });
  };
  return has_uid(uid) || has_gid(gid) || std::any_of(supplementary.begin(), supplementary.end(), has_gid);
}

std::string_view to_string(SourceType type)
{
  return type == SourceType::file ? "file" : "imds";
}

std::string_view to_string(Exchange exchange)
{
  return exchange == Exchange::imds ? "imds" : "iam";
}

tl::expected<Config, std::vector<Problem>> parse_config(std::string_view json, const NameResolver& resolver)
{
  simdjson::dom::parser document_parser;
  const auto root = json::parse_document(document_parser, json);
  if (!root) {
    return tl::unexpected(std::vector<Problem>{{"", root.error()}});
  }
  Parser parser(resolver);
  parser.root(*root);
  if (!parser.problems.empty()) {
    return tl::unexpected(std::move(parser.problems));
  }
  return std::move(parser.config);
}

tl::expected<Loaded, std::vector<Problem>>
load_config(const std::string& path, const NameResolver& resolver, uid_t daemon_uid)
{
  const auto fail = [&](std::string message) {
    return tl::unexpected(std::vector<Problem>{{path, std::move(message)}});
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return fail(fmt::format("cannot open: {}", errno_message(errno)));
  }
  struct Closer
  {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};

  struct stat info{};
  if (::fstat(fd, &info) != 0) {
    return fail(fmt::format("cannot stat: {}", errno_message(errno)));
  }
  if (!S_ISREG(info.st_mode)) {
    return fail("is not a regular file");
  }
  std::string text;
  char buffer[16 * 1024];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(fmt::format("cannot read: {}", errno_message(errno)));
    }
    if (n == 0) {
      break;
    }
    text.append(buffer, static_cast<std::size_t>(n));
    if (text.size() > k_max_file_size) {
      return fail(fmt::format("is larger than {} bytes", k_max_file_size));
    }
  }

  auto parsed = parse_config(text, resolver);
  if (!parsed) {
    auto problems = std::move(parsed.error());
    for (auto& problem : problems) {
      if (problem.path.empty()) {
        problem.path = path;
      }
    }
    return tl::unexpected(std::move(problems));
  }

  Loaded loaded{std::move(*parsed), {}};
  for (auto& warning : config_warnings(loaded.config)) {
    loaded.warnings.push_back(std::move(warning));
  }
  if ((info.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    loaded.warnings.push_back(
      {path, fmt::format("is writable by group or others (mode {:04o}); only its owner should "
                         "be able to change it",
                         info.st_mode & 07777)});
  }
  if (info.st_uid != 0 && info.st_uid != daemon_uid) {
    loaded.warnings.push_back(
      {path, fmt::format("is owned by uid {}, neither root nor the daemon's user (uid {})",
                         info.st_uid, daemon_uid)});
  }
  return loaded;
}

std::vector<Problem> config_warnings(const Config& config)
{
  std::vector<Problem> warnings;
  if (config.exchange == Exchange::iam && config.source.type == SourceType::imds) {
    warnings.push_back(
      {"exchange", "\"iam\" with an imds source uses the IAM grant for VSI identity tokens, which "
                   "IBM deprecates: remove \"exchange\" (the default, \"imds\", asks IMDS for the "
                   "token) once the trusted profiles are linked to the instance"});
  }
  return warnings;
}

std::string summary_line(const Profile& profile)
{
  std::vector<std::string> targets;
  if (!profile.profile_id.empty()) {
    targets.push_back("profile_id " + quote(profile.profile_id));
  }
  if (!profile.profile_name.empty()) {
    targets.push_back("profile_name " + quote(profile.profile_name));
  }
  if (!profile.profile_crn.empty()) {
    targets.push_back("profile_crn " + quote(profile.profile_crn));
  }

  if (targets.empty()) {
    targets.emplace_back("the instance's default trusted profile");
  }

  std::string who;
  if (!profile.allow) {
    who = "any caller that can open the socket";
  } else {
    std::vector<std::string> entries;
    for (const auto& user : profile.allow->users) {
      entries.push_back(fmt::format("user {} (uid {})", user.name, user.id));
    }
    for (const auto uid : profile.allow->uids) {
      entries.push_back(fmt::format("uid {}", uid));
    }
    for (const auto& group : profile.allow->groups) {
      entries.push_back(fmt::format("group {} (gid {})", group.name, group.id));
    }
    for (const auto gid : profile.allow->gids) {
      entries.push_back(fmt::format("gid {}", gid));
    }
    entries.emplace_back("root, the daemon's user");
    who = fmt::format("{}", fmt::join(entries, ", "));
  }
  return fmt::format("{}: {}; allowed: {}", profile.name, fmt::join(targets, ", "), who);
}

std::vector<std::string> summary_lines(const Config& config)
{
  std::vector<std::string> lines;
  lines.reserve(config.profiles.size());
  for (const auto& profile : config.profiles) {
    lines.push_back(summary_line(profile));
  }
  return lines;
}

std::span<const std::string_view> default_cr_token_paths()
{
  return k_cr_token_paths;
}

std::optional<std::string> resolve_cr_token_path(const FileConfig& file)
{
  if (!file.path.empty()) {
    return file.path;
  }
  for (const auto candidate : k_cr_token_paths) {
    const std::string path(candidate);
    if (::access(path.c_str(), F_OK) == 0) {
      return path;
    }
  }
  return std::nullopt;
}

std::optional<Url> parse_url(std::string_view text)
{
  const auto has_bad_char = std::any_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u >= 0x7f || c == '?' || c == '#' || c == '@' || c == '\\';
  });
  if (has_bad_char) {
    return std::nullopt;
  }
  const auto lower = [](std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](char c) {
      return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    });
    return out;
  };

  Url url;
  const auto scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) {
    return std::nullopt;
  }
  url.scheme = lower(text.substr(0, scheme_end));
  if (url.scheme != "http" && url.scheme != "https") {
    return std::nullopt;
  }
  std::string_view rest = text.substr(scheme_end + 3);
  const auto path_start = rest.find('/');
  std::string_view authority = rest.substr(0, path_start);
  url.path = path_start == std::string_view::npos ? "" : std::string(rest.substr(path_start));

  std::string_view port;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      return std::nullopt;
    }
    url.host = std::string(authority.substr(1, close - 1));
    in6_addr address{};
    if (::inet_pton(AF_INET6, url.host.c_str(), &address) != 1) {
      return std::nullopt;
    }
    const auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (!after.starts_with(':')) {
        return std::nullopt;
      }
      port = after.substr(1);
      if (port.empty()) {
        return std::nullopt;
      }
    }
  } else {
    const auto colon = authority.find(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) {
        return std::nullopt;
      }
    }
    const bool host_ok = !url.host.empty() && std::all_of(url.host.begin(), url.host.end(), [](char c) {
      return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.'
             || c == '-' || c == '_';
    });
    if (!host_ok) {
      return std::nullopt;
    }
  }
  if (!port.empty()) {
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    unsigned value = 0;
    for (const char c : port) {
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) {
      return std::nullopt;
    }
    url.port = static_cast<std::uint16_t>(value);
  }
  return url;
}

std::string to_string(const HttpListen& listen)
{
  return listen.address.find(':') != std::string::npos ? fmt::format("[{}]:{}", listen.address, listen.port)
                                                         : fmt::format("{}:{}", listen.address, listen.port);
}

std::optional<HttpListen> parse_http_listen(std::string_view text)
{
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5
      || !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  const int port = std::stoi(std::string(port_text));
  if (port > 65535) {
    return std::nullopt;
  }
  const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  const std::string address(bracketed ? host.substr(1, host.size() - 2) : host);
  if (bracketed) {
    in6_addr v6{};
    if (::inet_pton(AF_INET6, address.c_str(), &v6) != 1 || !IN6_IS_ADDR_LOOPBACK(&v6)) {
      return std::nullopt;
    }
    return HttpListen{"::1", static_cast<std::uint16_t>(port)};
  }
  in_addr v4{};
  if (::inet_pton(AF_INET, address.c_str(), &v4) != 1 || (ntohl(v4.s_addr) >> 24) != 127) {
    return std::nullopt;
  }
  return HttpListen{address, static_cast<std::uint16_t>(port)};
}

bool is_loopback_host(std::string_view host)
{
  if (host.starts_with('[') && host.ends_with(']') && host.size() >= 2) {
    host = host.substr(1, host.size() - 2);
  }
  if (host.size() == 9) {
    std::string lower(host);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) {
      return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    });
    if (lower == "localhost") {
      return true;
    }
  }
  const std::string text(host);
  if (in_addr v4{}; ::inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  if (in6_addr v6{}; ::inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) {
      return true;
    }
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

} // namespace iamtok::config
