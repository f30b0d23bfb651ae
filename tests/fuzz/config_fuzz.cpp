// libFuzzer target: config::parse_config must accept any bytes without
// crashing; a rejected config reports at least one problem, each one line of
// UTF-8, and an accepted one respects the documented bounds and selector rules.

#include "daemon/config/config.hpp"
#include "proto/json.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>

using namespace iamtok::config;

namespace {

// Knows users root (0), alice (1000), bob (1001) and groups root (0),
// iamtok (990), developers (2000).
class FakeResolver : public NameResolver
{
public:
  std::optional<uid_t> user(const std::string& name) const override { return find(k_users, name); }
  std::optional<gid_t> group(const std::string& name) const override { return find(k_groups, name); }

private:
  struct Entry
  {
    std::string_view name;
    std::uint32_t id;
  };
  static constexpr Entry k_users[] = {{"root", 0}, {"alice", 1000}, {"bob", 1001}};
  static constexpr Entry k_groups[] = {{"root", 0}, {"iamtok", 990}, {"developers", 2000}};

  static std::optional<std::uint32_t> find(std::span<const Entry> entries, const std::string& name)
  {
    for (const auto& entry : entries) {
      if (entry.name == name) {
        return entry.id;
      }
    }
    return std::nullopt;
  }
};

void check_line(const std::string& text)
{
  if (text.find('\n') != std::string::npos || !iamtok::json::is_valid_utf8(text)) {
    std::abort();
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  static const FakeResolver resolver;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto config = parse_config(input, resolver);
  if (!config) {
    if (config.error().empty()) {
      std::abort();
    }
    for (const auto& problem : config.error()) {
      check_line(problem.path);
      check_line(problem.message);
      check_line(to_string(problem));
    }
    return 0;
  }
  if (config->profiles.empty() || config->socket.path.empty() || config->socket.path.front() != '/') {
    std::abort();
  }
  if (config->refresh.at_fraction < 0.5 || config->refresh.at_fraction > 0.95
      || config->refresh.min_valid.count() < 0 || config->refresh.min_valid.count() > 1800
      || config->refresh.timeout.count() < 1 || config->refresh.timeout.count() > 300) {
    std::abort();
  }
  if (config->source.imds.token_lifetime.count() < 5 || config->source.imds.token_lifetime.count() > 3600) {
    std::abort();
  }
  if (!parse_url(config->iam.endpoint) || !parse_url(config->source.imds.endpoint)) {
    std::abort();
  }
  std::set<std::string> names;
  for (const auto& profile : config->profiles) {
    if (profile.name.empty() || !names.insert(profile.name).second) {
      std::abort();
    }
    // With the iam exchange a profile names its trusted profile; with imds
    // it names at most one selector (none: the instance's default profile).
    const int selectors = int(!profile.profile_id.empty()) + int(!profile.profile_name.empty())
                          + int(!profile.profile_crn.empty());
    if ((config->exchange == Exchange::iam && selectors == 0)
        || (config->exchange == Exchange::imds && selectors > 1)) {
      std::abort();
    }
  }
  for (const auto& line : summary_lines(*config)) {
    (void)line;
  }
  return 0;
}
