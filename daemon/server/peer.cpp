#include "daemon/server/peer.hpp"

#include "util/error.hpp"

#include <fmt/format.h>

#include <sys/socket.h>

#include <cerrno>

namespace iamtok::server {

tl::expected<Caller, std::string> peer_credentials(int fd)
{
  struct ucred cred = {};
  socklen_t length = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) {
    return tl::unexpected(fmt::format("SO_PEERCRED: {}", util::errno_text(errno)));
  }
  Caller caller;
  caller.uid = cred.uid;
  caller.gid = cred.gid;
  caller.pid = cred.pid;

  // Grow the buffer until the group list fits (ERANGE reports the size needed).
  std::vector<gid_t> groups(32);
  for (int attempt = 0; attempt < 8; ++attempt) {
    socklen_t size = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &size) == 0) {
      groups.resize(size / sizeof(gid_t));
      caller.groups = std::move(groups);
      break;
    }
    if (errno != ERANGE) {
      break; // ENOPROTOOPT on old kernels: no supplementary groups
    }
    const std::size_t needed = size / sizeof(gid_t);
    groups.resize(needed > groups.size() ? needed : groups.size() * 2);
  }
  return caller;
}

} // namespace iamtok::server
