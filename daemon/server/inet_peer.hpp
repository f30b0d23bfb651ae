#pragma once

// Who is on the other end of a loopback TCP connection. TCP has no
// SO_PEERCRED, so the kernel is asked which uid owns the client's socket:
// a NETLINK_SOCK_DIAG (inet_diag) lookup of the connection's exact 4-tuple.

#include "daemon/server/peer.hpp"

#include <tl/expected.hpp>

#include <string>

namespace iamtok::server {

// The caller on the server end `fd` of an established TCP connection (IPv4,
// IPv6 or IPv4-mapped IPv6) whose client end lives on this host, in this
// network namespace: uid = the owner of the client's socket, gid = that
// uid's primary group, groups = its NSS group list (getgrouplist), pid = 0
// (the kernel does not say which process). This names the local *user*, not
// the process (docs/security.md).
//
// A uid without a passwd entry (common in containers) gives a Caller with
// that uid, gid (gid_t)-1 ("no group", which no allow rule can name) and no
// groups: uid rules still apply, group rules cannot match.
//
// Errors, one line each: `fd` is not a connected TCP socket; the client's
// socket does not exist (it lives on another host or namespace) or is no
// longer attached to a process (closed, TIME_WAIT: the kernel would report
// root for those, so they are refused); the netlink query failed.
tl::expected<Caller, std::string> tcp_peer_credentials(int fd);

} // namespace iamtok::server
