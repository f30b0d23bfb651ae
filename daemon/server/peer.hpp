#pragma once

// Who is on the other end of a Unix stream socket: SO_PEERCRED (uid, gid,
// pid) and SO_PEERGROUPS (supplementary groups).

#include <tl/expected.hpp>

#include <sys/types.h>

#include <string>
#include <vector>

namespace iamtok::server {

struct Caller
{
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  std::vector<gid_t> groups; // supplementary groups (empty if the kernel cannot tell)
};

// The credentials of the peer of connected Unix socket `fd`, or a one-line
// message when SO_PEERCRED fails. A kernel without SO_PEERGROUPS (before
// Linux 4.13) gives an empty group list: only uid and primary gid then match.
tl::expected<Caller, std::string> peer_credentials(int fd);

} // namespace iamtok::server
