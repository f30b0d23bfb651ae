#pragma once

// User and group names in the configuration (socket.group, allow.users,
// allow.groups) and the ids they stand for. The system resolver does I/O
// (NSS: /etc/passwd, /etc/group, or whatever nsswitch.conf says); tests and
// the fuzzer plug in fake names.

#include <sys/types.h>

#include <optional>
#include <string>

namespace iamtok::config {

// Looks up user and group names (getpwnam_r/getgrnam_r by default; tests
// plug in fake names).
class NameResolver
{
public:
  virtual ~NameResolver() = default;
  // The uid of user `name`, or nullopt if there is no such user.
  virtual std::optional<uid_t> user(const std::string& name) const = 0;
  // The gid of group `name`, or nullopt if there is no such group.
  virtual std::optional<gid_t> group(const std::string& name) const = 0;
};

// The system's user and group databases (NSS).
const NameResolver& system_resolver();

} // namespace iamtok::config
