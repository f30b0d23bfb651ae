#pragma once

// The daemon's configuration (iamtokend.json(5)): the values, their defaults, and a
// loader that validates a JSON document and reports every problem at once,
// each with its JSON path. parse_config is pure apart from resolving user and
// group names through an injectable NameResolver (names.hpp); load_config
// also reads the file, and resolve_cr_token_path looks for files. Endpoint
// URLs and listen addresses are parsed in url.hpp; the section tables and
// their generic readers are in reader.hpp.

#include "daemon/config/names.hpp"
#include "daemon/config/url.hpp"

#include <tl/expected.hpp>

#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace iamtok::config {

// One thing wrong with a configuration: where (a JSON path such as
// "profiles[2].allow.users[0]", or the file's path) and what.
struct Problem
{
  std::string path;
  std::string message;
  friend bool operator==(const Problem&, const Problem&) = default;
};

// "profiles[2].allow.users[0]: unknown user \"bob\"", or the message alone
// when the path is empty.
std::string to_string(const Problem& problem);

// A user or group name as written in the config and the id it resolved to.
struct NamedId
{
  std::string name;
  std::uint32_t id = 0;
  friend bool operator==(const NamedId&, const NamedId&) = default;
};

// Who may use a profile besides root and the daemon's own uid.
struct Allow
{
  std::vector<uid_t> uids;     // "uids"
  std::vector<gid_t> gids;     // "gids"
  std::vector<NamedId> users;  // "users", resolved to uids
  std::vector<NamedId> groups; // "groups", resolved to gids

  // True if `uid` is listed (by number or user name), or `gid` or any of
  // `supplementary` is listed (by number or group name). Root and the
  // daemon's uid are the caller's business.
  bool matches(uid_t uid, gid_t gid, std::span<const gid_t> supplementary) const;
  friend bool operator==(const Allow&, const Allow&) = default;
};

struct Profile
{
  std::string name;         // the local handle callers use
  // Sent upstream as given. With the iam exchange at least one is set; with
  // imds at most one, and none asks for the instance's default trusted profile.
  std::string profile_id;
  std::string profile_name;
  std::string profile_crn;
  std::optional<Allow> allow; // nullopt: every caller that can open the socket
  friend bool operator==(const Profile&, const Profile&) = default;
};

struct SocketConfig
{
  std::string path = "/run/iamtokend/iamtokend.sock"; // absolute, fits sun_path
  mode_t mode = 0660;
  std::optional<NamedId> group; // nullopt: the socket keeps the daemon's group
  std::uint32_t max_connections = 1024;
  friend bool operator==(const SocketConfig&, const SocketConfig&) = default;
};

enum class SourceType { imds, file };
enum class Exchange { iam, imds };

struct ImdsConfig
{
  // http:// or https://, no trailing slash.
  std::string endpoint = "http://169.254.169.254";
  std::string version = "2025-08-26"; // or "2022-03-01" (docs/upstream.md)
  std::chrono::seconds token_lifetime{300}; // expires_in asked for, 5-3600 s
  friend bool operator==(const ImdsConfig&, const ImdsConfig&) = default;
};

struct FileConfig
{
  // Empty: the first existing of default_cr_token_paths(), at each read.
  std::string path;
  friend bool operator==(const FileConfig&, const FileConfig&) = default;
};

struct SourceConfig
{
  SourceType type = SourceType::imds;
  ImdsConfig imds; // used when type is imds
  FileConfig file; // used when type is file
  friend bool operator==(const SourceConfig&, const SourceConfig&) = default;
};

struct IamConfig
{
  // https:// (http:// only for a loopback host), no trailing slash.
  std::string endpoint = "https://iam.cloud.ibm.com";
  friend bool operator==(const IamConfig&, const IamConfig&) = default;
};

struct RefreshConfig
{
  double at_fraction = 0.8;              // 0.5-0.95
  std::chrono::seconds min_valid{60};    // min_valid_s, 0-1800
  std::chrono::seconds timeout{10};      // timeout_s, 1-300
  std::chrono::seconds connect_timeout{2}; // connect_timeout_s, 1-60 (TCP + TLS handshake)
  friend bool operator==(const RefreshConfig&, const RefreshConfig&) = default;
};

// The loopback HTTP endpoint for IBM SDKs (docs/http.md); off when the
// config has no "http" section.
struct HttpConfig
{
  std::vector<HttpListen> listen; // at least one
  std::uint32_t max_connections = 256;
  friend bool operator==(const HttpConfig&, const HttpConfig&) = default;
};

struct Config
{
  SocketConfig socket;
  std::optional<HttpConfig> http; // nullopt: nothing listens on TCP
  SourceConfig source;
  // Default: imds with an imds source, iam with a file source.
  Exchange exchange = Exchange::imds;
  IamConfig iam;
  RefreshConfig refresh;
  std::vector<Profile> profiles; // at least one, names unique
  friend bool operator==(const Config&, const Config&) = default;
};

std::string_view to_string(SourceType type);
std::string_view to_string(Exchange exchange);

// Validates one JSON document and returns the configuration with every
// omitted value at its default, or every problem found (a JSON syntax error
// or duplicate key is a single problem with an empty path).
tl::expected<Config, std::vector<Problem>>
parse_config(std::string_view json, const NameResolver& resolver = system_resolver());

// Things worth a warning in a valid configuration: "exchange": "iam" with an
// imds source (IBM deprecates that IAM grant for VSI identity tokens). Empty
// when there is nothing to say.
std::vector<Problem> config_warnings(const Config& config);

struct Loaded
{
  Config config;
  // Things worth a log line that do not stop the daemon: config_warnings(),
  // and the file is writable by group or others, or owned by neither root
  // nor `daemon_uid`.
  std::vector<Problem> warnings;
};

// Reads and validates the file at `path`. A missing, unreadable or oversized
// file is a problem whose path is the file's path, as is a JSON syntax error.
tl::expected<Loaded, std::vector<Problem>>
load_config(const std::string& path, const NameResolver& resolver = system_resolver(),
            uid_t daemon_uid = ::geteuid());

// Passes each problem of a failed load to `problem`, or each warning of a
// successful one to `warning`, as one line (to_string()); true if `loaded`
// holds a configuration. The one place the daemon's callers print them.
using LineSink = std::function<void(const std::string& line)>;
bool report(const tl::expected<Loaded, std::vector<Problem>>& loaded, const LineSink& problem,
            const LineSink& warning);

// One line per profile for --check-config: its name, how the trusted profile
// is identified, and who may use it.
std::string summary_line(const Profile& profile);
std::vector<std::string> summary_lines(const Config& config);

// The projected service-account token paths IBM's SDKs try, in order (docs/upstream.md).
std::span<const std::string_view> default_cr_token_paths();

// `file.path` if set, else the first of default_cr_token_paths() that exists;
// nullopt if none does.
std::optional<std::string> resolve_cr_token_path(const FileConfig& file);

} // namespace iamtok::config
