#include "daemon/server/inet_peer.hpp"

#include "util/error.hpp"
#include "util/fd.hpp"

#include <fmt/format.h>

#include <arpa/inet.h>
#include <grp.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

namespace iamtok::server {

namespace {

// One end of a connection in the form inet_diag uses: the address in network
// byte order in up to four 32-bit words (IPv4: the first), the port in network
// byte order. IPv4-mapped IPv6 addresses are turned into IPv4 ones, so a
// dual-stack listener and an IPv4 client agree on the tuple.
struct Endpoint
{
  int family = AF_UNSPEC;
  std::array<std::uint32_t, 4> address{};
  std::uint16_t port = 0; // network byte order

  bool operator==(const Endpoint&) const = default;
};

bool is_v4_mapped(const std::uint32_t* words)
{
  return words[0] == 0 && words[1] == 0 && words[2] == htonl(0x0000FFFF);
}

// `words` (network order; four for AF_INET6, one for AF_INET) as an Endpoint.
Endpoint make_endpoint(int family, const std::uint32_t* words, std::uint16_t port)
{
  Endpoint endpoint;
  endpoint.port = port;
  if (family == AF_INET6 && is_v4_mapped(words)) {
    endpoint.family = AF_INET;
    endpoint.address[0] = words[3];
  } else if (family == AF_INET6) {
    endpoint.family = AF_INET6;
    std::memcpy(endpoint.address.data(), words, 16);
  } else {
    endpoint.family = AF_INET;
    endpoint.address[0] = words[0];
  }
  return endpoint;
}

tl::expected<Endpoint, std::string> endpoint_of(const sockaddr_storage& storage)
{
  if (storage.ss_family == AF_INET) {
    sockaddr_in in{};
    std::memcpy(&in, &storage, sizeof(in));
    std::uint32_t word = in.sin_addr.s_addr;
    return make_endpoint(AF_INET, &word, in.sin_port);
  }
  if (storage.ss_family == AF_INET6) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, &storage, sizeof(in6));
    std::array<std::uint32_t, 4> words{};
    std::memcpy(words.data(), &in6.sin6_addr, 16);
    return make_endpoint(AF_INET6, words.data(), in6.sin6_port);
  }
  return tl::unexpected(fmt::format("not an IPv4 or IPv6 socket (address family {})", storage.ss_family));
}

// The uid owning the socket whose local end is `local` and remote end
// `remote`, by an exact inet_diag lookup (the kernel's own hash lookup of the
// 4-tuple, not a dump of every socket).
tl::expected<uid_t, std::string> socket_owner(const Endpoint& local, const Endpoint& remote)
{
  util::Fd netlink(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!netlink) {
    return tl::unexpected(fmt::format("netlink socket: {}", util::errno_text(errno)));
  }

  struct
  {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  constexpr std::uint32_t k_sequence = 1;
  message.header.nlmsg_len = sizeof(message);
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST; // no NLM_F_DUMP: one exact lookup
  message.header.nlmsg_seq = k_sequence;
  message.request.sdiag_family = static_cast<std::uint8_t>(local.family);
  message.request.sdiag_protocol = IPPROTO_TCP;
  message.request.idiag_states = ~0U;
  message.request.id.idiag_sport = local.port;
  message.request.id.idiag_dport = remote.port;
  std::memcpy(message.request.id.idiag_src, local.address.data(), 16);
  std::memcpy(message.request.id.idiag_dst, remote.address.data(), 16);
  message.request.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  message.request.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  ssize_t sent = 0;
  do {
    sent = ::sendto(netlink.get(), &message, sizeof(message), 0, reinterpret_cast<const sockaddr*>(&kernel),
                    sizeof(kernel));
  } while (sent < 0 && errno == EINTR);
  if (sent != static_cast<ssize_t>(sizeof(message))) {
    return tl::unexpected(fmt::format("netlink send: {}", sent < 0 ? util::errno_text(errno) : "short write"));
  }

  // The kernel answers inside sendto(), so the reply is already queued: never
  // block the caller's thread waiting for it.
  alignas(nlmsghdr) std::array<char, 8192> buffer{};
  ssize_t received = 0;
  do {
    received = ::recv(netlink.get(), buffer.data(), buffer.size(), MSG_DONTWAIT);
  } while (received < 0 && errno == EINTR);
  if (received < 0) {
    return tl::unexpected(fmt::format("netlink receive: {}", util::errno_text(errno)));
  }

  auto length = static_cast<int>(received);
  for (auto* header = reinterpret_cast<nlmsghdr*>(buffer.data()); NLMSG_OK(header, length);
       header = NLMSG_NEXT(header, length)) {
    if (header->nlmsg_seq != k_sequence) {
      continue;
    }
    if (header->nlmsg_type == NLMSG_ERROR) {
      const auto* error = static_cast<const nlmsgerr*>(NLMSG_DATA(header));
      if (header->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) {
        return tl::unexpected(std::string("netlink: truncated error reply"));
      }
      if (error->error == -ENOENT) {
        return tl::unexpected(std::string("no such socket on this host (the client is not local)"));
      }
      return tl::unexpected(fmt::format("netlink: {}", util::errno_text(-error->error)));
    }
    if (header->nlmsg_type != SOCK_DIAG_BY_FAMILY) {
      continue;
    }
    if (header->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) {
      return tl::unexpected(std::string("netlink: truncated inet_diag reply"));
    }
    const auto* reply = static_cast<const inet_diag_msg*>(NLMSG_DATA(header));
    // The lookup may fall back to a listener on that port: insist on the
    // exact tuple of an established connection.
    const Endpoint found_local = make_endpoint(reply->idiag_family, reply->id.idiag_src, reply->id.idiag_sport);
    const Endpoint found_remote = make_endpoint(reply->idiag_family, reply->id.idiag_dst, reply->id.idiag_dport);
    if (!(found_local == local) || !(found_remote == remote) || reply->idiag_state == TCP_LISTEN) {
      return tl::unexpected(std::string("no such socket on this host (the client is not local)"));
    }
    // A socket no process holds any more (closed, TIME_WAIT) has no inode and
    // the kernel reports uid 0 for it: never take that for root.
    if (reply->idiag_inode == 0) {
      return tl::unexpected(std::string("the client's socket is closed"));
    }
    return static_cast<uid_t>(reply->idiag_uid);
  }
  return tl::unexpected(std::string("netlink: no inet_diag reply"));
}

// `caller` completed with the primary group and NSS group list of its uid;
// unchanged (no groups, gid (gid_t)-1) when the uid has no passwd entry.
void add_groups(Caller& caller)
{
  passwd entry{};
  passwd* result = nullptr;
  std::vector<char> buffer(16 * 1024);
  for (int attempt = 0; attempt < 8; ++attempt) {
    const int error = ::getpwuid_r(caller.uid, &entry, buffer.data(), buffer.size(), &result);
    if (error != ERANGE) {
      break;
    }
    buffer.resize(buffer.size() * 2);
  }
  if (result == nullptr) {
    return;
  }
  caller.gid = entry.pw_gid;
  std::vector<gid_t> groups(32);
  for (int attempt = 0; attempt < 8; ++attempt) {
    int count = static_cast<int>(groups.size());
    if (::getgrouplist(entry.pw_name, entry.pw_gid, groups.data(), &count) >= 0) {
      groups.resize(static_cast<std::size_t>(count));
      caller.groups = std::move(groups);
      return;
    }
    // Too small: glibc stores the size needed in `count`.
    const auto needed = static_cast<std::size_t>(count);
    groups.resize(needed > groups.size() ? needed : groups.size() * 2);
  }
}

} // namespace

tl::expected<Caller, std::string> tcp_peer_credentials(int fd)
{
  sockaddr_storage local_address{};
  sockaddr_storage peer_address{};
  socklen_t local_length = sizeof(local_address);
  socklen_t peer_length = sizeof(peer_address);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local_address), &local_length) != 0) {
    return tl::unexpected(fmt::format("getsockname: {}", util::errno_text(errno)));
  }
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer_address), &peer_length) != 0) {
    return tl::unexpected(fmt::format("getpeername: {}", util::errno_text(errno)));
  }
  const auto local = endpoint_of(local_address);
  if (!local) {
    return tl::unexpected(local.error());
  }
  const auto peer = endpoint_of(peer_address);
  if (!peer) {
    return tl::unexpected(peer.error());
  }
  if (local->family != peer->family) {
    return tl::unexpected(std::string("the two ends of the connection have different address families"));
  }

  // The client's socket: its local end is our peer, its remote end is us.
  const auto uid = socket_owner(*peer, *local);
  if (!uid) {
    return tl::unexpected(uid.error());
  }
  Caller caller;
  caller.uid = *uid;
  caller.gid = static_cast<gid_t>(-1);
  caller.pid = 0;
  add_groups(caller);
  return caller;
}

} // namespace iamtok::server
