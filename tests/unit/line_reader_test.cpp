// daemon/server/line_reader.hpp: the socket's request framing without a
// socket or a clock: bytes in, lines out, the line limit and the deadlines
// at injected times.

#include "daemon/server/line_reader.hpp"

#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

using namespace iamtok;
using namespace std::chrono_literals;
using server::LineClock;
using server::LineLimits;
using server::LineReader;

namespace {

const LineClock::time_point k_start = LineClock::time_point(1000s);

LineLimits small_limits()
{
  return LineLimits{8, 60s, 10s};
}

// Every complete line `reader` holds now, taken at `at`.
std::vector<std::string> lines(LineReader& reader, LineClock::time_point at = k_start)
{
  std::vector<std::string> out;
  while (reader.has_line()) {
    out.push_back(reader.take_line(at));
  }
  return out;
}

} // namespace

TEST_CASE("line reader: complete lines come out in order without their newline, the rest stays")
{
  const LineLimits limits = small_limits();
  LineReader reader(limits, k_start);
  CHECK_FALSE(reader.has_line());
  reader.append("a\nbc\n\nde");
  CHECK(lines(reader) == std::vector<std::string>{"a", "bc", ""});
  CHECK(reader.rest() == "de");
  CHECK_FALSE(reader.empty());
  reader.append("f\n");
  CHECK(lines(reader) == std::vector<std::string>{"def"});
  CHECK(reader.empty());
}

TEST_CASE("line reader: a line split across many appends is one line")
{
  const LineLimits limits = small_limits();
  LineReader reader(limits, k_start);
  for (const char ch : std::string("{\"op\":1}")) {
    reader.append(std::string(1, ch));
    CHECK_FALSE(reader.has_line());
    CHECK_FALSE(reader.too_long());
  }
  reader.append("\n");
  CHECK(lines(reader) == std::vector<std::string>{"{\"op\":1}"});
}

TEST_CASE("line reader: max_line_bytes before the newline is allowed, one more is too long")
{
  const LineLimits limits = small_limits();
  {
    LineReader reader(limits, k_start);
    reader.append("12345678\n");
    CHECK_FALSE(reader.too_long());
    CHECK(lines(reader) == std::vector<std::string>{"12345678"});
  }
  {
    LineReader reader(limits, k_start);
    reader.append("12345678");
    CHECK_FALSE(reader.has_line());
    CHECK_FALSE(reader.too_long()); // may still end with its '\n'
    reader.append("9");
    CHECK_FALSE(reader.has_line());
    CHECK(reader.too_long());
  }
  {
    // A newline past the limit does not make it a line.
    LineReader reader(limits, k_start);
    reader.append("123456789\nok\n");
    CHECK_FALSE(reader.has_line());
    CHECK(reader.too_long());
  }
  {
    // Lines before a too long one are still answered first.
    LineReader reader(limits, k_start);
    reader.append("ok\n123456789");
    CHECK_FALSE(reader.too_long());
    CHECK(lines(reader) == std::vector<std::string>{"ok"});
    CHECK(reader.too_long());
  }
}

TEST_CASE("line reader: fill reads straight into the buffer and keeps only what was read")
{
  const LineLimits limits = small_limits();
  LineReader reader(limits, k_start);
  reader.append("ab");
  std::size_t offered = 0;
  const std::size_t got = reader.fill(64, [&](char* data, std::size_t n) {
    offered = n;
    std::memcpy(data, "c\nd", 3);
    return std::size_t{3};
  });
  CHECK(offered == 64);
  CHECK(got == 3);
  CHECK(lines(reader) == std::vector<std::string>{"abc"});
  CHECK(reader.rest() == "d");
  CHECK(reader.fill(16, [](char*, std::size_t) { return std::size_t{0}; }) == 0);
  CHECK(reader.rest() == "d");
}

TEST_CASE("line reader: the idle deadline runs from the start, then from the last request taken")
{
  const LineLimits limits = small_limits();
  LineReader reader(limits, k_start);
  CHECK(reader.wait(k_start + 5s) == k_start + 60s);
  CHECK_FALSE(reader.partial());
  reader.append("ping\n");
  REQUIRE(reader.has_line());
  reader.take_line(k_start + 20s);
  CHECK(reader.wait(k_start + 21s) == k_start + 80s);
  CHECK_FALSE(reader.partial());
}

TEST_CASE("line reader: a partial line is given partial_line_timeout from its first wait")
{
  const LineLimits limits = small_limits();
  LineReader reader(limits, k_start);
  reader.append("pi");
  CHECK(reader.wait(k_start + 3s) == k_start + 13s);
  CHECK(reader.partial());
  reader.append("n");
  // More bytes do not restart the partial-line clock.
  CHECK(reader.wait(k_start + 9s) == k_start + 13s);
  reader.append("g\nne");
  REQUIRE(reader.has_line());
  reader.take_line(k_start + 11s);
  CHECK_FALSE(reader.partial());
  // The pipelined rest starts a new partial-line clock at the next wait.
  CHECK(reader.wait(k_start + 12s) == k_start + 22s);
  CHECK(reader.partial());
}

TEST_CASE("read_deadline is the idle deadline or the sooner partial-line one")
{
  const LineLimits limits = small_limits();
  CHECK(server::read_deadline(limits, k_start, std::nullopt) == k_start + 60s);
  CHECK(server::read_deadline(limits, k_start, k_start + 5s) == k_start + 15s);
  CHECK(server::read_deadline(limits, k_start, k_start + 55s) == k_start + 60s);
}

TEST_CASE("line reader: an empty reader frees its buffer before a wait, a partial one keeps it")
{
  const LineLimits limits{4096, 60s, 10s};
  const std::size_t unallocated = std::string().capacity();
  LineReader reader(limits, k_start);
  reader.append(std::string(200, 'x'));
  reader.wait(k_start);
  CHECK(reader.capacity() >= 200);
  reader.append("\n");
  CHECK(lines(reader).size() == 1);
  CHECK(reader.capacity() >= 200); // kept while the line is answered
  reader.wait(k_start);
  CHECK(reader.empty());
  CHECK(reader.capacity() == unallocated);
}
