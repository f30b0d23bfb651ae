// No token outlives its use in freed heap memory: the reply parsers' simdjson
// documents are wiped. This binary replaces the global operator new/delete
// and, while a check is armed, counts freed blocks that still hold a marker
// token. Its own binary, so the replacement affects no other test.

#include "daemon/upstream/replies.hpp"
#include "proto/codec.hpp"
#include "proto/secret.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include <malloc.h>

namespace {

std::atomic<bool> g_armed{false};
std::atomic<int> g_found{0};
constexpr std::string_view k_marker = "opaque-marker-token-5f0c9a1e7b3d4c2a8e6f-0123456789abcdef-0123456789abcdef";

void check_freed(void* block) noexcept
{
  if (block == nullptr || !g_armed.load(std::memory_order_relaxed)) {
    return;
  }
  const std::size_t size = malloc_usable_size(block);
  if (size >= k_marker.size() && memmem(block, size, k_marker.data(), k_marker.size()) != nullptr) {
    g_found.fetch_add(1, std::memory_order_relaxed);
  }
}

void* allocate(std::size_t size)
{
  void* block = std::malloc(size == 0 ? 1 : size);
  if (block == nullptr) {
    throw std::bad_alloc();
  }
  return block;
}

// prefix + marker + suffix in one buffer, reserved up front: no temporary
// holding the marker is freed along the way.
std::string around_marker(std::string_view prefix, std::string_view suffix)
{
  std::string out;
  out.reserve(prefix.size() + k_marker.size() + suffix.size() + 1);
  out += prefix;
  out += k_marker;
  out += suffix;
  return out;
}

// Counts the freed blocks holding the marker while `run` executes.
template<typename Run>
int leaks_during(Run run)
{
  g_found = 0;
  g_armed = true;
  run();
  g_armed = false;
  return g_found.load();
}

} // namespace

void* operator new(std::size_t size) { return allocate(size); }
void* operator new[](std::size_t size) { return allocate(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return std::malloc(size == 0 ? 1 : size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return std::malloc(size == 0 ? 1 : size); }
void operator delete(void* block) noexcept { check_freed(block); std::free(block); }
void operator delete[](void* block) noexcept { check_freed(block); std::free(block); }
void operator delete(void* block, std::size_t) noexcept { check_freed(block); std::free(block); }
void operator delete[](void* block, std::size_t) noexcept { check_freed(block); std::free(block); }

using namespace iamtok;

TEST_CASE("the marker check sees a token left in freed memory")
{
  REQUIRE(leaks_during([] {
            std::string leaked(k_marker);
            leaked += " and more, so it is on the heap";
          })
          > 0);
}

TEST_CASE("parsing a token reply leaves no copy of the token in freed memory")
{
  for (const auto call : {upstream::Call::imds_token, upstream::Call::imds_iam_token, upstream::Call::iam_token}) {
    const int leaks = leaks_during([call] {
      std::string body = around_marker(R"({"access_token":")", R"(","expires_in":3600,"scope":"ibm"})");
      {
        auto token = upstream::parse_token_reply(call, body);
        REQUIRE(token.has_value());
      } // the Secret wipes itself
      wipe_string(body);
    });
    CHECK(leaks == 0);
  }
}

TEST_CASE("parsing an error reply that echoes a token leaves no copy in freed memory")
{
  const int leaks = leaks_during([] {
    std::string body = around_marker(R"({"errorCode":"BXNIM0407E","errorMessage":"bad","errorDetails":")",
                                     R"(","context":{"requestId":"r"}})");
    {
      const auto error = upstream::parse_error_reply(upstream::Call::iam_token, 401, body, "", 0);
      REQUIRE(error.message.find(k_marker) == std::string::npos);
    }
    wipe_string(body);
  });
  CHECK(leaks == 0);
}
