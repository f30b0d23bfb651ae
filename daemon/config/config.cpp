#include "daemon/config/config.hpp"

#include "daemon/config/reader.hpp"
#include "proto/json.hpp"
#include "util/file.hpp"
#include "util/strings.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>

#include <sys/stat.h>
#include <sys/un.h>

namespace iamtok::config {

namespace {

using read::element;
using read::Integer;
using read::key;
using read::Key;
using read::quote;
using read::Reader;
using read::Section;
using std::chrono::seconds;

constexpr std::size_t k_max_file_size = 1024 * 1024;
constexpr std::array<std::string_view, 3> k_cr_token_paths = {
  "/var/run/secrets/tokens/vault-token",
  "/var/run/secrets/tokens/sa-token",
  "/var/run/secrets/codeengine.cloud.ibm.com/compute-resource-token/token",
};

// --- Readers of one value that only this file needs ----------------------------

// socket.path: absolute and short enough for sun_path.
std::optional<std::string> socket_path(Reader& reader, element value, const std::string& path)
{
  auto text = read::absolute_path(reader, value, path);
  constexpr std::size_t k_max = sizeof(sockaddr_un::sun_path) - 1;
  if (text && text->size() > k_max) {
    reader.add(path, fmt::format("is {} bytes long; a socket path fits in {} bytes", text->size(), k_max));
    return std::nullopt;
  }
  return text;
}

// http.listen: at least one loopback literal with a port, no duplicates.
std::optional<std::vector<HttpListen>> http_listen(Reader& reader, element value, const std::string& path)
{
  std::vector<HttpListen> out;
  const auto each = [&](element entry, const std::string& at) {
    const auto text = read::string(reader, entry, at);
    if (!text) {
      return;
    }
    const auto listen = parse_http_listen(*text);
    if (!listen) {
      reader.add(at, fmt::format("must be a loopback address and a port, 127.0.0.1:8911 or [::1]:8911 "
                                 "(is {}): the endpoint must never be reachable from another host",
                                 quote(*text)));
    } else if (std::find(out.begin(), out.end(), *listen) != out.end()) {
      reader.add(at, fmt::format("duplicate address {}", quote(*text)));
    } else {
      out.push_back(*listen);
    }
  };
  if (!read::for_each_item(reader, value, path, "must list at least one address", each)) {
    return std::nullopt;
  }
  return out;
}

// profiles[i].name: the local handle, [A-Za-z0-9._-]{1,64}.
std::optional<std::string> profile_handle(Reader& reader, element value, const std::string& path)
{
  const auto text = read::string(reader, value, path);
  if (text && !util::is_name(*text)) {
    reader.add(path, fmt::format("must be 1 to 64 characters of A-Z a-z 0-9 . _ - (is {})", quote(*text)));
    return std::nullopt;
  }
  return text ? std::optional<std::string>(*text) : std::nullopt;
}

// --- The sections, one table each (iamtokend.json(5)) ---------------------------

const Key<SocketConfig> k_socket_keys[] = {
  key("path", &SocketConfig::path, socket_path),
  key("mode", &SocketConfig::mode, read::file_mode),
  key("group", &SocketConfig::group, read::group_name),
  key("max_connections", &SocketConfig::max_connections, Integer<std::uint32_t>{1, 65536}),
};

const Key<HttpConfig> k_http_keys[] = {
  key("listen", &HttpConfig::listen, http_listen, "is required (the loopback addresses to listen on)"),
  key("max_connections", &HttpConfig::max_connections, Integer<std::uint32_t>{1, 65536}),
};

const read::Choice<std::string_view> k_imds_versions[] = {{"2025-08-26", "2025-08-26"}, {"2022-03-01", "2022-03-01"}};
const Key<ImdsConfig> k_imds_keys[] = {
  key("endpoint", &ImdsConfig::endpoint, read::Endpoint{read::Schemes::http_or_https}),
  key("version", &ImdsConfig::version, read::OneOf<std::string_view>{k_imds_versions}),
  key("token_lifetime_s", &ImdsConfig::token_lifetime, Integer<seconds>{5, 3600}),
};

const Key<FileConfig> k_file_keys[] = {
  key("path", &FileConfig::path, read::absolute_path),
};

const read::Choice<SourceType> k_source_types[] = {{"imds", SourceType::imds}, {"file", SourceType::file}};
const Key<SourceConfig> k_source_keys[] = {
  key("type", &SourceConfig::type, read::OneOf<SourceType>{k_source_types}),
  key("imds", &SourceConfig::imds, Section<ImdsConfig>{k_imds_keys}),
  key("file", &SourceConfig::file, Section<FileConfig>{k_file_keys}),
};

const Key<IamConfig> k_iam_keys[] = {
  key("endpoint", &IamConfig::endpoint, read::Endpoint{read::Schemes::https_unless_loopback}),
};

const Key<RefreshConfig> k_refresh_keys[] = {
  key("at_fraction", &RefreshConfig::at_fraction, read::Number{0.5, 0.95}),
  key("min_valid_s", &RefreshConfig::min_valid, Integer<seconds>{0, 1800}),
  key("timeout_s", &RefreshConfig::timeout, Integer<seconds>{1, 300}),
  key("connect_timeout_s", &RefreshConfig::connect_timeout, Integer<seconds>{1, 60}),
};

constexpr std::int64_t k_max_id = 0xFFFFFFFE; // (uid_t)-1 means "no id"
const Key<Allow> k_allow_keys[] = {
  key("uids", &Allow::uids, read::ListOf{Integer<uid_t>{0, k_max_id}}),
  key("gids", &Allow::gids, read::ListOf{Integer<gid_t>{0, k_max_id}}),
  key("users", &Allow::users, read::ListOf{read::user_name}),
  key("groups", &Allow::groups, read::ListOf{read::group_name}),
};

// With the iam exchange a profile needs one of these; with imds at most one.
constexpr std::string_view k_selectors[] = {"profile_id", "profile_name", "profile_crn"};
const Key<Profile> k_profile_keys[] = {
  key("name", &Profile::name, profile_handle, "is required"),
  key("profile_id", &Profile::profile_id, read::nonempty_string),
  key("profile_name", &Profile::profile_name, read::nonempty_string),
  key("profile_crn", &Profile::profile_crn, read::nonempty_string),
  key("allow", &Profile::allow, Section<Allow>{k_allow_keys}),
};

// profiles: at least one profile object, names unique.
std::optional<std::vector<Profile>> profile_list(Reader& reader, element value, const std::string& path)
{
  std::vector<Profile> out;
  std::map<std::string, std::size_t, std::less<>> first_index; // name -> index
  const auto each = [&](element entry, const std::string& at) {
    auto parsed = Section<Profile>{k_profile_keys}(reader, entry, at).value_or(Profile{});
    if (!parsed.name.empty()) {
      const auto [it, inserted] = first_index.emplace(parsed.name, out.size());
      if (!inserted) {
        reader.add(read::child(at, "name"),
                   fmt::format("duplicate name {} (also {})", quote(parsed.name), read::item(path, it->second)));
      }
    }
    out.push_back(std::move(parsed));
  };
  if (!read::for_each_item(reader, value, path, "must list at least one profile", each)) {
    return std::nullopt;
  }
  return out;
}

const read::Choice<Exchange> k_exchanges[] = {{"iam", Exchange::iam}, {"imds", Exchange::imds}};
const Key<Config> k_root_keys[] = {
  key("socket", &Config::socket, Section<SocketConfig>{k_socket_keys}),
  key("http", &Config::http, Section<HttpConfig>{k_http_keys}),
  key("source", &Config::source, Section<SourceConfig>{k_source_keys}),
  key("exchange", &Config::exchange, read::OneOf<Exchange>{k_exchanges}),
  key("iam", &Config::iam, Section<IamConfig>{k_iam_keys}),
  key("refresh", &Config::refresh, Section<RefreshConfig>{k_refresh_keys}),
  key("profiles", &Config::profiles, profile_list, "is required (at least one profile)"),
};

// The checks across sections, once every section has been read.
void check_across_sections(Reader& reader, Config& config)
{
  if (reader.has("source.imds") && config.source.type != SourceType::imds) {
    reader.add("source.imds", "is only valid with \"type\": \"imds\"");
  }
  if (reader.has("source.file") && config.source.type != SourceType::file) {
    reader.add("source.file", "is only valid with \"type\": \"file\"");
  }
  if (!reader.has("exchange")) {
    config.exchange = config.source.type == SourceType::imds ? Exchange::imds : Exchange::iam;
  }
  if (config.exchange == Exchange::imds && config.source.type != SourceType::imds) {
    reader.add("exchange", "\"imds\" needs an imds source (source.type is \"file\")");
  }
  for (std::size_t index = 0; index < config.profiles.size(); ++index) {
    const std::string at = read::item("profiles", index);
    if (!reader.has(at)) {
      continue; // not an object: that is its problem
    }
    const auto selectors = std::count_if(std::begin(k_selectors), std::end(k_selectors),
                                         [&](std::string_view name) { return reader.has(read::child(at, name)); });
    if (config.exchange == Exchange::imds && selectors > 1) {
      reader.add(at, "with \"exchange\": \"imds\" give at most one of profile_id, profile_name, "
                     "profile_crn (none: the instance's default trusted profile)");
    }
    if (config.exchange == Exchange::iam && selectors == 0) {
      reader.add(at, "needs one of profile_id, profile_name, profile_crn (the IAM exchange has no "
                     "default trusted profile)");
    }
  }
}

} // namespace

std::string to_string(const Problem& problem)
{
  return problem.path.empty() ? problem.message : fmt::format("{}: {}", problem.path, problem.message);
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
  simdjson::dom::object top;
  if (root->get_object().get(top) != simdjson::SUCCESS) {
    return tl::unexpected(std::vector<Problem>{{"", "the configuration must be a JSON object"}});
  }
  Reader reader(resolver);
  Config config;
  read::read_fields<Config>(reader, top, "", k_root_keys, config);
  check_across_sections(reader, config);
  if (!reader.problems().empty()) {
    return tl::unexpected(reader.take_problems());
  }
  return config;
}

tl::expected<Loaded, std::vector<Problem>>
load_config(const std::string& path, const NameResolver& resolver, uid_t daemon_uid)
{
  const auto fail = [&](std::string message) {
    return tl::unexpected(std::vector<Problem>{{path, std::move(message)}});
  };
  struct stat info{};
  auto text = util::read_file(path, k_max_file_size, info);
  if (!text) {
    return fail(util::describe(text.error(), k_max_file_size));
  }

  auto parsed = parse_config(*text, resolver);
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

bool report(const tl::expected<Loaded, std::vector<Problem>>& loaded, const LineSink& problem,
            const LineSink& warning)
{
  if (!loaded) {
    for (const auto& each : loaded.error()) {
      problem(to_string(each));
    }
    return false;
  }
  for (const auto& each : loaded->warnings) {
    warning(to_string(each));
  }
  return true;
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

} // namespace iamtok::config
