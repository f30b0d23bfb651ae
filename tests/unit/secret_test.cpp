#include "proto/secret.hpp"

#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <string>
#include <utility>

using iamtok::Secret;

TEST_CASE("a Secret formats as <redacted>, whatever the format spec")
{
  const Secret secret("not-a-real-token");
  CHECK(fmt::format("{}", secret) == "<redacted>");
  CHECK(fmt::format("token={:>12}", secret) == "token=  <redacted>");
  CHECK(fmt::format("{}", Secret()) == "<redacted>");
}

TEST_CASE("a Secret exposes its value only through expose()")
{
  const Secret secret("value-1");
  CHECK(secret.expose() == "value-1");
  CHECK(secret.size() == 7);
  CHECK_FALSE(secret.empty());
}

TEST_CASE("a moved-from Secret is empty, by construction and by assignment")
{
  Secret a("a-long-enough-value-to-live-on-the-heap-0123456789");
  Secret b(std::move(a));
  CHECK(a.empty()); // NOLINT(bugprone-use-after-move): the point of the test
  CHECK(b.expose() == "a-long-enough-value-to-live-on-the-heap-0123456789");

  Secret c("short");
  Secret d;
  d = std::move(c);
  CHECK(c.empty()); // NOLINT(bugprone-use-after-move)
  CHECK(d.expose() == "short");
}

TEST_CASE("copies of a Secret compare equal and are independent")
{
  const Secret a("value");
  Secret b = a;
  CHECK(a == b);
  b.wipe();
  CHECK(b.empty());
  CHECK(a.expose() == "value");
  CHECK_FALSE(a == b);
}

TEST_CASE("wipe_string empties a string and zeroes its whole buffer")
{
  std::string line = "{\"access_token\":\"not-a-real-token\"}";
  const std::size_t capacity = line.capacity();
  iamtok::wipe_string(line);
  CHECK(line.empty());
  CHECK(line.capacity() == capacity);
  // The buffer is still ours: every byte the token used is now zero.
  const char* data = line.data();
  bool all_zero = true;
  for (std::size_t i = 0; i < capacity; ++i) {
    all_zero = all_zero && data[i] == '\0';
  }
  CHECK(all_zero);
}
