#include "daemon/config/names.hpp"

#include <cerrno>
#include <vector>

#include <grp.h>
#include <pwd.h>

namespace iamtok::config {

namespace {

class SystemResolver final : public NameResolver
{
public:
  std::optional<uid_t> user(const std::string& name) const override
  {
    passwd entry{};
    return lookup(name, entry, getpwnam_r) ? std::optional<uid_t>(entry.pw_uid) : std::nullopt;
  }

  std::optional<gid_t> group(const std::string& name) const override
  {
    group_entry entry{};
    return lookup(name, entry, getgrnam_r) ? std::optional<gid_t>(entry.gr_gid) : std::nullopt;
  }

private:
  using group_entry = struct group;

  // Calls a getXXnam_r function, growing its buffer on ERANGE (bounded).
  template<typename Entry, typename Function>
  static bool lookup(const std::string& name, Entry& entry, Function function)
  {
    if (name.empty() || name.find('\0') != std::string::npos) {
      return false;
    }
    std::vector<char> buffer(16 * 1024);
    for (int attempt = 0; attempt < 8; ++attempt) {
      Entry* result = nullptr;
      const int error = function(name.c_str(), &entry, buffer.data(), buffer.size(), &result);
      if (error == ERANGE) {
        buffer.resize(buffer.size() * 2);
        continue;
      }
      return error == 0 && result != nullptr;
    }
    return false;
  }
};

} // namespace

const NameResolver& system_resolver()
{
  static const SystemResolver resolver;
  return resolver;
}

} // namespace iamtok::config
