#include "daemon/server/inet_peer.hpp"

#include "tests/support/other_user.hpp"
#include "util/fd.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

using namespace iamtok;

namespace {

// A listening socket on `address` (port 0: the kernel picks one), or an
// empty Fd when this host cannot bind it (no IPv6, say).
util::Fd listen_on(const sockaddr_storage& address, socklen_t length)
{
  util::Fd listener(::socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener) {
    return {};
  }
  if (address.ss_family == AF_INET6) {
    const int off = 0; // a v4-mapped bind needs the dual stack
    ::setsockopt(listener.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
  }
  if (::bind(listener.get(), reinterpret_cast<const sockaddr*>(&address), length) != 0
      || ::listen(listener.get(), 8) != 0) {
    return {};
  }
  return listener;
}

sockaddr_storage ipv4(const char* text)
{
  sockaddr_storage storage{};
  auto* in = reinterpret_cast<sockaddr_in*>(&storage);
  in->sin_family = AF_INET;
  REQUIRE(::inet_pton(AF_INET, text, &in->sin_addr) == 1);
  return storage;
}

sockaddr_storage ipv6(const char* text)
{
  sockaddr_storage storage{};
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
  in6->sin6_family = AF_INET6;
  REQUIRE(::inet_pton(AF_INET6, text, &in6->sin6_addr) == 1);
  return storage;
}

socklen_t length_of(const sockaddr_storage& address)
{
  return address.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
}

// The address `listener` is bound to (with the port the kernel chose).
sockaddr_storage bound_address(const util::Fd& listener)
{
  sockaddr_storage storage{};
  socklen_t length = sizeof(storage);
  REQUIRE(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&storage), &length) == 0);
  return storage;
}

// A client socket of `family` connected to `target` (blocking; loopback
// connects complete at once into the listen backlog).
util::Fd connect_to(int family, const sockaddr_storage& target)
{
  util::Fd client(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(client);
  REQUIRE(::connect(client.get(), reinterpret_cast<const sockaddr*>(&target), length_of(target)) == 0);
  return client;
}

util::Fd accept_one(const util::Fd& listener)
{
  util::Fd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(server);
  return server;
}

// Checks that `caller` is this process's user with its passwd groups.
void check_is_us(const server::Caller& caller)
{
  CHECK(caller.uid == ::getuid());
  CHECK(caller.pid == 0);
  if (const passwd* entry = ::getpwuid(::getuid())) {
    CHECK(caller.gid == entry->pw_gid);
    CHECK(std::find(caller.groups.begin(), caller.groups.end(), entry->pw_gid) != caller.groups.end());
  } else {
    CHECK(caller.gid == static_cast<gid_t>(-1));
    CHECK(caller.groups.empty());
  }
}

// Connects a `family` client to `target`, accepts it on `listener` and checks
// that the server end names this process's user.
void check_client_is_us(const util::Fd& listener, int family, const sockaddr_storage& target)
{
  const auto client = connect_to(family, target);
  const auto server = accept_one(listener);
  const auto caller = server::tcp_peer_credentials(server.get());
  REQUIRE(caller.has_value());
  check_is_us(*caller);
}

} // namespace

TEST_CASE("a loopback IPv4 client is identified as the user owning its socket")
{
  const auto listener = listen_on(ipv4("127.0.0.1"), sizeof(sockaddr_in));
  REQUIRE(listener);
  check_client_is_us(listener, AF_INET, bound_address(listener));
}

TEST_CASE("a loopback IPv6 client is identified as the user owning its socket")
{
  const auto listener = listen_on(ipv6("::1"), sizeof(sockaddr_in6));
  if (!listener) {
    WARN("cannot listen on [::1] (no IPv6 loopback here); skipped");
    return;
  }
  check_client_is_us(listener, AF_INET6, bound_address(listener));
}

TEST_CASE("an IPv4 client of a dual-stack listener (v4-mapped addresses) is identified")
{
  const auto listener = listen_on(ipv6("::ffff:127.0.0.1"), sizeof(sockaddr_in6));
  if (!listener) {
    WARN("cannot listen on [::ffff:127.0.0.1] (no IPv6 sockets here); skipped");
    return;
  }
  const auto mapped = bound_address(listener);
  auto target = ipv4("127.0.0.1");
  reinterpret_cast<sockaddr_in*>(&target)->sin_port = reinterpret_cast<const sockaddr_in6*>(&mapped)->sin6_port;
  check_client_is_us(listener, AF_INET, target);
}

TEST_CASE("a client running as another user is identified as that user, not as the server's")
{
  if (const auto problem = test::other_user_problem({}); !problem.empty()) {
    WARN("cannot connect as another user (" << problem << "); skipped");
    return;
  }
  const auto listener = listen_on(ipv4("127.0.0.1"), sizeof(sockaddr_in));
  REQUIRE(listener);
  const auto target = bound_address(listener);

  // The child connects as uid 65534 and holds its socket open until the
  // parent closes the pipe (its read then returns 0).
  int hold[2];
  REQUIRE(::pipe2(hold, O_CLOEXEC) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Only async-signal-safe calls here.
    ::close(hold[1]);
    test::connect_as_other_user(reinterpret_cast<const sockaddr*>(&target), sizeof(sockaddr_in));
    char byte = 0;
    while (::read(hold[0], &byte, 1) < 0 && errno == EINTR) {
    }
    ::_exit(0);
  }
  ::close(hold[0]);
  const auto server = accept_one(listener);
  const auto caller = server::tcp_peer_credentials(server.get());
  ::close(hold[1]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  REQUIRE(caller.has_value());
  CHECK(caller->uid == test::k_other_uid);
  if (const passwd* entry = ::getpwuid(test::k_other_uid)) {
    CHECK(caller->gid == entry->pw_gid);
  }
  CHECK(std::find(caller->groups.begin(), caller->groups.end(), 0U) == caller->groups.end());
}

TEST_CASE("a client that has closed its socket is not identified (never as root)")
{
  const auto listener = listen_on(ipv4("127.0.0.1"), sizeof(sockaddr_in));
  REQUIRE(listener);
  auto client = connect_to(AF_INET, bound_address(listener));
  const auto server = accept_one(listener);
  client.reset(); // the client's socket is orphaned: no process owns it any more

  const auto caller = server::tcp_peer_credentials(server.get());
  REQUIRE_FALSE(caller.has_value());
  CHECK(caller.error() == "the client's socket is closed");
}

TEST_CASE("a socket that is not a connected TCP socket gets a clear error")
{
  const auto listener = listen_on(ipv4("127.0.0.1"), sizeof(sockaddr_in));
  REQUIRE(listener);
  const auto unconnected = server::tcp_peer_credentials(listener.get());
  REQUIRE_FALSE(unconnected.has_value());
  CHECK(unconnected.error().rfind("getpeername: ", 0) == 0);

  int pair[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  const util::Fd a(pair[0]);
  const util::Fd b(pair[1]);
  const auto unix_socket = server::tcp_peer_credentials(a.get());
  REQUIRE_FALSE(unix_socket.has_value());
  CHECK(unix_socket.error().find("not an IPv4 or IPv6 socket") != std::string::npos);
}
