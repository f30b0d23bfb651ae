// iamtoken-get's pure parts: the command line, exit codes per error code,
// the output formats and the status table. The socket path is covered by
// tests/e2e/daemon_test.cpp.

#include "client/client.hpp"

#include <catch2/catch.hpp>

#include <vector>

using namespace iamtok;
using namespace iamtok::client;

namespace {

tl::expected<Options, std::string> parse(std::vector<const char*> args, const char* env = nullptr)
{
  return parse_args(args, env);
}

// The line of `text` starting with `first`, its runs of spaces collapsed to one.
std::string words_of_line(const std::string& text, const std::string& first)
{
  const auto start = text.find("\n" + first + " ");
  if (start == std::string::npos) {
    return {};
  }
  const auto line = text.substr(start + 1, text.find('\n', start + 1) - start - 1);
  std::string words;
  for (const char c : line) {
    if (c != ' ' || (!words.empty() && words.back() != ' ')) {
      words += c;
    }
  }
  return words;
}

} // namespace

TEST_CASE("the client's command line follows iamtoken-get(1)", "[client]")
{
  const auto plain = parse({"-p", "reader"});
  REQUIRE(plain);
  CHECK(plain->action == Options::Action::token);
  CHECK(plain->profile == "reader");
  CHECK(plain->format == Format::raw);
  CHECK(plain->socket_path == "/run/iamtokend/iamtokend.sock");
  CHECK(plain->timeout == std::chrono::seconds(15));
  CHECK_FALSE(plain->min_valid_s);

  const auto full = parse({"--profile=deployer", "--format", "env", "--min-valid", "1800", "--socket", "/s",
                           "--timeout", "0.25", "--quiet"},
                          "/env.sock");
  REQUIRE(full);
  CHECK(full->profile == "deployer");
  CHECK(full->format == Format::env);
  CHECK(full->min_valid_s == 1800);
  CHECK(full->socket_path == "/s");
  CHECK(full->timeout == std::chrono::milliseconds(250));
  CHECK(full->quiet);

  CHECK(parse({"-preader"}, "/env.sock")->socket_path == "/env.sock");
  CHECK(parse({"--status", "--format", "json"})->action == Options::Action::status);
  CHECK(parse({"--help", "--bogus-after"}).has_value() == false);
  CHECK(parse({"--version"})->action == Options::Action::version);
}

TEST_CASE("the client rejects bad command lines with a message", "[client]")
{
  for (const auto& args : std::vector<std::vector<const char*>>{
         {},
         {"-p"},
         {"-p", ""},
         {"-p", "r", "--format", "yaml"},
         {"-p", "r", "--min-valid", "-1"},
         {"-p", "r", "--min-valid", "1801"},
         {"-p", "r", "--min-valid", "5s"},
         {"-p", "r", "--timeout", "0"},
         {"-p", "r", "--timeout", "1.2345"},
         {"-p", "r", "--quiet=yes"},
         {"-p", "r", "stray"},
         {"--status", "-p", "r"},
         {"--status", "--format", "raw"},
       }) {
    const auto result = parse(args);
    CHECK_FALSE(result.has_value());
    if (!result) {
      CHECK_FALSE(result.error().empty());
    }
  }
}

TEST_CASE("each daemon error code maps to its exit code", "[client]")
{
  CHECK(exit_code_for("unavailable") == 75);
  CHECK(exit_code_for("busy") == 75);
  CHECK(exit_code_for("forbidden") == 77);
  CHECK(exit_code_for("unknown_profile") == 78);
  CHECK(exit_code_for("bad_request") == 70);
  CHECK(exit_code_for("internal") == 70);
  CHECK(exit_code_for("a_code_from_the_future") == 70);
}

TEST_CASE("an unavailable reply's failure names the upstream error", "[client]")
{
  const auto reply = proto::parse_reply(
    R"({"ok":false,"error":{"code":"unavailable","message":"no token","retry_after_s":7,)"
    R"("upstream":{"status":400,"code":"BXNIM0398E","request_id":"abc"}}})");
  REQUIRE(reply);
  const auto failure = failure_of(*reply);
  CHECK(failure.exit_code == 75);
  CHECK(failure.code == "unavailable");
  CHECK(failure.message == "no token (retry after 7 s) [upstream: HTTP 400 BXNIM0398E request_id abc]");
}

TEST_CASE("token replies print in each format", "[client]")
{
  const auto reply = proto::parse_reply(
    R"({"ok":true,"profile":"reader","access_token":"tok","token_type":"Bearer","expires_at":1795000000,"expires_in":9})");
  REQUIRE(reply);
  CHECK(token_output(*reply, Format::raw) == "tok\n");
  CHECK(token_output(*reply, Format::header) == "Authorization: Bearer tok\n");
  CHECK(token_output(*reply, Format::env) == "IAM_ACCESS_TOKEN=tok\nIAM_TOKEN_EXPIRES_AT=1795000000\n");
  CHECK(token_output(*reply, Format::json) ==
        R"({"ok":true,"profile":"reader","access_token":"tok","token_type":"Bearer","expires_at":1795000000,"expires_in":9})"
        "\n");
}

TEST_CASE("the status table shows each profile's times relative to now", "[client]")
{
  proto::StatusInfo status;
  status.version = "1.0.0";
  status.uptime_s = 3700;
  status.source = {"imds", "ok", 1000 + 250};
  status.profiles.push_back({"reader", "fresh", 1000 + 3000, 1000 + 2400, 3, 0, std::nullopt});
  status.profiles.push_back({"deployer", "failed", std::nullopt, 1000 + 60, 0, 4,
                             proto::LastError{400, "BXNIM0398E", "id", "no such profile"}});
  status.counters = {12, 1, 9, 2};
  const auto table = status_table(status, 1000);
  CHECK(table.find("iamtokend 1.0.0, up 1h 1m, source imds (ok, CR token expires in 4m 10s)") == 0);
  CHECK(words_of_line(table, "reader") == "reader fresh 50m 0s 40m 0s 3 0 -");
  CHECK(words_of_line(table, "deployer") == "deployer failed - 1m 0s 0 4 BXNIM0398E");
  CHECK(table.find("requests 12, errors 1, upstream calls 9, connections 2\n") != std::string::npos);
}
