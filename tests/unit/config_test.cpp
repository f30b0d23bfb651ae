#include "daemon/config/config.hpp"
#include "daemon/config/reader.hpp"
#include "tests/support/temp_dir.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <simdjson.h>

#include <sys/stat.h>
#include <unistd.h>

using namespace iamtok::config;

namespace {

using iamtok::test::TempDir;

// Names that exist only in these tests.
class FakeResolver final : public NameResolver
{
public:
  std::optional<uid_t> user(const std::string& name) const override
  {
    const auto it = m_users.find(name);
    return it == m_users.end() ? std::nullopt : std::optional<uid_t>(it->second);
  }
  std::optional<gid_t> group(const std::string& name) const override
  {
    const auto it = m_groups.find(name);
    return it == m_groups.end() ? std::nullopt : std::optional<gid_t>(it->second);
  }

private:
  std::map<std::string, uid_t> m_users{{"app", 1000}, {"svc", 1001}, {"backup", 34}};
  std::map<std::string, gid_t> m_groups{{"iamtoken", 998}, {"ops", 2000}};
};

const FakeResolver k_names;

constexpr const char* k_profile = R"({"name": "p", "profile_id": "Profile-1"})";

// A document with `sections` (comma-separated members) and one valid profile.
std::string with_profile(std::string_view sections)
{
  return fmt::format(R"({{ {}{} "profiles": [{}] }})", sections, sections.empty() ? "" : ",", k_profile);
}

// Every problem of `json` as printed ("path: message"); empty if it is valid.
std::vector<std::string> problems(const std::string& json)
{
  const auto result = parse_config(json, k_names);
  std::vector<std::string> out;
  if (!result) {
    for (const auto& problem : result.error()) {
      out.push_back(to_string(problem));
    }
  }
  return out;
}

Config valid(const std::string& json)
{
  const auto result = parse_config(json, k_names);
  if (!result) {
    for (const auto& problem : result.error()) {
      UNSCOPED_INFO(to_string(problem));
    }
  }
  REQUIRE(result.has_value());
  return *result;
}

// Exactly one problem, printed.
std::string problem(const std::string& json)
{
  const auto found = problems(json);
  INFO(json);
  REQUIRE(found.size() == 1);
  return found.front();
}


} // namespace

TEST_CASE("a config with only profiles gets every documented default")
{
  const auto config = valid(R"({"profiles": [{"name": "reader", "profile_id": "Profile-1"}]})");
  CHECK(config.socket.path == "/run/iamtokend/iamtokend.sock");
  CHECK(config.socket.mode == 0660);
  CHECK(!config.socket.group);
  CHECK(config.socket.max_connections == 1024);
  CHECK(config.source.type == SourceType::imds);
  CHECK(config.source.imds.endpoint == "http://169.254.169.254");
  CHECK(config.source.imds.version == "2025-08-26");
  CHECK(config.source.imds.token_lifetime == std::chrono::seconds(300));
  CHECK(config.source.file.path.empty());
  CHECK(config.exchange == Exchange::imds);
  CHECK(config.iam.endpoint == "https://iam.cloud.ibm.com");
  CHECK(config.refresh.at_fraction == 0.8);
  CHECK(config.refresh.min_valid == std::chrono::seconds(60));
  CHECK(config.refresh.timeout == std::chrono::seconds(10));
  CHECK(config.refresh.connect_timeout == std::chrono::seconds(2));
  REQUIRE(config.profiles.size() == 1);
  CHECK(config.profiles[0].name == "reader");
  CHECK(config.profiles[0].profile_id == "Profile-1");
  CHECK(!config.profiles[0].allow);
  CHECK(!config.http);
  Config defaults;
  defaults.profiles = config.profiles;
  CHECK(config == defaults);
}

TEST_CASE("every value of the documented full example is read")
{
  const auto config = valid(R"({
    "socket":  { "path": "/run/x/x.sock", "mode": "0600", "group": "iamtoken", "max_connections": 50 },
    "source":  { "type": "imds",
                 "imds": { "endpoint": "https://api.metadata.cloud.ibm.com/", "version": "2022-03-01",
                           "token_lifetime_s": 600 } },
    "exchange": "imds",
    "iam":     { "endpoint": "https://private.iam.cloud.ibm.com" },
    "refresh": { "at_fraction": 0.75, "min_valid_s": 120, "timeout_s": 20 },
    "profiles": [
      { "name": "reader", "profile_id": "Profile-0a1b", "allow": { "users": ["app"], "groups": ["iamtoken"] } },
      { "name": "deployer", "profile_name": "ci-deployer", "allow": { "uids": [1001], "gids": [5] } },
      { "name": "auditor", "profile_crn": "crn:v1:bluemix:public:iam-identity::a/1::profile:Profile-2" }
    ]
  })");
  CHECK(config.socket.path == "/run/x/x.sock");
  CHECK(config.socket.mode == 0600);
  CHECK(config.socket.group == NamedId{"iamtoken", 998});
  CHECK(config.socket.max_connections == 50);
  CHECK(config.source.imds.endpoint == "https://api.metadata.cloud.ibm.com");
  CHECK(config.source.imds.version == "2022-03-01");
  CHECK(config.source.imds.token_lifetime == std::chrono::seconds(600));
  CHECK(config.exchange == Exchange::imds);
  CHECK(config.iam.endpoint == "https://private.iam.cloud.ibm.com");
  CHECK(config.refresh.at_fraction == 0.75);
  CHECK(config.refresh.min_valid == std::chrono::seconds(120));
  CHECK(config.refresh.timeout == std::chrono::seconds(20));
  REQUIRE(config.profiles.size() == 3);
  REQUIRE(config.profiles[0].allow);
  CHECK(config.profiles[0].allow->users == std::vector<NamedId>{{"app", 1000}});
  CHECK(config.profiles[0].allow->groups == std::vector<NamedId>{{"iamtoken", 998}});
  CHECK(config.profiles[1].profile_name == "ci-deployer");
  CHECK(config.profiles[1].allow->uids == std::vector<uid_t>{1001});
  CHECK(config.profiles[1].allow->gids == std::vector<gid_t>{5});
  CHECK(config.profiles[2].profile_crn == "crn:v1:bluemix:public:iam-identity::a/1::profile:Profile-2");
}

TEST_CASE("the file source reads its path or leaves it empty for the SDK defaults")
{
  auto config = valid(with_profile(R"("source": {"type": "file", "file": {"path": "/var/run/secrets/tokens/sa-token"}})"));
  CHECK(config.source.type == SourceType::file);
  CHECK(config.source.file.path == "/var/run/secrets/tokens/sa-token");
  CHECK(resolve_cr_token_path(config.source.file) == "/var/run/secrets/tokens/sa-token");

  config = valid(with_profile(R"("source": {"type": "file"})"));
  CHECK(config.source.file.path.empty());

  CHECK(problem(with_profile(R"("source": {"type": "file", "file": {"path": "tokens/sa"}})"))
        == R"(source.file.path: must be an absolute path (is "tokens/sa"))");
  CHECK(problem(with_profile(R"("source": {"type": "k8s"})"))
        == R"(source.type: must be "imds" or "file" (is "k8s"))");
}

TEST_CASE("the SDK default token paths come in the SDKs' order")
{
  const auto paths = default_cr_token_paths();
  REQUIRE(paths.size() == 3);
  CHECK(paths[0] == "/var/run/secrets/tokens/vault-token");
  CHECK(paths[1] == "/var/run/secrets/tokens/sa-token");
  CHECK(paths[2] == "/var/run/secrets/codeengine.cloud.ibm.com/compute-resource-token/token");
}

TEST_CASE("a settings block for the other source type is a problem")
{
  CHECK(problem(with_profile(R"("source": {"type": "file", "imds": {}})"))
        == R"(source.imds: is only valid with "type": "imds")");
  CHECK(problem(with_profile(R"("source": {"file": {"path": "/t"}})"))
        == R"(source.file: is only valid with "type": "file")");
}

TEST_CASE("unknown keys are problems at every level")
{
  CHECK(problem(with_profile(R"("sockets": {})")) == "sockets: unknown key");
  CHECK(problem(with_profile(R"("socket": {"perms": "0660"})")) == "socket.perms: unknown key");
  CHECK(problem(with_profile(R"("source": {"kind": "imds"})")) == "source.kind: unknown key");
  CHECK(problem(with_profile(R"("source": {"imds": {"url": "http://x"}})")) == "source.imds.url: unknown key");
  CHECK(problem(with_profile(R"("source": {"type": "file", "file": {"name": "x"}})"))
        == "source.file.name: unknown key");
  CHECK(problem(with_profile(R"("iam": {"url": "https://x"})")) == "iam.url: unknown key");
  CHECK(problem(with_profile(R"("refresh": {"at": 0.8})")) == "refresh.at: unknown key");
  CHECK(problem(R"({"profiles": [{"name": "p", "profile_id": "x", "scope": "s"}]})")
        == "profiles[0].scope: unknown key");
  CHECK(problem(R"({"profiles": [{"name": "p", "profile_id": "x", "allow": {"user": ["app"]}}]})")
        == "profiles[0].allow.user: unknown key");
}

TEST_CASE("a key that a path cannot show is quoted in the message")
{
  CHECK(problem(with_profile(R"("at fraction": 1)")) == R"(<key>: unknown key "at fraction")");
}

TEST_CASE("values of the wrong type are problems")
{
  CHECK(problem(with_profile(R"("socket": "/run/x.sock")")) == "socket: must be an object");
  CHECK(problem(with_profile(R"("socket": {"path": 5})")) == "socket.path: must be a string");
  CHECK(problem(with_profile(R"("socket": {"max_connections": "10"})"))
        == "socket.max_connections: must be an integer");
  CHECK(problem(with_profile(R"("refresh": {"at_fraction": "0.8"})")) == "refresh.at_fraction: must be a number");
  CHECK(problem(with_profile(R"("refresh": {"timeout_s": 2.5})")) == "refresh.timeout_s: must be an integer");
  CHECK(problem(with_profile(R"("refresh": {"min_valid_s": true})")) == "refresh.min_valid_s: must be an integer");
  CHECK(problem(with_profile(R"("exchange": null)")) == "exchange: must be a string");
  CHECK(problem(R"({"profiles": {"name": "p"}})") == "profiles: must be an array");
  CHECK(problem(R"({"profiles": ["reader"]})") == "profiles[0]: must be an object");
  CHECK(problem(R"({"profiles": [{"name": 7, "profile_id": "x"}]})") == "profiles[0].name: must be a string");
  CHECK(problem(R"({"profiles": [{"name": "p", "profile_id": "x", "allow": []}]})")
        == "profiles[0].allow: must be an object");
  CHECK(problem(R"({"profiles": [{"name": "p", "profile_id": "x", "allow": {"uids": 5}}]})")
        == "profiles[0].allow.uids: must be an array");
  CHECK(problem(R"({"profiles": [{"name": "p", "profile_id": "x", "allow": {"users": [1000]}}]})")
        == "profiles[0].allow.users[0]: must be a string");
  CHECK(problem("[]") == "the configuration must be a JSON object");
}

TEST_CASE("refresh.at_fraction must lie in 0.5 to 0.95")
{
  CHECK(valid(with_profile(R"("refresh": {"at_fraction": 0.5})")).refresh.at_fraction == 0.5);
  CHECK(valid(with_profile(R"("refresh": {"at_fraction": 0.95})")).refresh.at_fraction == 0.95);
  CHECK(problem(with_profile(R"("refresh": {"at_fraction": 0.49})"))
        == "refresh.at_fraction: must be between 0.5 and 0.95 (is 0.49)");
  CHECK(problem(with_profile(R"("refresh": {"at_fraction": 1})"))
        == "refresh.at_fraction: must be between 0.5 and 0.95 (is 1)");
}

TEST_CASE("source.imds.token_lifetime_s must lie in 5 to 3600")
{
  CHECK(valid(with_profile(R"("source": {"imds": {"token_lifetime_s": 5}})")).source.imds.token_lifetime.count() == 5);
  CHECK(valid(with_profile(R"("source": {"imds": {"token_lifetime_s": 3600}})")).source.imds.token_lifetime.count()
        == 3600);
  CHECK(problem(with_profile(R"("source": {"imds": {"token_lifetime_s": 4}})"))
        == "source.imds.token_lifetime_s: must be between 5 and 3600 (is 4)");
  CHECK(problem(with_profile(R"("source": {"imds": {"token_lifetime_s": 7200}})"))
        == "source.imds.token_lifetime_s: must be between 5 and 3600 (is 7200)");
  CHECK(problem(with_profile(R"("source": {"imds": {"token_lifetime_s": 18446744073709551615}})"))
        == "source.imds.token_lifetime_s: must be between 5 and 3600 (is 18446744073709551615)");
}

TEST_CASE("refresh.min_valid_s must lie in 0 to 1800 and timeout_s in 1 to 300")
{
  CHECK(valid(with_profile(R"("refresh": {"min_valid_s": 0})")).refresh.min_valid.count() == 0);
  CHECK(valid(with_profile(R"("refresh": {"min_valid_s": 1800})")).refresh.min_valid.count() == 1800);
  CHECK(problem(with_profile(R"("refresh": {"min_valid_s": -1})"))
        == "refresh.min_valid_s: must be between 0 and 1800 (is -1)");
  CHECK(problem(with_profile(R"("refresh": {"min_valid_s": 1801})"))
        == "refresh.min_valid_s: must be between 0 and 1800 (is 1801)");
  CHECK(valid(with_profile(R"("refresh": {"timeout_s": 1})")).refresh.timeout.count() == 1);
  CHECK(valid(with_profile(R"("refresh": {"timeout_s": 300})")).refresh.timeout.count() == 300);
  CHECK(problem(with_profile(R"("refresh": {"timeout_s": 0})"))
        == "refresh.timeout_s: must be between 1 and 300 (is 0)");
  CHECK(problem(with_profile(R"("refresh": {"timeout_s": 301})"))
        == "refresh.timeout_s: must be between 1 and 300 (is 301)");
}

TEST_CASE("socket.max_connections must lie in 1 to 65536")
{
  CHECK(valid(with_profile(R"("socket": {"max_connections": 1})")).socket.max_connections == 1);
  CHECK(valid(with_profile(R"("socket": {"max_connections": 65536})")).socket.max_connections == 65536);
  CHECK(problem(with_profile(R"("socket": {"max_connections": 0})"))
        == "socket.max_connections: must be between 1 and 65536 (is 0)");
  CHECK(problem(with_profile(R"("socket": {"max_connections": 65537})"))
        == "socket.max_connections: must be between 1 and 65536 (is 65537)");
}

TEST_CASE("the http section listens on loopback literals with a port, 256 connections by default")
{
  const auto config = valid(with_profile(R"("http": {"listen": ["127.0.0.1:8911", "[::1]:8912", "127.9.8.7:0"]})"));
  REQUIRE(config.http);
  CHECK(config.http->listen == std::vector<HttpListen>{{"127.0.0.1", 8911}, {"::1", 8912}, {"127.9.8.7", 0}});
  CHECK(config.http->max_connections == 256);
  CHECK(to_string(config.http->listen[1]) == "[::1]:8912");
  CHECK(to_string(config.http->listen[0]) == "127.0.0.1:8911");
  CHECK(valid(with_profile(R"("http": {"listen": ["127.0.0.1:1"], "max_connections": 65536})")).http->max_connections
        == 65536);
}

TEST_CASE("an http listen entry that is not a loopback literal with a port is a problem at its path")
{
  const auto listen = [](std::string_view entry) {
    return problems(with_profile(fmt::format(R"("http": {{"listen": ["127.0.0.1:8911", "{}"]}})", entry)));
  };
  for (const auto* bad : {"0.0.0.0:8911", "10.0.0.1:8911", "localhost:8911", "[::]:8911", "[::ffff:127.0.0.1]:8911",
                          "::1:8911", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:80a",
                          "[::1]", "127.1:8911", ""}) {
    INFO(bad);
    const auto found = listen(bad);
    REQUIRE(found.size() == 1);
    CHECK(found[0].starts_with("http.listen[1]: must be a loopback address and a port"));
  }
  CHECK(listen("127.0.0.1:8911") == std::vector<std::string>{"http.listen[1]: duplicate address \"127.0.0.1:8911\""});
}

TEST_CASE("the http section needs a listen list and max_connections in 1 to 65536")
{
  CHECK(problems(with_profile(R"("http": {})")) == std::vector<std::string>{
          "http.listen: is required (the loopback addresses to listen on)"});
  CHECK(problems(with_profile(R"("http": {"listen": []})")) == std::vector<std::string>{
          "http.listen: must list at least one address"});
  CHECK(problems(with_profile(R"("http": {"listen": "127.0.0.1:8911"})")) == std::vector<std::string>{
          "http.listen: must be an array"});
  CHECK(problems(with_profile(R"("http": {"listen": [8911]})")) == std::vector<std::string>{
          "http.listen[0]: must be a string"});
  CHECK(problems(with_profile(R"("http": {"listen": ["127.0.0.1:1"], "max_connections": 0})"))
        == std::vector<std::string>{"http.max_connections: must be between 1 and 65536 (is 0)"});
  CHECK(problems(with_profile(R"("http": {"listen": ["127.0.0.1:1"], "max_connections": 65537})"))
        == std::vector<std::string>{"http.max_connections: must be between 1 and 65536 (is 65537)"});
  CHECK(problems(with_profile(R"("http": {"listen": ["127.0.0.1:1"], "port": 1})"))
        == std::vector<std::string>{"http.port: unknown key"});
  CHECK(problems(with_profile(R"("http": true)")) == std::vector<std::string>{"http: must be an object"});
}

TEST_CASE("socket.mode is a string of octal digits no larger than 0777")
{
  CHECK(valid(with_profile(R"("socket": {"mode": "0660"})")).socket.mode == 0660);
  CHECK(valid(with_profile(R"("socket": {"mode": "600"})")).socket.mode == 0600);
  CHECK(valid(with_profile(R"("socket": {"mode": "0777"})")).socket.mode == 0777);
  CHECK(problem(with_profile(R"("socket": {"mode": "1777"})")) == R"(socket.mode: must be at most "0777" (is "1777"))");
  CHECK(problem(with_profile(R"("socket": {"mode": "0680"})"))
        == R"(socket.mode: must be octal digits like "0660" (is "0680"))");
  CHECK(problem(with_profile(R"("socket": {"mode": "rw-rw----"})"))
        == R"(socket.mode: must be octal digits like "0660" (is "rw-rw----"))");
  CHECK(problem(with_profile(R"("socket": {"mode": ""})")) == R"(socket.mode: must be octal digits like "0660" (is ""))");
  CHECK(problem(with_profile(R"("socket": {"mode": 432})")) == "socket.mode: must be a string");
}

TEST_CASE("socket.path is absolute and fits in sun_path")
{
  const std::string longest = "/" + std::string(106, 's'); // 107 bytes + NUL = 108
  CHECK(valid(with_profile(fmt::format(R"("socket": {{"path": "{}"}})", longest))).socket.path == longest);
  CHECK(problem(with_profile(fmt::format(R"("socket": {{"path": "{}x"}})", longest)))
        == "socket.path: is 108 bytes long; a socket path fits in 107 bytes");
  CHECK(problem(with_profile(R"("socket": {"path": "run/x.sock"})"))
        == R"(socket.path: must be an absolute path (is "run/x.sock"))");
  CHECK(problem(with_profile(R"("socket": {"path": "/run/x\u0000y"})"))
        == R"(socket.path: must be an absolute path (is "/run/x\u0000y"))");
}

TEST_CASE("socket.group is resolved to a gid when the config loads")
{
  CHECK(valid(with_profile(R"("socket": {"group": "ops"})")).socket.group == NamedId{"ops", 2000});
  CHECK(problem(with_profile(R"("socket": {"group": "wheel"})")) == R"(socket.group: unknown group "wheel")");
}

TEST_CASE("allowed users and groups are resolved to ids, and unknown names are problems")
{
  const auto config = valid(R"({"profiles": [{"name": "p", "profile_id": "x",
    "allow": {"users": ["app", "svc"], "groups": ["ops"], "uids": [0, 4294967294], "gids": [7]}}]})");
  const auto& allow = *config.profiles[0].allow;
  CHECK(allow.users == std::vector<NamedId>{{"app", 1000}, {"svc", 1001}});
  CHECK(allow.groups == std::vector<NamedId>{{"ops", 2000}});
  CHECK(allow.uids == std::vector<uid_t>{0, 4294967294u});
  CHECK(allow.gids == std::vector<gid_t>{7});

  CHECK(problems(R"({"profiles": [
      {"name": "a", "profile_id": "x"}, {"name": "b", "profile_id": "x"},
      {"name": "c", "profile_id": "x", "allow": {"users": ["app", "bob"], "groups": ["staff"],
                                                 "uids": [-1], "gids": [4294967295]}}]})")
        == std::vector<std::string>{R"(profiles[2].allow.users[1]: unknown user "bob")",
                                    R"(profiles[2].allow.groups[0]: unknown group "staff")",
                                    "profiles[2].allow.uids[0]: must be between 0 and 4294967294 (is -1)",
                                    "profiles[2].allow.gids[0]: must be between 0 and 4294967294 (is 4294967295)"});
}

TEST_CASE("an allow list matches listed uids, user names, gids, group names and supplementary groups")
{
  const auto config = valid(R"({"profiles": [{"name": "p", "profile_id": "x",
    "allow": {"users": ["app"], "groups": ["ops"], "uids": [42], "gids": [7]}}]})");
  const auto& allow = *config.profiles[0].allow;
  const std::vector<gid_t> none;
  const std::vector<gid_t> extra{100, 2000};
  CHECK(allow.matches(1000, 50, none));  // user app
  CHECK(allow.matches(42, 50, none));    // uid
  CHECK(allow.matches(5, 7, none));      // gid
  CHECK(allow.matches(5, 2000, none));   // group ops as primary
  CHECK(allow.matches(5, 50, extra));    // group ops as supplementary
  CHECK(!allow.matches(5, 50, none));
  CHECK(!allow.matches(5, 50, std::vector<gid_t>{100}));
}

TEST_CASE("profile names follow [A-Za-z0-9._-]{1,64}")
{
  const std::string longest(64, 'n');
  CHECK(valid(R"({"profiles": [{"name": "Reader_1.prod-x", "profile_id": "x"}]})").profiles[0].name
        == "Reader_1.prod-x");
  CHECK(valid(fmt::format(R"({{"profiles": [{{"name": "{}", "profile_id": "x"}}]}})", longest)).profiles[0].name
        == longest);
  CHECK(problem(fmt::format(R"({{"profiles": [{{"name": "{}n", "profile_id": "x"}}]}})", longest))
        == fmt::format(R"(profiles[0].name: must be 1 to 64 characters of A-Z a-z 0-9 . _ - (is "{}n"))", longest));
  CHECK(problem(R"({"profiles": [{"name": "my reader", "profile_id": "x"}]})")
        == R"(profiles[0].name: must be 1 to 64 characters of A-Z a-z 0-9 . _ - (is "my reader"))");
  CHECK(problem(R"({"profiles": [{"name": "", "profile_id": "x"}]})")
        == R"(profiles[0].name: must be 1 to 64 characters of A-Z a-z 0-9 . _ - (is ""))");
  CHECK(problem(R"({"profiles": [{"profile_id": "x"}]})") == "profiles[0].name: is required");
}

TEST_CASE("profile names are unique")
{
  CHECK(problem(R"({"profiles": [{"name": "reader", "profile_id": "a"}, {"name": "writer", "profile_id": "b"},
                                 {"name": "reader", "profile_id": "c"}]})")
        == R"(profiles[2].name: duplicate name "reader" (also profiles[0]))");
}

TEST_CASE("the profile list is required and not empty")
{
  CHECK(problem("{}") == "profiles: is required (at least one profile)");
  CHECK(problem(R"({"profiles": []})") == "profiles: must list at least one profile");
}

TEST_CASE("a profile names its trusted profile by id, name or CRN")
{
  CHECK(valid(R"({"exchange": "iam", "profiles": [{"name": "p", "profile_id": "a", "profile_name": "b", "profile_crn": "c"}]})")
          .profiles[0]
          .profile_name
        == "b");
  CHECK(problem(R"({"exchange": "iam", "profiles": [{"name": "p"}]})")
        == "profiles[0]: needs one of profile_id, profile_name, profile_crn (the IAM exchange has no default "
           "trusted profile)");
  // The exchange may come after the profiles: the check waits for it.
  CHECK(problem(R"({"profiles": [{"name": "p"}], "source": {"type": "file"}})")
        == "profiles[0]: needs one of profile_id, profile_name, profile_crn (the IAM exchange has no default "
           "trusted profile)");
  CHECK(problem(R"({"profiles": [{"name": "p", "profile_id": ""}]})") == "profiles[0].profile_id: must not be empty");
}

TEST_CASE("exchange imds takes at most one identifier per profile and an imds source")
{
  CHECK(valid(R"({"exchange": "imds", "profiles": [{"name": "p", "profile_crn": "crn:v1:x"}]})").exchange
        == Exchange::imds);
  CHECK(problem(R"({"exchange": "imds", "profiles": [{"name": "p", "profile_id": "a", "profile_name": "b"}]})")
        == R"(profiles[0]: with "exchange": "imds" give at most one of profile_id, profile_name, profile_crn )"
           R"((none: the instance's default trusted profile))");
  // The default exchange with an imds source is imds too.
  CHECK(!problems(R"({"profiles": [{"name": "p", "profile_id": "a", "profile_name": "b"}]})").empty());
  // The same profile is fine with the exchange at IAM.
  CHECK(problems(R"({"exchange": "iam", "profiles": [{"name": "p", "profile_id": "a", "profile_name": "b"}]})").empty());
  CHECK(problem(R"({"exchange": "imds", "source": {"type": "file"}, "profiles": [{"name": "p", "profile_id": "a"}]})")
        == R"(exchange: "imds" needs an imds source (source.type is "file"))");
  CHECK(problem(with_profile(R"("exchange": "sts")")) == R"(exchange: must be "iam" or "imds" (is "sts"))");
}

TEST_CASE("imds.version is one of the two API generations")
{
  CHECK(valid(with_profile(R"("source": {"imds": {"version": "2025-08-26"}})")).source.imds.version == "2025-08-26");
  CHECK(valid(with_profile(R"("source": {"imds": {"version": "2022-03-01"}})")).source.imds.version == "2022-03-01");
  CHECK(problem(with_profile(R"("source": {"imds": {"version": "2024-01-01"}})"))
        == R"(source.imds.version: must be "2025-08-26" or "2022-03-01" (is "2024-01-01"))");
}

TEST_CASE("the IAM endpoint needs https unless its host is loopback")
{
  const auto iam = [](std::string_view url) {
    return with_profile(fmt::format(R"("iam": {{"endpoint": "{}"}})", url));
  };
  CHECK(valid(iam("https://iam.cloud.ibm.com")).iam.endpoint == "https://iam.cloud.ibm.com");
  CHECK(valid(iam("https://10.0.0.1:8443/prefix/")).iam.endpoint == "https://10.0.0.1:8443/prefix");
  CHECK(valid(iam("http://127.1.2.3:8080")).iam.endpoint == "http://127.1.2.3:8080");
  CHECK(valid(iam("http://[::1]:9000")).iam.endpoint == "http://[::1]:9000");
  CHECK(valid(iam("http://localhost")).iam.endpoint == "http://localhost");
  CHECK(problem(iam("http://10.0.0.1"))
        == R"(iam.endpoint: must use https:// unless the host is loopback (is "http://10.0.0.1"))");
  CHECK(problem(iam("http://iam.cloud.ibm.com"))
        == R"(iam.endpoint: must use https:// unless the host is loopback (is "http://iam.cloud.ibm.com"))");
  CHECK(problem(iam("http://127.0.0.1.evil.example")).starts_with("iam.endpoint: must use https://"));
}

TEST_CASE("the IMDS endpoint may be http or https and must be a plain URL")
{
  const auto imds = [](std::string_view url) {
    return with_profile(fmt::format(R"("source": {{"imds": {{"endpoint": "{}"}}}})", url));
  };
  CHECK(valid(imds("http://169.254.169.254")).source.imds.endpoint == "http://169.254.169.254");
  CHECK(valid(imds("https://api.metadata.cloud.ibm.com")).source.imds.endpoint == "https://api.metadata.cloud.ibm.com");
  const std::string message = "source.imds.endpoint: must be an http:// or https:// URL with a host, an optional "
                              "port and path, and no query";
  CHECK(problem(imds("ftp://169.254.169.254")) == message + R"( (is "ftp://169.254.169.254"))");
  CHECK(problem(imds("http://169.254.169.254/?version=1")) == message + R"( (is "http://169.254.169.254/?version=1"))");
  CHECK(problem(imds("http://")) == message + R"( (is "http://"))");
  CHECK(problem(imds("169.254.169.254")) == message + R"( (is "169.254.169.254"))");
  CHECK(problem(imds("http://169.254.169.254:99999")) == message + R"( (is "http://169.254.169.254:99999"))");
}

TEST_CASE("URLs parse into scheme, host, port and path")
{
  auto url = parse_url("https://IAM.example.com:8443/a/b");
  REQUIRE(url);
  CHECK(url->scheme == "https");
  CHECK(url->host == "IAM.example.com");
  CHECK(url->port == 8443);
  CHECK(url->path == "/a/b");

  url = parse_url("HTTP://[::1]");
  REQUIRE(url);
  CHECK(url->scheme == "http");
  CHECK(url->host == "::1");
  CHECK(url->port == 0);
  CHECK(url->path.empty());

  CHECK(!parse_url("http://user:pw@host"));
  CHECK(!parse_url("http://host#frag"));
  CHECK(!parse_url("http://host:"));
  CHECK(!parse_url("http://host:0"));
  CHECK(!parse_url("http://[::1"));
  CHECK(!parse_url("http://[nothost]"));
  CHECK(!parse_url("http://ho st"));
  CHECK(!parse_url("http:/host"));
}

TEST_CASE("loopback hosts are 127/8, ::1 and localhost")
{
  CHECK(is_loopback_host("127.0.0.1"));
  CHECK(is_loopback_host("127.1.2.3"));
  CHECK(is_loopback_host("::1"));
  CHECK(is_loopback_host("[::1]"));
  CHECK(is_loopback_host("::ffff:127.0.0.1"));
  CHECK(is_loopback_host("localhost"));
  CHECK(is_loopback_host("LocalHost"));
  CHECK(!is_loopback_host("10.0.0.1"));
  CHECK(!is_loopback_host("128.0.0.1"));
  CHECK(!is_loopback_host("::2"));
  CHECK(!is_loopback_host("127.0.0.1.nip.io"));
  CHECK(!is_loopback_host("localhost.example.com"));
}

TEST_CASE("every problem of a config is reported at once")
{
  const auto found = problems(R"({
    "socket": {"mode": "999", "colour": "blue"},
    "refresh": {"at_fraction": 0.99},
    "iam": {"endpoint": "http://10.0.0.1"},
    "profiles": [{"name": "a", "profile_id": "x", "allow": {"users": ["bob"]}}]
  })");
  CHECK(found == std::vector<std::string>{
                   R"(socket.mode: must be octal digits like "0660" (is "999"))",
                   "socket.colour: unknown key",
                   "refresh.at_fraction: must be between 0.5 and 0.95 (is 0.99)",
                   R"(iam.endpoint: must use https:// unless the host is loopback (is "http://10.0.0.1"))",
                   R"(profiles[0].allow.users[0]: unknown user "bob")",
                 });
}

TEST_CASE("a JSON syntax error or a duplicate key is a single problem")
{
  const auto syntax = parse_config(R"({"profiles": [}, "x": tru})", k_names);
  REQUIRE(!syntax);
  REQUIRE(syntax.error().size() == 1);
  CHECK(syntax.error()[0].path.empty());
  CHECK(syntax.error()[0].message.starts_with("invalid JSON"));

  CHECK(problem(R"({"profiles": [{"name": "a", "name": "b", "profile_id": "x"}]})")
        == "duplicate key profiles[0].name");
  CHECK(problem(with_profile("") + " {}").starts_with("invalid JSON"));
  CHECK(problem("").starts_with("invalid JSON"));
}

TEST_CASE("check-config summary lines say how each profile is identified and who may use it")
{
  const auto config = valid(R"({"exchange": "iam", "profiles": [
    {"name": "reader", "profile_id": "Profile-1", "allow": {"users": ["app"], "groups": ["iamtoken"], "uids": [7]}},
    {"name": "deployer", "profile_name": "ci", "profile_crn": "crn:v1:x"},
    {"name": "root-only", "profile_id": "Profile-2", "allow": {}}]})");
  CHECK(summary_lines(config)
        == std::vector<std::string>{
          R"(reader: profile_id "Profile-1"; allowed: user app (uid 1000), uid 7, group iamtoken (gid 998), root, the daemon's user)",
          R"(deployer: profile_name "ci", profile_crn "crn:v1:x"; allowed: any caller that can open the socket)",
          R"(root-only: profile_id "Profile-2"; allowed: root, the daemon's user)",
        });
}

TEST_CASE("the exchange defaults to imds with an imds source and to iam with a file source")
{
  CHECK(valid(R"({"profiles": [{"name": "p", "profile_id": "a"}]})").exchange == Exchange::imds);
  CHECK(valid(R"({"source": {"type": "file"}, "profiles": [{"name": "p", "profile_id": "a"}]})").exchange
        == Exchange::iam);
  CHECK(valid(R"({"exchange": "iam", "profiles": [{"name": "p", "profile_id": "a"}]})").exchange == Exchange::iam);
}

TEST_CASE("a profile with no selector asks IMDS for the instance's default trusted profile")
{
  const auto config = valid(R"({"profiles": [{"name": "default"}]})");
  REQUIRE(config.exchange == Exchange::imds);
  CHECK(config.profiles[0].profile_id.empty());
  CHECK(config.profiles[0].profile_name.empty());
  CHECK(config.profiles[0].profile_crn.empty());
  CHECK(summary_line(config.profiles[0])
        == "default: the instance's default trusted profile; allowed: any caller that can open the socket");
}

TEST_CASE("exchange iam with an imds source loads with a deprecation warning, and only then")
{
  TempDir dir;
  const auto deprecated =
    load_config(dir.write("a.json", R"({"exchange": "iam", "profiles": [{"name": "p", "profile_id": "a"}]})"),
                k_names, ::geteuid());
  REQUIRE(deprecated);
  REQUIRE(deprecated->warnings.size() == 1);
  CHECK(deprecated->warnings[0].path == "exchange");
  CHECK(deprecated->warnings[0].message.find("deprecates") != std::string::npos);
  for (const auto* text : {R"({"profiles": [{"name": "p", "profile_id": "a"}]})",
                           R"({"exchange": "imds", "profiles": [{"name": "p", "profile_id": "a"}]})",
                           R"({"source": {"type": "file"}, "exchange": "iam", "profiles": [{"name": "p", "profile_id": "a"}]})"}) {
    const auto loaded = load_config(dir.write("b.json", text), k_names, ::geteuid());
    REQUIRE(loaded);
    CHECK(loaded->warnings.empty());
  }
}

TEST_CASE("refresh.connect_timeout_s defaults to 2 and lies in 1 to 60")
{
  CHECK(valid(with_profile(R"("refresh": {"connect_timeout_s": 1})")).refresh.connect_timeout.count() == 1);
  CHECK(valid(with_profile(R"("refresh": {"connect_timeout_s": 60})")).refresh.connect_timeout.count() == 60);
  CHECK(problem(with_profile(R"("refresh": {"connect_timeout_s": 0})"))
        == "refresh.connect_timeout_s: must be between 1 and 60 (is 0)");
  CHECK(problem(with_profile(R"("refresh": {"connect_timeout_s": 61})"))
        == "refresh.connect_timeout_s: must be between 1 and 60 (is 61)");
  CHECK(problem(with_profile(R"("refresh": {"connect_timeout_s": 2.5})"))
        == "refresh.connect_timeout_s: must be an integer");
}

TEST_CASE("loading a file reads and validates it")
{
  TempDir dir;
  const auto path = dir.write("config.json", R"({"profiles": [{"name": "reader", "profile_id": "Profile-1"}]})");
  const auto loaded = load_config(path, k_names, ::geteuid());
  REQUIRE(loaded);
  CHECK(loaded->config.profiles[0].name == "reader");
  CHECK(loaded->warnings.empty());
}

TEST_CASE("a missing or unreadable config file is a problem naming the file")
{
  TempDir dir;
  const auto missing = (dir.path() / "nope.json").string();
  auto loaded = load_config(missing, k_names);
  REQUIRE(!loaded);
  REQUIRE(loaded.error().size() == 1);
  CHECK(to_string(loaded.error()[0]) == missing + ": cannot open: No such file or directory");

  loaded = load_config(dir.path().string(), k_names);
  REQUIRE(!loaded);
  CHECK(to_string(loaded.error()[0]) == dir.path().string() + ": is not a regular file");

  const auto broken = dir.write("broken.json", "{");
  loaded = load_config(broken, k_names);
  REQUIRE(!loaded);
  REQUIRE(loaded.error().size() == 1);
  CHECK(to_string(loaded.error()[0]).starts_with(broken + ": invalid JSON"));

  const auto huge = dir.write("huge.json", std::string(1024 * 1024 + 1, ' '));
  loaded = load_config(huge, k_names);
  REQUIRE(!loaded);
  CHECK(to_string(loaded.error()[0]) == huge + ": is larger than 1048576 bytes");
}

TEST_CASE("a config file writable by others or owned by someone else loads with warnings")
{
  TempDir dir;
  const std::string text = R"({"profiles": [{"name": "reader", "profile_id": "Profile-1"}]})";
  const auto writable = dir.write("writable.json", text, 0666);
  const auto loaded = load_config(writable, k_names, ::geteuid());
  REQUIRE(loaded);
  REQUIRE(loaded->warnings.size() == 1);
  CHECK(to_string(loaded->warnings[0])
        == writable + ": is writable by group or others (mode 0666); only its owner should be able to change it");

  // Ownership can only be given away by root; otherwise the file is ours,
  // so pretend the daemon runs as someone else.
  const auto owned = dir.write("owned.json", text, 0644);
  const bool given_away = ::chown(owned.c_str(), 4242, static_cast<gid_t>(-1)) == 0;
  const uid_t owner = given_away ? 4242 : ::geteuid();
  if (owner != 0) {
    const auto foreign = load_config(owned, k_names, owner + 1);
    REQUIRE(foreign);
    REQUIRE(foreign->warnings.size() == 1);
    CHECK(to_string(foreign->warnings[0])
          == fmt::format("{}: is owned by uid {}, neither root nor the daemon's user (uid {})", owned, owner,
                         owner + 1));
    const auto own = load_config(owned, k_names, owner);
    REQUIRE(own);
    CHECK(own->warnings.empty());
  }
}

TEST_CASE("the system resolver knows root and not a made-up name")
{
  CHECK(system_resolver().user("root") == uid_t{0});
  CHECK(system_resolver().group("root") == gid_t{0});
  CHECK(!system_resolver().user("no-such-user-iamtok"));
  CHECK(!system_resolver().group("no-such-group-iamtok"));
  CHECK(!system_resolver().user(std::string("ro\0ot", 5)));
}

TEST_CASE("examples/config.json spells out exactly the defaults")
{
  const auto loaded = load_config(IAMTOK_SOURCE_DIR "/examples/config.json", k_names);
  REQUIRE(loaded);
  Config defaults;
  defaults.profiles = loaded->config.profiles;
  CHECK(loaded->config == defaults);
}

TEST_CASE("the VSI and pod examples are valid")
{
  const auto vsi = load_config(IAMTOK_SOURCE_DIR "/examples/vsi.json", k_names);
  REQUIRE(vsi);
  CHECK(vsi->config.source.type == SourceType::imds);
  CHECK(vsi->config.socket.group == NamedId{"iamtoken", 998});
  CHECK(vsi->config.profiles.size() == 3);

  const auto pod = load_config(IAMTOK_SOURCE_DIR "/examples/pod.json", k_names);
  REQUIRE(pod);
  CHECK(pod->config.source.type == SourceType::file);
  CHECK(pod->config.source.file.path == "/var/run/secrets/tokens/sa-token");
}

// The generic readers and section tables of daemon/config/reader.hpp.

namespace {

// One parsed JSON value for a reader.
struct Json
{
  explicit Json(std::string_view text) : padded(text) { REQUIRE(parser.parse(padded).get(root) == simdjson::SUCCESS); }
  simdjson::padded_string padded;
  simdjson::dom::parser parser;
  simdjson::dom::element root;
};

std::vector<std::string> printed(const read::Reader& reader)
{
  std::vector<std::string> out;
  for (const auto& found : reader.problems()) {
    out.push_back(to_string(found));
  }
  return out;
}

struct Sample
{
  std::int64_t count = 7;
  std::string label;
};

const read::Key<Sample> k_sample_keys[] = {
  read::key("count", &Sample::count, read::Integer<>{1, 10}),
  read::key("label", &Sample::label, read::string, "is required (a label)"),
};

} // namespace

TEST_CASE("a section table reads its keys, rejects every other key at its path and reports missing required keys")
{
  const Json json(R"({"colour": 1, "count": 3, "nested": {"label": "x"}, "label ": "y"})");
  read::Reader reader(k_names);
  Sample out;
  read::read_fields<Sample>(reader, json.root.get_object().value_unsafe(), "top", k_sample_keys, out);
  CHECK(out.count == 3);
  CHECK(out.label.empty());
  CHECK(printed(reader) == std::vector<std::string>{"top.colour: unknown key", "top.nested: unknown key",
                                                    R"(top.<key>: unknown key "label ")",
                                                    "top.label: is required (a label)"});
  CHECK(reader.has("top.count"));
  CHECK(!reader.has("top.colour"));
  CHECK(!reader.has("top.label"));
}

TEST_CASE("a section reader needs an object and leaves absent keys at their defaults")
{
  const read::Section<Sample> section{k_sample_keys};
  read::Reader reader(k_names);
  CHECK(!section(reader, Json("[]").root, "s"));
  const auto got = section(reader, Json(R"({"label": "a", "count": 11})").root, "t");
  REQUIRE(got);
  CHECK(got->label == "a");
  CHECK(got->count == 7);
  CHECK(printed(reader) == std::vector<std::string>{"s: must be an object", "t.count: must be between 1 and 10 (is 11)"});
  CHECK(!reader.has("s"));
  CHECK(reader.has("t"));
  CHECK(reader.has("t.label"));
}

TEST_CASE("a one-of reader names its choices in table order")
{
  enum class Colour { red, green, blue };
  const read::Choice<Colour> colours[] = {{"red", Colour::red}, {"green", Colour::green}, {"blue", Colour::blue}};
  const read::OneOf<Colour> colour{colours};
  read::Reader reader(k_names);
  CHECK(colour(reader, Json(R"("green")").root, "c") == Colour::green);
  CHECK(!colour(reader, Json(R"("Green")").root, "c"));
  CHECK(!colour(reader, Json("1").root, "c"));
  CHECK(printed(reader)
        == std::vector<std::string>{R"(c: must be "red", "green" or "blue" (is "Green"))", "c: must be a string"});
  const std::string_view two[] = {"a", "b"};
  CHECK(read::one_of_message(two, "c\n") == R"(must be "a" or "b" (is "c\n"))");
}

TEST_CASE("an endpoint reader applies its scheme rule and drops trailing slashes")
{
  const read::Endpoint any{read::Schemes::http_or_https};
  const read::Endpoint https{read::Schemes::https_unless_loopback};
  read::Reader reader(k_names);
  CHECK(any(reader, Json(R"("http://10.0.0.1/x//")").root, "e") == "http://10.0.0.1/x");
  CHECK(https(reader, Json(R"("http://127.0.0.1/")").root, "e") == "http://127.0.0.1");
  CHECK(https(reader, Json(R"("HTTPS://iam.example.com")").root, "e") == "HTTPS://iam.example.com");
  CHECK(reader.problems().empty());
  CHECK(!https(reader, Json(R"("http://10.0.0.1")").root, "e"));
  CHECK(!any(reader, Json(R"("10.0.0.1")").root, "e"));
  CHECK(printed(reader)
        == std::vector<std::string>{R"(e: must use https:// unless the host is loopback (is "http://10.0.0.1"))",
                                    "e: must be an http:// or https:// URL with a host, an optional port and path, "
                                    R"(and no query (is "10.0.0.1"))"});
}

TEST_CASE("a list reader reads each entry at its index and leaves out the entries with problems")
{
  const read::ListOf numbers{read::Integer<int>{0, 5}};
  read::Reader reader(k_names);
  CHECK(numbers(reader, Json(R"([1, 9, "x", 3])").root, "l") == std::vector<int>{1, 3});
  CHECK(numbers(reader, Json("[]").root, "l") == std::vector<int>{});
  CHECK(!numbers(reader, Json("{}").root, "m"));
  CHECK(printed(reader) == std::vector<std::string>{"l[1]: must be between 0 and 5 (is 9)", "l[2]: must be an integer",
                                                    "m: must be an array"});

  read::Reader strict(k_names);
  std::vector<std::string> paths;
  const auto each = [&](simdjson::dom::element, const std::string& at) { paths.push_back(at); };
  CHECK(!read::for_each_item(strict, Json("[]").root, "n", "must list at least one", each));
  CHECK(read::for_each_item(strict, Json("[0, 0]").root, "n", "must list at least one", each));
  CHECK(paths == std::vector<std::string>{"n[0]", "n[1]"});
  CHECK(printed(strict) == std::vector<std::string>{"n: must list at least one"});
}

TEST_CASE("user and group name readers resolve through the reader's resolver")
{
  read::Reader reader(k_names);
  CHECK(read::user_name(reader, Json(R"("svc")").root, "u") == NamedId{"svc", 1001});
  CHECK(read::group_name(reader, Json(R"("ops")").root, "g") == NamedId{"ops", 2000});
  CHECK(!read::user_name(reader, Json(R"("ops")").root, "u"));
  CHECK(!read::group_name(reader, Json(R"("svc")").root, "g"));
  CHECK(!read::group_name(reader, Json(R"("")").root, "g"));
  CHECK(printed(reader) == std::vector<std::string>{R"(u: unknown user "ops")", R"(g: unknown group "svc")",
                                                    "g: must not be empty"});
}

TEST_CASE("report passes each problem of a failed load, or each warning of a good one, as one line")
{
  TempDir dir;
  std::vector<std::string> problem_lines;
  std::vector<std::string> warning_lines;
  const auto to = [](std::vector<std::string>& lines) {
    return [&lines](const std::string& line) { lines.push_back(line); };
  };
  const auto bad = load_config(dir.write("bad.json", R"({"socket": {"mode": "9"}, "profiles": []})"), k_names);
  CHECK(!report(bad, to(problem_lines), to(warning_lines)));
  CHECK(problem_lines == std::vector<std::string>{R"(socket.mode: must be octal digits like "0660" (is "9"))",
                                                  "profiles: must list at least one profile"});
  CHECK(warning_lines.empty());

  problem_lines.clear();
  const auto good = load_config(
    dir.write("good.json", R"({"exchange": "iam", "profiles": [{"name": "p", "profile_id": "a"}]})", 0666), k_names,
    ::geteuid());
  CHECK(report(good, to(problem_lines), to(warning_lines)));
  CHECK(problem_lines.empty());
  REQUIRE(warning_lines.size() == 2);
  CHECK(warning_lines[0].starts_with("exchange: \"iam\" with an imds source"));
  CHECK(warning_lines[1].find(": is writable by group or others (mode 0666)") != std::string::npos);
}
