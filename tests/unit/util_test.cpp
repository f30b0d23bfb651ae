// util/: file descriptors, files, strings, error propagation, life tokens.

#include "tests/support/temp_dir.hpp"
#include "util/error.hpp"
#include "util/expected.hpp"
#include "util/fd.hpp"
#include "util/file.hpp"
#include "util/life.hpp"
#include "util/strings.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

using namespace iamtok;

namespace {

bool is_open(int fd)
{
  return ::fcntl(fd, F_GETFD) != -1;
}

tl::expected<int, std::string> half(int n)
{
  if (n % 2 != 0) {
    return tl::unexpected("odd: " + std::to_string(n));
  }
  return n / 2;
}

tl::expected<int, std::string> quarter(int n)
{
  IAMTOK_TRY_ASSIGN(h, half(n));
  IAMTOK_TRY_ASSIGN(q, half(h));
  return q;
}

tl::expected<void, std::string> check_even(int n)
{
  IAMTOK_TRY(half(n));
  return {};
}

} // namespace

TEST_CASE("An Fd closes what it owns once, and release gives it up")
{
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  {
    util::Fd read_end(fds[0]);
    util::Fd write_end(fds[1]);
    util::Fd moved(std::move(read_end));
    CHECK_FALSE(read_end);
    CHECK(moved.get() == fds[0]);
    CHECK(write_end.release() == fds[1]);
    CHECK_FALSE(write_end);
  }
  CHECK_FALSE(is_open(fds[0]));
  CHECK(is_open(fds[1]));
  ::close(fds[1]);
}

TEST_CASE("read_file reads a whole file, and says which step failed")
{
  test::TempDir dir;
  const std::string big(100'000, 'x');
  CHECK(util::read_file(dir.write("small", "hello\n"), 1024).value() == "hello\n");
  CHECK(util::read_file(dir.write("empty", ""), 1024).value().empty());
  CHECK(util::read_file(dir.write("big", big), big.size()).value() == big);

  const auto too_large = util::read_file(dir.file("big"), big.size() - 1);
  REQUIRE_FALSE(too_large);
  CHECK(too_large.error().kind == util::FileError::Kind::too_large);
  CHECK(util::describe(too_large.error(), 99'999) == "is larger than 99999 bytes");

  const auto missing = util::read_file(dir.file("missing"), 1024);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().kind == util::FileError::Kind::open);
  CHECK(missing.error().error == ENOENT);
  CHECK(util::describe(missing.error(), 1024) == "cannot open: No such file or directory");

  const auto directory = util::read_file(dir.path().string(), 1024);
  REQUIRE_FALSE(directory);
  CHECK(directory.error().kind == util::FileError::Kind::not_regular);
}

TEST_CASE("read_up_to stops at end of file or a full buffer")
{
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  util::Fd read_end(fds[0]);
  REQUIRE(::write(fds[1], "abcdef", 6) == 6);
  char buffer[4];
  CHECK(util::read_up_to(read_end.get(), buffer).value() == 4);
  CHECK(std::string(buffer, 4) == "abcd");
  ::close(fds[1]);
  CHECK(util::read_up_to(read_end.get(), buffer).value() == 2);
  CHECK(util::read_up_to(-1, buffer).error() == EBADF);
}

TEST_CASE("errno_text names the error")
{
  CHECK(util::errno_text(ENOENT) == "No such file or directory");
  CHECK(util::errno_text(EACCES) == "Permission denied");
}

TEST_CASE("ASCII string helpers ignore the locale and only touch ASCII")
{
  CHECK(util::trim(" \t a b \r\n") == "a b");
  CHECK(util::trim("   ").empty());
  CHECK(util::trim_right("  x \n") == "  x");
  CHECK(util::iequals("Content-Length", "content-LENGTH"));
  CHECK_FALSE(util::iequals("abc", "abd"));
  CHECK_FALSE(util::iequals("abc", "abcd"));
  CHECK(util::istarts_with("bearer abc", "Bearer "));
  CHECK_FALSE(util::istarts_with("Bear", "Bearer "));
  CHECK(util::to_lower("AbC-\xC3\x89") == "abc-\xC3\x89");
  CHECK(util::is_name("reader.v2_x-1"));
  CHECK_FALSE(util::is_name(""));
  CHECK_FALSE(util::is_name("has space"));
  CHECK_FALSE(util::is_name(std::string(65, 'a')));
  CHECK(util::is_name(std::string(64, 'a')));
}

TEST_CASE("IAMTOK_TRY and IAMTOK_TRY_ASSIGN return the first error")
{
  CHECK(quarter(8).value() == 2);
  CHECK(quarter(6).error() == "odd: 3");
  CHECK(quarter(5).error() == "odd: 5");
  CHECK(check_even(4).has_value());
  CHECK(check_even(3).error() == "odd: 3");
}

TEST_CASE("A Life's watches die with it or when it is reset")
{
  util::Life::Watch early;
  util::Life::Watch late;
  {
    util::Life life;
    early = life.watch();
    CHECK(early.alive());
    life.reset();
    CHECK_FALSE(early.alive());
    late = life.watch();
    CHECK(late.alive());
  }
  CHECK_FALSE(late.alive());
  CHECK_FALSE(util::Life::Watch().alive());
}
