// iamtoken-get --check and --metrics: their command line, which profiles
// fail the probe and the exit code. The socket path is covered by
// tests/e2e/operations_test.cpp.

#include "client/client.hpp"

#include <catch2/catch.hpp>

#include <vector>

using namespace iamtok;
using namespace iamtok::client;

namespace {

tl::expected<Options, std::string> parse(std::vector<const char*> args)
{
  return parse_args(args, nullptr);
}

proto::ProfileInfo profile(std::string name, std::string state, std::optional<std::int64_t> expires_at)
{
  proto::ProfileInfo p;
  p.name = std::move(name);
  p.state = std::move(state);
  p.expires_at = expires_at;
  return p;
}

constexpr std::int64_t k_now = 1'800'000'000;

proto::StatusInfo status()
{
  proto::StatusInfo s;
  s.profiles.push_back(profile("reader", "fresh", k_now + 600));
  s.profiles.push_back(profile("writer", "stale", k_now + 60));
  auto failed = profile("deployer", "failed", std::nullopt);
  failed.last_error = proto::LastError{400, "BXNIM0398E", "rid", "profile not eligible"};
  s.profiles.push_back(failed);
  s.profiles.push_back(profile("expired", "fresh", k_now)); // expires this second
  return s;
}

} // namespace

TEST_CASE("iamtoken-get --check takes any number of profiles, --metrics none", "[client]")
{
  const auto check = parse({"--check", "-p", "reader", "--profile=writer", "-preader"});
  REQUIRE(check);
  CHECK(check->action == Options::Action::check);
  CHECK(check->profiles == std::vector<std::string>{"reader", "writer", "reader"});

  const auto all = parse({"--check", "--socket", "/tmp/s", "--quiet"});
  REQUIRE(all);
  CHECK(all->action == Options::Action::check);
  CHECK(all->profiles.empty());
  CHECK(all->quiet);

  const auto metrics = parse({"--metrics", "--timeout", "2"});
  REQUIRE(metrics);
  CHECK(metrics->action == Options::Action::metrics);

  CHECK(parse({"--metrics", "-p", "x"}).error() == "--metrics takes no --profile");
  CHECK(parse({"--check", "--min-valid", "5"}).error() == "--check takes no --min-valid or --format");
  CHECK(parse({"--check", "--format", "json"}).error() == "--check takes no --min-valid or --format");
  CHECK(parse({"--check", "--status"}).error() == "--status, --check and --metrics exclude each other");
  CHECK(parse({"--check=yes"}).error() == "option --check takes no value");
}

TEST_CASE("iamtoken-get --check without profiles fails on every listed profile without a valid token", "[client]")
{
  const auto problems = check_profiles(status(), {}, k_now);
  REQUIRE(problems.size() == 2);
  CHECK(problems[0].profile == "deployer");
  CHECK(problems[0].exit_code == k_exit_temporary);
  CHECK(problems[0].message ==
        "profile deployer: no valid token: failed (last error: HTTP 400 BXNIM0398E: profile not eligible)");
  CHECK(problems[1].profile == "expired");
  CHECK(check_exit_code(problems) == k_exit_temporary);
}

TEST_CASE("iamtoken-get --check with profiles looks only at them, once each", "[client]")
{
  CHECK(check_profiles(status(), {"reader", "writer", "reader"}, k_now).empty());
  const auto problems = check_profiles(status(), {"reader", "deployer", "deployer", "ghost"}, k_now);
  REQUIRE(problems.size() == 2);
  CHECK(problems[0].profile == "deployer");
  CHECK(problems[1].profile == "ghost");
  CHECK(problems[1].code == "missing"); // the caller asks the daemon why
}

TEST_CASE("the exit code of iamtoken-get --check: unknown over forbidden over not ready", "[client]")
{
  CHECK(check_exit_code({}) == k_exit_ok);
  const CheckProblem not_ready{"a", k_exit_temporary, "not_ready", ""};
  const CheckProblem forbidden{"b", k_exit_forbidden, "forbidden", ""};
  const CheckProblem unknown{"c", k_exit_unknown_profile, "unknown_profile", ""};
  CHECK(check_exit_code({not_ready}) == k_exit_temporary);
  CHECK(check_exit_code({not_ready, forbidden}) == k_exit_forbidden);
  CHECK(check_exit_code({forbidden, unknown, not_ready}) == k_exit_unknown_profile);
}

TEST_CASE("a profile without a last error shows its state", "[client]")
{
  proto::StatusInfo s;
  s.profiles.push_back(profile("new", "pending", std::nullopt));
  const auto problems = check_profiles(s, {}, k_now);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].message == "profile new: no valid token: pending");
}
