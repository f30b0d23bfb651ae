// Runs the real iamtokend binary: --check-config on valid and invalid files,
// usage errors, --version and --help.

#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include <csignal>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace {

using iamtok::test::CStrings;
using iamtok::test::TempDir;
using iamtok::test::command_line;
using iamtok::test::environment_without;


struct Result
{
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string slurp(const std::string& path)
{
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Runs iamtokend with `args`, the test's environment minus IAMTOKEND_CONFIG
// and JOURNAL_STREAM plus `env`; waits at most 20 s.
Result run(const TempDir& dir, const std::vector<std::string>& args,
           const std::map<std::string, std::string>& env = {})
{
  std::vector<std::string> extra;
  for (const auto& [name, value] : env) {
    extra.push_back(name + "=" + value);
  }
  CStrings env_pointers(environment_without({"IAMTOKEND_CONFIG", "JOURNAL_STREAM"}, extra));
  CStrings argv_pointers(command_line(IAMTOKEND_BINARY, args));

  const auto out_path = dir.file("stdout");
  const auto err_path = dir.file("stderr");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, argv_pointers.front().c_str(), &actions, nullptr, argv_pointers.data(), env_pointers.data());
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE(spawned == 0);

  Result result;
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      FAIL("iamtokend did not exit within 20 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  REQUIRE(WIFEXITED(status));
  result.exit_code = WEXITSTATUS(status);
  result.out = slurp(out_path);
  result.err = slurp(err_path);
  return result;
}

std::vector<std::string> lines(const std::string& text)
{
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    out.push_back(line);
  }
  return out;
}

// Uses only names every Linux system has (root).
const std::string k_valid = R"({
  "socket": {"path": "/run/iamtokend-test/x.sock", "group": "root"},
  "profiles": [
    {"name": "reader", "profile_id": "Profile-1", "allow": {"users": ["root"], "groups": ["root"]}},
    {"name": "deployer", "profile_name": "ci-deployer", "allow": {"uids": [1001]}},
    {"name": "open", "profile_crn": "crn:v1:x"}
  ]
})";

} // namespace

TEST_CASE("check-config on a valid file prints one summary line per profile and exits 0")
{
  TempDir dir;
  const auto path = dir.write("config.json", k_valid);
  const auto result = run(dir, {"--check-config", "--config", path});
  CHECK(result.exit_code == 0);
  CHECK(lines(result.out)
        == std::vector<std::string>{
          R"(reader: profile_id "Profile-1"; allowed: user root (uid 0), group root (gid 0), root, the daemon's user)",
          R"(deployer: profile_name "ci-deployer"; allowed: uid 1001, root, the daemon's user)",
          R"(open: profile_crn "crn:v1:x"; allowed: any caller that can open the socket)",
        });
  CHECK(result.err.empty());
}

TEST_CASE("check-config prints every problem with its JSON path and exits 2")
{
  TempDir dir;
  const auto path = dir.write("config.json", R"({
    "socket": {"mode": "0999"},
    "refresh": {"at_fraction": 0.99, "timeout": 5},
    "profiles": [
      {"name": "a", "profile_id": "x"},
      {"name": "a", "profile_id": "y"},
      {"name": "c", "profile_id": "z", "allow": {"users": ["no-such-user-iamtok"]}}
    ]
  })");
  const auto result = run(dir, {"--check-config", "--config=" + path});
  CHECK(result.exit_code == 2);
  CHECK(result.out.empty());
  CHECK(lines(result.err)
        == std::vector<std::string>{
          R"(socket.mode: must be octal digits like "0660" (is "0999"))",
          "refresh.at_fraction: must be between 0.5 and 0.95 (is 0.99)",
          "refresh.timeout: unknown key",
          R"(profiles[1].name: duplicate name "a" (also profiles[0]))",
          R"(profiles[2].allow.users[0]: unknown user "no-such-user-iamtok")",
        });
}

TEST_CASE("check-config on a missing file or broken JSON exits 2 naming the file")
{
  TempDir dir;
  const auto missing = dir.file("missing.json");
  auto result = run(dir, {"--check-config", "--config", missing});
  CHECK(result.exit_code == 2);
  CHECK(result.err == missing + ": cannot open: No such file or directory\n");

  const auto broken = dir.write("broken.json", R"({"profiles": [)");
  result = run(dir, {"--check-config", "--config", broken});
  CHECK(result.exit_code == 2);
  CHECK(result.err.starts_with(broken + ": invalid JSON: "));
  CHECK(lines(result.err).size() == 1);
}

TEST_CASE("check-config warns about a config file others can write, and still exits 0")
{
  TempDir dir;
  const auto path = dir.write("config.json", k_valid, 0666);
  const auto result = run(dir, {"--check-config", "--config", path});
  CHECK(result.exit_code == 0);
  CHECK(lines(result.out).size() == 3);
  CHECK(result.err.starts_with("warning: " + path + ": is writable by group or others (mode 0666)"));
}

TEST_CASE("IAMTOKEND_CONFIG replaces the default path but not --config")
{
  TempDir dir;
  const auto good = dir.write("good.json", k_valid);
  const auto bad = dir.write("bad.json", "{}");

  auto result = run(dir, {"--check-config"}, {{"IAMTOKEND_CONFIG", good}});
  CHECK(result.exit_code == 0);
  CHECK(lines(result.out).size() == 3);

  result = run(dir, {"--check-config", "--config", bad}, {{"IAMTOKEND_CONFIG", good}});
  CHECK(result.exit_code == 2);
  CHECK(result.err == "profiles: is required (at least one profile)\n");
}

TEST_CASE("without --check-config an invalid config is logged and exits 2")
{
  TempDir dir;
  const auto bad = dir.write("bad.json", R"({"profiles": []})");

  auto result = run(dir, {"--config", bad});
  CHECK(result.exit_code == 2);
  CHECK(result.err == "ERROR invalid configuration: profiles: must list at least one profile\n");

  result = run(dir, {"--config", bad}, {{"JOURNAL_STREAM", "8:1234"}});
  CHECK(result.exit_code == 2);
  CHECK(result.err == "<3>invalid configuration: profiles: must list at least one profile\n");
}

TEST_CASE("usage errors exit 64 with one line pointing to --help")
{
  TempDir dir;
  const std::vector<std::vector<std::string>> bad_usages{
    {"--frobnicate"}, {"--config"}, {"--log-level", "loud"}, {"extra-argument"}, {"--version=2"}, {"--config="},
  };
  for (const auto& args : bad_usages) {
    INFO(fmt::format("{}", fmt::join(args, " ")));
    const auto result = run(dir, args);
    CHECK(result.exit_code == 64);
    CHECK(result.out.empty());
    REQUIRE(lines(result.err).size() == 1);
    CHECK(result.err.starts_with("iamtokend: "));
    CHECK(result.err.find("--help") != std::string::npos);
  }
  const auto result = run(dir, {"--frobnicate"});
  CHECK(result.err == "iamtokend: unknown option \"--frobnicate\" (see iamtokend --help)\n");
}

TEST_CASE("iamtokend --version prints the version and exits 0")
{
  TempDir dir;
  const auto result = run(dir, {"--version"});
  CHECK(result.exit_code == 0);
  CHECK(result.out == "iamtokend 1.0.0\n");
  CHECK(result.err.empty());
}

TEST_CASE("iamtokend --help describes every option and exits 0")
{
  TempDir dir;
  const auto result = run(dir, {"--help"});
  CHECK(result.exit_code == 0);
  CHECK(result.err.empty());
  CHECK(result.out.starts_with("Usage: iamtokend "));
  for (const auto* option : {"--config PATH", "--check-config", "--log-level LEVEL", "--version", "--help",
                             "IAMTOKEND_CONFIG", "/etc/iamtokend/config.json"}) {
    INFO(option);
    CHECK(result.out.find(option) != std::string::npos);
  }
}
