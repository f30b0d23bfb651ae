// `iamtoken-get exec`'s pure parts: its command line, the environment names
// it accepts, the IBM SDK variable names and the environment COMMAND gets.
// Running COMMAND is covered by tests/e2e/exec_test.cpp.

#include "client/exec.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

using namespace iamtok;
using namespace iamtok::client;

namespace {

tl::expected<ExecOptions, std::string> parse(std::vector<const char*> args, const char* env = nullptr)
{
  return parse_exec_args(args, env);
}

std::vector<std::string> strings(std::initializer_list<const char*> items)
{
  return {items.begin(), items.end()};
}

} // namespace

TEST_CASE("exec parses its options up to COMMAND", "[client][exec]")
{
  const auto plain = parse({"-p", "deployer", "--", "terraform", "plan", "-out", "x"});
  REQUIRE(plain);
  CHECK(plain->profile == "deployer");
  CHECK(plain->min_valid_s == k_exec_default_min_valid_s);
  CHECK(plain->socket_path == "/run/iamtokend/iamtokend.sock");
  CHECK(plain->timeout == std::chrono::seconds(15));
  CHECK_FALSE(plain->quiet);
  CHECK(plain->env_names.empty());
  CHECK(plain->sdk_prefixes.empty());
  // Options of COMMAND stay COMMAND's.
  CHECK(plain->command == strings({"terraform", "plan", "-out", "x"}));

  const auto full = parse({"--profile=reader", "--min-valid", "0", "--env", "IC_IAM_TOKEN", "--env=TF_VAR_token",
                           "--sdk-env", "iam-identity", "--sdk-env=VPC", "--socket", "/s", "--timeout", "2.5",
                           "--quiet", "--", "--weird-command", "--", "-p"},
                          "/env.sock");
  REQUIRE(full);
  CHECK(full->profile == "reader");
  CHECK(full->min_valid_s == 0);
  CHECK(full->env_names == strings({"IC_IAM_TOKEN", "TF_VAR_token"}));
  CHECK(full->sdk_prefixes == strings({"IAM_IDENTITY", "VPC"}));
  CHECK(full->socket_path == "/s");
  CHECK(full->timeout == std::chrono::milliseconds(2500));
  CHECK(full->quiet);
  // Only the first "--" ends the options.
  CHECK(full->command == strings({"--weird-command", "--", "-p"}));

  SECTION("the first argument that is not an option starts COMMAND, without --")
  {
    const auto bare = parse({"-preader", "env"});
    REQUIRE(bare);
    CHECK(bare->profile == "reader");
    CHECK(bare->command == strings({"env"}));
  }
  SECTION("IAMTOKEN_SOCKET is the default socket, --socket wins")
  {
    CHECK(parse({"-p", "r", "true"}, "/env.sock")->socket_path == "/env.sock");
    CHECK(parse({"-p", "r", "true"}, "")->socket_path == "/run/iamtokend/iamtokend.sock");
  }
  SECTION("a name given twice is kept once")
  {
    const auto twice = parse({"-p", "r", "--env", "A", "--env", "A", "--sdk-env", "x-y", "--sdk-env", "X_Y", "true"});
    REQUIRE(twice);
    CHECK(twice->env_names == strings({"A"}));
    CHECK(twice->sdk_prefixes == strings({"X_Y"}));
  }
  SECTION("--help needs neither a profile nor a command")
  {
    const auto help = parse({"--help"});
    REQUIRE(help);
    CHECK(help->help);
  }
}

TEST_CASE("exec refuses a bad command line with a clear message", "[client][exec]")
{
  const std::vector<std::pair<std::vector<const char*>, std::string>> cases{
    {{"--", "true"}, "exec needs --profile NAME"},
    {{"-p", "reader"}, "exec needs a COMMAND"},
    {{"-p", "reader", "--"}, "exec needs a COMMAND"},
    {{"-p", "reader", "--", ""}, "exec needs a COMMAND"},
    {{"-p", "", "true"}, "--profile must not be empty"},
    {{"-p"}, "option -p needs a value"},
    {{"-p", "r", "--min-valid", "1801", "true"}, "--min-valid must be an integer from 0 to 1800"},
    {{"-p", "r", "--min-valid", "-1", "true"}, "--min-valid must be an integer from 0 to 1800"},
    {{"-p", "r", "--min-valid", "ten", "true"}, "--min-valid must be an integer from 0 to 1800"},
    {{"-p", "r", "--env", "1ABC", "true"}, "--env needs a variable name"},
    {{"-p", "r", "--env", "A-B", "true"}, "--env needs a variable name"},
    {{"-p", "r", "--env", "A=B", "true"}, "--env needs a variable name"},
    {{"-p", "r", "--env", "", "true"}, "--env needs a variable name"},
    {{"-p", "r", "--env", "IAM_TOKEN_EXPIRES_AT", "true"}, "would overwrite the expiry time"},
    {{"-p", "r", "--sdk-env", "9lives", "true"}, "--sdk-env needs a service name"},
    {{"-p", "r", "--sdk-env", "a.b", "true"}, "--sdk-env needs a service name"},
    {{"-p", "r", "--timeout", "0", "true"}, "--timeout must be a positive number of seconds"},
    {{"-p", "r", "--format", "raw", "true"}, "unknown option --format for exec"},
    {{"-p", "r", "--quiet=yes", "true"}, "option --quiet takes no value"},
  };
  for (const auto& [args, message] : cases) {
    INFO(message);
    const auto result = parse(args);
    REQUIRE_FALSE(result);
    CHECK(result.error().find(message) != std::string::npos);
  }
}

TEST_CASE("environment names: what a shell accepts, nothing else", "[client][exec]")
{
  for (const auto* name : {"A", "_", "IC_IAM_TOKEN", "tf_var_x1", "_9"}) {
    INFO(name);
    CHECK(is_env_name(name));
  }
  for (const auto* name : {"", "1A", "A-B", "A B", "A=B", "Ä", "A\n"}) {
    INFO(name);
    CHECK_FALSE(is_env_name(name));
  }
  CHECK(is_env_name(std::string(128, 'A')));
  CHECK_FALSE(is_env_name(std::string(129, 'A')));
}

TEST_CASE("sdk-env maps a service name to the IBM SDK variable prefix", "[client][exec]")
{
  CHECK(sdk_env_prefix("iam-identity") == "IAM_IDENTITY");
  CHECK(sdk_env_prefix("resource_controller") == "RESOURCE_CONTROLLER");
  CHECK(sdk_env_prefix("VPC") == "VPC");
  CHECK(sdk_env_prefix("cloud-object-storage2") == "CLOUD_OBJECT_STORAGE2");
  CHECK(sdk_env_prefix("-x") == "_X");
  CHECK_FALSE(sdk_env_prefix(""));
  CHECK_FALSE(sdk_env_prefix("2fa"));
  CHECK_FALSE(sdk_env_prefix("a b"));
  CHECK_FALSE(sdk_env_prefix("a/b"));
  // The variables PREFIX_BEARER_TOKEN must be names too.
  CHECK(sdk_env_prefix(std::string(115, 'a')));
  CHECK_FALSE(sdk_env_prefix(std::string(116, 'a')));
}

TEST_CASE("COMMAND's environment: the inherited one, the token variables replacing theirs", "[client][exec]")
{
  const auto options = parse({"-p", "r", "--env", "IC_IAM_TOKEN", "--env", "IAM_ACCESS_TOKEN", "--sdk-env",
                              "iam-identity", "--sdk-env", "vpc", "true"});
  REQUIRE(options);
  const std::vector<const char*> inherited{"PATH=/usr/bin",       "IAM_ACCESS_TOKEN=old",  "HOME=/root",
                                           "VPC_AUTH_TYPE=iam",   "IC_IAM_TOKEN",          "KEEP=IAM_ACCESS_TOKEN=x",
                                           "IAM_TOKEN_EXPIRES_AT=1"};
  const auto environment = exec_environment(inherited, *options, "tok.en", 1'900'000'000);
  const std::vector<std::string> expected{
    "PATH=/usr/bin",
    "HOME=/root",
    "KEEP=IAM_ACCESS_TOKEN=x",
    "IAM_ACCESS_TOKEN=tok.en",
    "IAM_TOKEN_EXPIRES_AT=1900000000",
    "IC_IAM_TOKEN=tok.en",
    "IAM_IDENTITY_AUTH_TYPE=bearerToken",
    "IAM_IDENTITY_BEARER_TOKEN=tok.en",
    "VPC_AUTH_TYPE=bearerToken",
    "VPC_BEARER_TOKEN=tok.en",
  };
  CHECK(environment == expected);
}

TEST_CASE("an exec failure exits like a shell: 127 not found, 126 otherwise", "[client][exec]")
{
  CHECK(exec_failure_exit_code(ENOENT) == 127);
  CHECK(exec_failure_exit_code(ENOTDIR) == 127);
  CHECK(exec_failure_exit_code(EACCES) == 126);
  CHECK(exec_failure_exit_code(ENOEXEC) == 126);
  CHECK(exec_failure_exit_code(E2BIG) == 126);
}

TEST_CASE("exec's help names every option and the default --min-valid", "[client][exec]")
{
  const auto help = exec_help_text();
  for (const auto* word : {"--profile", "--min-valid", "--env", "--sdk-env", "--socket", "--timeout", "--quiet",
                           "IAM_ACCESS_TOKEN", "IAM_TOKEN_EXPIRES_AT", "_AUTH_TYPE=bearerToken", "watch"}) {
    INFO(word);
    CHECK(help.find(word) != std::string::npos);
  }
  CHECK(help.find("default 600") != std::string::npos);
}

TEST_CASE("iamtoken-get --help covers exec and says when it is not the tool", "[client][exec]")
{
  const auto help = help_text();
  for (const auto* word : {"iamtoken-get exec --profile NAME", "--env VAR", "--sdk-env SERVICE", "-- COMMAND",
                           "IC_IAM_TOKEN", "SERVICE_AUTH_TYPE=bearerToken", "watch", "600"}) {
    INFO(word);
    CHECK(help.find(word) != std::string::npos);
  }
}
