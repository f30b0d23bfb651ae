// `iamtoken-get exec` against the real iamtokend and iamtoken-sim: COMMAND
// sees the token (the same one `iamtoken-get -p` prints) in the variables it
// was promised, runs as the same process (pid, exit status, signals, stdin),
// inherits no socket, and never runs when no token comes. Tokens are
// compared, never printed.

#include "tests/e2e/child_process.hpp"
#include "tests/e2e/daemon_fixture.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <csignal>
#include <map>

using namespace iamtok;
using namespace iamtok::test;
using namespace std::chrono_literals;

namespace {

// `iamtoken-get exec --socket <fixture's> ARGS...`.
ChildOptions exec_options(const DaemonFixture& fixture, std::vector<std::string> args)
{
  args.insert(args.begin(), {"exec", "--socket", fixture.socket_path()});
  return {IAMTOKEN_GET_BINARY, std::move(args), {}, {}};
}

// The token `iamtoken-get -p profile` prints, without its newline.
std::string token_of(const DaemonFixture& fixture, const std::string& profile)
{
  const auto raw = fixture.get({"-p", profile});
  REQUIRE(raw.exit_code == 0);
  REQUIRE(raw.out.size() > 20);
  return raw.out.substr(0, raw.out.size() - 1);
}

// NAME=value lines (as `env` prints them) as a map.
std::map<std::string, std::string> environment_of(const std::string& text)
{
  std::map<std::string, std::string> vars;
  std::size_t start = 0;
  while (start < text.size()) {
    const auto end = std::min(text.find('\n', start), text.size());
    const auto line = text.substr(start, end - start);
    const auto equals = line.find('=');
    if (equals != std::string::npos) {
      vars[line.substr(0, equals)] = line.substr(equals + 1);
    }
    start = end + 1;
  }
  return vars;
}

} // namespace

TEST_CASE("exec hands COMMAND the token in IAM_ACCESS_TOKEN, --env and --sdk-env variables", "[exec]")
{
  DaemonFixture fixture;
  fixture.start();
  const auto token = token_of(fixture, "deployer");
  const auto json = fixture.get({"-p", "deployer", "--format", "json"});
  const auto reply = proto::parse_reply(json.out);
  REQUIRE(reply.has_value());

  auto options = exec_options(fixture, {"-p", "deployer", "--env", "IC_IAM_TOKEN", "--env", "TF_VAR_ibm_token",
                                        "--sdk-env", "iam-identity", "--sdk-env", "VPC", "--", "/usr/bin/env"});
  options.env = {"IAMTOK_TEST_KEPT=kept", "IAM_ACCESS_TOKEN=stale-value", "VPC_AUTH_TYPE=iam"};
  Child child(options);
  REQUIRE(child.exit_code() == 0);
  CHECK(child.err().empty());
  const auto vars = environment_of(child.out());

  // Booleans, so a failure never prints a token.
  const auto holds_token = [&](const std::string& name) {
    const auto it = vars.find(name);
    return it != vars.end() && it->second == token;
  };
  CHECK(holds_token("IAM_ACCESS_TOKEN"));
  CHECK(holds_token("IC_IAM_TOKEN"));
  CHECK(holds_token("TF_VAR_ibm_token"));
  CHECK(holds_token("IAM_IDENTITY_BEARER_TOKEN"));
  CHECK(holds_token("VPC_BEARER_TOKEN"));
  CHECK((vars.count("IAM_IDENTITY_AUTH_TYPE") == 1 && vars.at("IAM_IDENTITY_AUTH_TYPE") == "bearerToken"));
  CHECK((vars.count("VPC_AUTH_TYPE") == 1 && vars.at("VPC_AUTH_TYPE") == "bearerToken"));
  REQUIRE(vars.count("IAM_TOKEN_EXPIRES_AT") == 1);
  // expires_at is derived from the boot clock per request: it may move by a second.
  CHECK(std::abs(std::stoll(vars.at("IAM_TOKEN_EXPIRES_AT")) - reply->expires_at) <= 1);
  // The rest of the environment is passed on; each variable appears once.
  CHECK((vars.count("IAMTOK_TEST_KEPT") == 1 && vars.at("IAMTOK_TEST_KEPT") == "kept"));
  const auto out = child.out();
  CHECK(std::count(out.begin(), out.end(), '\n') == static_cast<std::ptrdiff_t>(vars.size()));
  CHECK(out.find("\nIAM_ACCESS_TOKEN=") == out.rfind("\nIAM_ACCESS_TOKEN="));
  CHECK(leaks_token(fixture.daemon().stderr_text(), token) == false);
}

TEST_CASE("COMMAND replaces iamtoken-get: same pid, its own exit status, signals and stdin", "[exec]")
{
  DaemonFixture fixture;
  fixture.start();

  SECTION("the pid the test forked is COMMAND's $$")
  {
    Child child(exec_options(fixture, {"-p", "reader", "--", "/bin/sh", "-c", "echo $$"}));
    REQUIRE(child.exit_code() == 0);
    CHECK(child.out() == std::to_string(child.pid()) + "\n");
  }
  SECTION("exit 42 is the exit status")
  {
    Child child(exec_options(fixture, {"-p", "reader", "--", "/bin/sh", "-c", "exit 42"}));
    CHECK(child.exit_code() == 42);
    CHECK(child.err().empty());
  }
  SECTION("COMMAND killing itself with SIGTERM ends the process by that signal")
  {
    Child child(exec_options(fixture, {"-p", "reader", "--", "/bin/sh", "-c", "kill -TERM $$"}));
    const auto status = child.wait();
    REQUIRE(status.has_value());
    CHECK(WIFSIGNALED(*status));
    CHECK(WTERMSIG(*status) == SIGTERM);
  }
  SECTION("a signal sent to the pid reaches COMMAND itself")
  {
    Child child(exec_options(fixture, {"-p", "reader", "--", "sleep", "30"}));
    // Once the process image is sleep's, iamtoken-get is gone.
    const auto exe = fmt::format("/proc/{}/exe", child.pid());
    const bool replaced = eventually(
      [&] {
        std::error_code error;
        return std::filesystem::read_symlink(exe, error).filename() == "sleep";
      },
      20s);
    REQUIRE(replaced);
    REQUIRE(::kill(child.pid(), SIGINT) == 0);
    const auto status = child.wait();
    REQUIRE(status.has_value());
    CHECK(WIFSIGNALED(*status));
    CHECK(WTERMSIG(*status) == SIGINT);
  }
  SECTION("stdin is COMMAND's")
  {
    auto options = exec_options(fixture, {"-p", "reader", "cat"});
    options.stdin_text = "line one\nline two\n";
    Child child(options);
    REQUIRE(child.exit_code() == 0);
    CHECK(child.out() == "line one\nline two\n");
  }
  SECTION("COMMAND gets no socket and SIGPIPE at its default disposition")
  {
    Child fds(exec_options(fixture, {"-p", "reader", "--", "/bin/sh", "-c", "ls -l /proc/$$/fd/"}));
    REQUIRE(fds.exit_code() == 0);
    CHECK(fds.out().find("socket:") == std::string::npos);

    Child status(exec_options(fixture, {"-p", "reader", "--", "cat", "/proc/self/status"}));
    REQUIRE(status.exit_code() == 0);
    const auto text = status.out();
    const auto at = text.find("\nSigIgn:\t");
    REQUIRE(at != std::string::npos);
    const auto ignored = std::stoull(text.substr(at + 9, 16), nullptr, 16);
    CHECK((ignored & (1ULL << (SIGPIPE - 1))) == 0);
  }
}

TEST_CASE("exec runs nothing when no token comes, and exits with iamtoken-get's code", "[exec]")
{
  DaemonFixture fixture;
  fixture.start();
  const auto token = token_of(fixture, "reader");
  const auto marker = fixture.dir() / "marker";
  const std::vector<std::string> touch{"--", "/bin/sh", "-c", "touch \"$0\"", marker.string()};

  SECTION("78 for an unknown profile")
  {
    std::vector<std::string> args{"-p", "nobody"};
    args.insert(args.end(), touch.begin(), touch.end());
    Child child(exec_options(fixture, args));
    CHECK(child.exit_code() == 78);
    CHECK(child.out().empty());
    CHECK(child.err().find("iamtoken-get: unknown_profile: ") == 0);
  }
  SECTION("69 when the daemon is not reachable")
  {
    std::vector<std::string> args{"exec", "--socket", (fixture.dir() / "missing.sock").string(), "-p", "reader"};
    args.insert(args.end(), touch.begin(), touch.end());
    Child child({IAMTOKEN_GET_BINARY, args, {}, {}});
    CHECK(child.exit_code() == 69);
    CHECK(child.out().empty());
    CHECK(child.err().find("iamtoken-get: unreachable: ") == 0);
  }
  SECTION("64 for a usage error, --quiet keeps stderr empty")
  {
    for (const auto& bad : std::vector<std::vector<std::string>>{
           {"-p", "reader", "--env", "1BAD"}, {"-p", "reader", "--sdk-env", "a.b"}, {"--min-valid", "5"},
           {"-p", "reader", "--min-valid", "1801"}, {"-p", "reader", "--format", "raw"}}) {
      std::vector<std::string> args = bad;
      args.insert(args.end(), touch.begin(), touch.end());
      Child child(exec_options(fixture, args));
      CHECK(child.exit_code() == 64);
      CHECK(child.err().find("iamtoken-get: usage: ") == 0);
    }
    Child missing_command(exec_options(fixture, {"-p", "reader", "--"}));
    CHECK(missing_command.exit_code() == 64);
    std::vector<std::string> args{"-p", "nobody", "--quiet"};
    args.insert(args.end(), touch.begin(), touch.end());
    Child quiet(exec_options(fixture, args));
    CHECK(quiet.exit_code() == 78);
    CHECK(quiet.err().empty());
  }
  CHECK_FALSE(std::filesystem::exists(marker));
}

TEST_CASE("exec fails like a shell when COMMAND cannot run, and never shows the token", "[exec]")
{
  DaemonFixture fixture;
  fixture.start();
  const auto token = token_of(fixture, "reader");

  Child missing(exec_options(fixture, {"-p", "reader", "--", "iamtok-no-such-command-here"}));
  CHECK(missing.exit_code() == 127);
  CHECK(missing.out().empty());
  CHECK(missing.err() == "iamtoken-get: exec: cannot run iamtok-no-such-command-here: No such file or directory\n");

  // Not executable, for root too: no execute bit at all.
  const auto script = fixture.dir() / "not-executable.sh";
  std::ofstream(script) << "#!/bin/sh\necho ran\n";
  std::filesystem::permissions(script, std::filesystem::perms(0644));
  Child denied(exec_options(fixture, {"-p", "reader", "--", script.string()}));
  CHECK(denied.exit_code() == 126);
  CHECK(denied.out().empty());
  CHECK(denied.err().find("iamtoken-get: exec: cannot run ") == 0);
  CHECK(denied.err().find("Permission denied") != std::string::npos);

  CHECK(leaks_token(missing.err() + denied.err(), token) == false);
}

TEST_CASE("exec asks for a token valid 600 s unless --min-valid says otherwise", "[exec]")
{
  // A socket the test answers itself, to see the request iamtoken-get sends.
  TempDir dir;
  const auto path = (dir / "recording.sock").string();
  const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(listener >= 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  REQUIRE(::bind(listener, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0);
  REQUIRE(::listen(listener, 4) == 0);
  std::vector<std::string> requests;
  std::thread server([&] {
    for (int i = 0; i < 2; ++i) {
      pollfd entry{listener, POLLIN, 0};
      if (::poll(&entry, 1, 20'000) != 1) {
        return;
      }
      const int client = ::accept(listener, nullptr, nullptr);
      requests.push_back(read_line(client, 15s).value_or(""));
      write_all(client, proto::format_token_reply({}, "reader", Secret("fake.test.token"), 1'900'000'000, 900) + "\n");
      ::close(client);
    }
  });
  const auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"exec", "--socket", path, "-p", "reader"});
    args.insert(args.end(), {"--", "/bin/sh", "-c", "echo \"$IAM_ACCESS_TOKEN $IAM_TOKEN_EXPIRES_AT\""});
    Child child({IAMTOKEN_GET_BINARY, args, {}, {}});
    CHECK(child.exit_code() == 0);
    CHECK(child.out() == "fake.test.token 1900000000\n");
  };
  run({});
  run({"--min-valid", "30"});
  server.join();
  ::close(listener);
  REQUIRE(requests.size() == 2);
  const auto defaulted = proto::parse_request(requests[0]);
  REQUIRE(defaulted.has_value());
  CHECK(defaulted->op == proto::Op::token);
  CHECK(defaulted->profile == "reader");
  CHECK(defaulted->min_valid_s == 600);
  const auto given = proto::parse_request(requests[1]);
  REQUIRE(given.has_value());
  CHECK(given->min_valid_s == 30);
}
