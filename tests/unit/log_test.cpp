#include "daemon/log/log.hpp"
#include "proto/secret.hpp"
#include "tests/support/log_capture.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>

#include <unistd.h>

using namespace iamtok;

TEST_CASE("log lines carry sd-daemon priorities when the style is journal")
{
  CHECK(log::format_line(log::Level::debug, log::Style::journal, "d") == "<7>d");
  CHECK(log::format_line(log::Level::info, log::Style::journal, "i") == "<6>i");
  CHECK(log::format_line(log::Level::warn, log::Style::journal, "w") == "<4>w");
  CHECK(log::format_line(log::Level::error, log::Style::journal, "e") == "<3>e");
}

TEST_CASE("log lines start with a level word when the style is plain")
{
  CHECK(log::format_line(log::Level::debug, log::Style::plain, "d") == "DEBUG d");
  CHECK(log::format_line(log::Level::info, log::Style::plain, "i") == "INFO i");
  CHECK(log::format_line(log::Level::warn, log::Style::plain, "w") == "WARN w");
  CHECK(log::format_line(log::Level::error, log::Style::plain, "e") == "ERROR e");
}

TEST_CASE("the style follows JOURNAL_STREAM in the environment")
{
  const char* saved = std::getenv("JOURNAL_STREAM");
  const std::string saved_value = saved ? saved : "";

  ::setenv("JOURNAL_STREAM", "8:12345", 1);
  CHECK(log::style_from_environment() == log::Style::journal);
  ::unsetenv("JOURNAL_STREAM");
  CHECK(log::style_from_environment() == log::Style::plain);

  if (saved) {
    ::setenv("JOURNAL_STREAM", saved_value.c_str(), 1);
  }
}

TEST_CASE("a message with control characters stays on one line")
{
  const auto line = log::format_line(log::Level::info, log::Style::plain, "a\nb\r\tc\x01");
  CHECK(line == "INFO a\\nb\\r\\tc\\x01");
  CHECK(line.find('\n') == std::string::npos);
}

TEST_CASE("fmt-style calls format their arguments and reach the sink")
{
  test::LogCapture capture(log::Level::debug, log::Style::plain);
  log::info("profile {} refreshed in {} ms", "reader", 42);
  log::error("exit code {}", 3);
  REQUIRE(capture.lines().size() == 2);
  CHECK(capture.lines()[0] == "INFO profile reader refreshed in 42 ms");
  CHECK(capture.lines()[1] == "ERROR exit code 3");
}

TEST_CASE("events below the current level are dropped")
{
  test::LogCapture capture(log::Level::warn, log::Style::journal);
  log::debug("d");
  log::info("i");
  log::warn("w");
  log::error("e");
  CHECK(!log::enabled(log::Level::info));
  CHECK(log::enabled(log::Level::error));
  REQUIRE(capture.lines().size() == 2);
  CHECK(capture.lines()[0] == "<4>w");
  CHECK(capture.lines()[1] == "<3>e");
}

TEST_CASE("a Secret passed to the logger prints as <redacted>")
{
  test::LogCapture capture;
  const Secret token("eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2ln");
  log::info("got token {}", token);
  REQUIRE(capture.lines().size() == 1);
  CHECK(capture.lines()[0] == "INFO got token <redacted>");
  const bool leaked = capture.lines()[0].find("eyJ") != std::string::npos;
  CHECK(!leaked);
}

TEST_CASE("a capture restores the previous sink and level when it ends")
{
  test::LogCapture outer(log::Level::info, log::Style::plain);
  {
    test::LogCapture inner(log::Level::error, log::Style::journal);
    log::info("hidden");
    log::error("inner");
    REQUIRE(inner.lines() == std::vector<std::string>{"<3>inner"});
  }
  CHECK(log::level() == log::Level::info);
  log::info("outer");
  CHECK(outer.lines() == std::vector<std::string>{"INFO outer"});
}

TEST_CASE("log levels parse from their names")
{
  CHECK(log::parse_level("debug") == log::Level::debug);
  CHECK(log::parse_level("info") == log::Level::info);
  CHECK(log::parse_level("warn") == log::Level::warn);
  CHECK(log::parse_level("warning") == log::Level::warn);
  CHECK(log::parse_level("error") == log::Level::error);
  CHECK(!log::parse_level("INFO"));
  CHECK(!log::parse_level("verbose"));
  CHECK(log::to_string(log::Level::warn) == "warn");
}

TEST_CASE("the default sink writes each line with a newline to stderr")
{
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const int saved_stderr = ::dup(STDERR_FILENO);
  REQUIRE(saved_stderr >= 0);
  REQUIRE(::dup2(fds[1], STDERR_FILENO) >= 0);
  log::stderr_sink(log::Level::info, "INFO hello");
  ::dup2(saved_stderr, STDERR_FILENO);
  ::close(saved_stderr);
  ::close(fds[1]);

  char buffer[64] = {};
  const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
  ::close(fds[0]);
  CHECK(std::string(buffer, n > 0 ? static_cast<std::size_t>(n) : 0) == "INFO hello\n");
}
