// docker-credential-iamtoken against the real iamtokend and iamtoken-sim:
// Docker's credential-helper protocol (get/list/store/erase on argv, the
// server URL on stdin, JSON or the not-found text on stdout). ICR hosts get
// the token `iamtoken-get -p registry` prints; other hosts and lookalikes get
// Docker's not-found answer; nothing secret reaches stderr. Tokens are
// compared, never printed.

#include "tests/e2e/child_process.hpp"
#include "tests/e2e/daemon_fixture.hpp"

#include <catch2/catch.hpp>

#include <simdjson.h>

using namespace iamtok;
using namespace iamtok::test;

namespace {

constexpr std::string_view k_not_found = "credentials not found in native keychain\n";

// reader and deployer as usual; registry is a third name for the deployer
// trusted profile, so its token differs from reader's.
DaemonConfig registry_config()
{
  DaemonConfig config;
  config.exchange = "iam"; // the IAM grant: its calls and error codes are what these checks read
  config.profiles = fmt::format(R"([{{"name":"reader","profile_id":"{}"}},)"
                                R"({{"name":"deployer","profile_name":"deployer"}},)"
                                R"({{"name":"registry","profile_name":"deployer"}}])",
                                k_reader_id);
  return config;
}

struct Helper
{
  int exit_code = -1;
  std::string out; // may hold a token: never print it
  std::string err;
};

Helper helper(const DaemonFixture& fixture, std::vector<std::string> args, std::string stdin_text,
              std::vector<std::string> env = {})
{
  env.push_back("IAMTOKEN_SOCKET=" + fixture.socket_path());
  Child child({DOCKER_CREDENTIAL_BINARY, std::move(args), std::move(env), std::move(stdin_text)});
  Helper result;
  result.exit_code = child.exit_code();
  result.out = child.out();
  result.err = child.err();
  return result;
}

std::string token_of(const DaemonFixture& fixture, const std::string& profile)
{
  const auto raw = fixture.get({"-p", profile});
  REQUIRE(raw.exit_code == 0);
  REQUIRE(raw.out.size() > 20);
  return raw.out.substr(0, raw.out.size() - 1);
}

struct Credentials
{
  bool parsed = false;
  std::size_t members = 0;
  std::string server_url;
  std::string username;
  std::string secret;
};

Credentials credentials_of(const std::string& text)
{
  Credentials credentials;
  simdjson::dom::parser parser;
  simdjson::dom::object object;
  if (parser.parse(text).get(object) != simdjson::SUCCESS) {
    return credentials;
  }
  std::string_view server_url;
  std::string_view username;
  std::string_view secret;
  if (object["ServerURL"].get(server_url) != simdjson::SUCCESS || object["Username"].get(username) != simdjson::SUCCESS ||
      object["Secret"].get(secret) != simdjson::SUCCESS) {
    return credentials;
  }
  credentials = {true, object.size(), std::string(server_url), std::string(username), std::string(secret)};
  return credentials;
}

} // namespace

TEST_CASE("get answers ICR hosts in every form with the registry profile's token", "[docker]")
{
  DaemonFixture fixture;
  fixture.start(registry_config());
  const auto registry_token = token_of(fixture, "registry");
  const auto reader_token = token_of(fixture, "reader");
  REQUIRE(registry_token != reader_token);

  for (const auto& [input, server_url] : std::vector<std::pair<std::string, std::string>>{
         {"icr.io", "icr.io"},
         {"https://us.icr.io", "https://us.icr.io"},
         {"https://us.icr.io/v2/", "https://us.icr.io/v2/"},
         {"private.us.icr.io", "private.us.icr.io"},
         {"https://private.jp2.icr.io/v2/\n", "https://private.jp2.icr.io/v2/"},
         {"  de.icr.io:443\r\n", "de.icr.io:443"},
         {"HTTPS://UK.ICR.IO", "HTTPS://UK.ICR.IO"}}) {
    INFO(server_url);
    const auto result = helper(fixture, {"get"}, input);
    CHECK(result.exit_code == 0);
    CHECK(result.err.empty());
    REQUIRE(result.out.back() == '\n');
    const auto credentials = credentials_of(result.out);
    REQUIRE(credentials.parsed);
    CHECK(credentials.members == 3);
    CHECK(credentials.server_url == server_url);
    CHECK(credentials.username == "iambearer");
    const bool is_registry_token = credentials.secret == registry_token;
    CHECK(is_registry_token);
  }

  SECTION("IAMTOKEN_REGISTRY_PROFILE names another profile")
  {
    const auto result = helper(fixture, {"get"}, "us.icr.io", {"IAMTOKEN_REGISTRY_PROFILE=reader"});
    CHECK(result.exit_code == 0);
    const bool is_reader_token = credentials_of(result.out).secret == reader_token;
    CHECK(is_reader_token);
  }
  CHECK(leaks_token(fixture.daemon().stderr_text(), registry_token) == false);
}

TEST_CASE("get refuses other hosts and lookalikes with Docker's not-found answer", "[docker]")
{
  DaemonFixture fixture;
  fixture.start(registry_config());
  // Every profile holds its token: no exchange is pending.
  for (const std::string profile : {"reader", "deployer", "registry"}) {
    token_of(fixture, profile);
  }
  const auto calls_before = json_count(fixture.sim_stats(), "iam");
  REQUIRE(calls_before >= 2);

  for (const std::string input :
       {"https://index.docker.io/v1/", "docker.io", "quay.io", "https://icr.io.example.com/v2/", "icr.io.example.com",
        "evilicr.io", "https://evilicr.io", "icr.io.", "user@icr.io", "ftp://icr.io", "https://us.icr.io.evil.com/v2/"}) {
    INFO(input);
    const auto result = helper(fixture, {"get"}, input);
    CHECK(result.exit_code == 1);
    CHECK(result.out == k_not_found);
    CHECK(result.err.empty());
  }
  // Docker's text for an empty request.
  const auto empty = helper(fixture, {"get"}, "\n");
  CHECK(empty.exit_code == 1);
  CHECK(empty.out == "no credentials server URL\n");
  // None of it asked the daemon for a token, so none reached IAM.
  CHECK(json_count(fixture.sim_stats(), "iam") == calls_before);
}

TEST_CASE("list, store and erase: nothing is stored, and a stored secret is not echoed", "[docker]")
{
  DaemonFixture fixture;
  fixture.start(registry_config());

  const auto list = helper(fixture, {"list"}, "");
  CHECK(list.exit_code == 0);
  CHECK(list.out == "{}\n");
  CHECK(list.err.empty());

  const std::string secret = "s3cr3t-from-docker-login-0123456789";
  const auto store = helper(fixture, {"store"},
                            R"({"ServerURL":"https://us.icr.io","Username":"iambearer","Secret":")" + secret + "\"}");
  CHECK(store.exit_code == 1);
  CHECK(store.out.empty());
  CHECK(store.err.find("docker-credential-iamtoken: store: not supported") == 0);
  CHECK(store.err.find(secret) == std::string::npos);

  const auto erase = helper(fixture, {"erase"}, "https://us.icr.io");
  CHECK(erase.exit_code == 1);
  CHECK(erase.out.empty());
  CHECK(erase.err.find("docker-credential-iamtoken: erase: not supported") == 0);

  for (const auto& args : std::vector<std::vector<std::string>>{{}, {"fetch"}, {"get", "extra"}}) {
    const auto usage = helper(fixture, args, "icr.io");
    CHECK(usage.exit_code == 64);
    CHECK(usage.out.empty());
    CHECK(usage.err.find("docker-credential-iamtoken: usage: ") == 0);
  }
  const auto version = helper(fixture, {"--version"}, "");
  CHECK(version.exit_code == 0);
  CHECK(version.out.find("docker-credential-iamtoken ") == 0);
}

TEST_CASE("get reports daemon errors on stderr with iamtoken-get's exit codes", "[docker]")
{
  DaemonFixture fixture;
  fixture.start(registry_config());

  SECTION("78 when the profile does not exist")
  {
    const auto result = helper(fixture, {"get"}, "icr.io", {"IAMTOKEN_REGISTRY_PROFILE=nobody"});
    CHECK(result.exit_code == 78);
    CHECK(result.out.empty());
    CHECK(result.err.find("docker-credential-iamtoken: unknown_profile: profile nobody: ") == 0);
    CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
  }
  SECTION("the default profile is named registry")
  {
    DaemonFixture other;
    other.start(); // reader and deployer only
    const auto result = helper(other, {"get"}, "icr.io");
    CHECK(result.exit_code == 78);
    CHECK(result.err.find("profile registry: ") != std::string::npos);
  }
  SECTION("69 when the daemon is not reachable")
  {
    Child child({DOCKER_CREDENTIAL_BINARY,
                 {"get"},
                 {"IAMTOKEN_SOCKET=" + (fixture.dir() / "missing.sock").string()},
                 "us.icr.io"});
    CHECK(child.exit_code() == 69);
    CHECK(child.out().empty());
    CHECK(child.err().find("docker-credential-iamtoken: unreachable: ") == 0);
  }
}

TEST_CASE("get exits 75 when the exchange is refused and no token exists, and says why", "[docker]")
{
  DaemonFixture fixture;
  REQUIRE(fixture.sim_fault(R"({"target":"iam","mode":"status","status":400})").status == 204);
  auto config = registry_config();
  config.timeout_s = 2;
  fixture.start(config);
  REQUIRE(eventually([&] { return fixture.state_of("registry") == "failed"; }, std::chrono::seconds(10)));

  const auto result = helper(fixture, {"get"}, "icr.io");
  CHECK(result.exit_code == 75);
  CHECK(result.out.empty());
  CHECK(result.err.find("docker-credential-iamtoken: unavailable: profile registry: ") == 0);
  CHECK(result.err.find("BXNIM0400E") != std::string::npos);
  CHECK(leaks_token(result.err, "") == false);
}
