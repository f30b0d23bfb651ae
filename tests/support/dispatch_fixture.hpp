#pragma once

// The setup the dispatcher's transports share in their tests: profiles for a
// config, the engine's specs for them, and an engine serving them with a
// Dispatcher over it, on whatever ports the test brings (the engine fakes,
// the fuzz target's, Asio's). Shared by the unit and fuzz tests.

#include "daemon/config/config.hpp"
#include "daemon/engine/engine.hpp"
#include "daemon/server/dispatch.hpp"

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace iamtok::test {

// The daemon's uid in the dispatcher tests: always allowed, no caller's.
inline constexpr uid_t k_daemon_uid = 4242;

// A configured profile: its name, one selector (profile id, trusted profile
// name or CRN; all empty: the instance default) and an allow list.
inline config::Profile profile(std::string name, std::string id, std::string profile_name = {}, std::string crn = {},
                               std::optional<config::Allow> allow = std::nullopt)
{
  config::Profile p;
  p.name = std::move(name);
  p.profile_id = std::move(id);
  p.profile_name = std::move(profile_name);
  p.profile_crn = std::move(crn);
  p.allow = std::move(allow);
  return p;
}

// The engine's profiles for `config`'s, in its order.
inline std::vector<engine::ProfileSpec> specs(const config::Config& config)
{
  std::vector<engine::ProfileSpec> out;
  for (const auto& p : config.profiles) {
    out.push_back({p.name, {p.profile_id, p.profile_name, p.profile_crn}});
  }
  return out;
}

// An engine on `ports` with default settings serving `config`'s profiles,
// and a dispatcher over it (`daemon_uid` always allowed, `counters` for
// status replies, `via` in the audit trail). A test fixture derives from
// its ports first, then from this, so the ports outlive the engine.
struct DispatchStack
{
  DispatchStack(engine::Ports ports, config::Config config_, uid_t daemon_uid,
                std::function<server::Traffic()> counters = [] { return server::Traffic{}; },
                server::Via via = server::Via::socket)
    : config(std::move(config_)),
      engine(ports, engine::Settings{}, specs(config)),
      dispatcher(engine, config, daemon_uid, std::move(counters), via)
  {
  }

  config::Config config;
  engine::Engine engine;
  server::Dispatcher dispatcher;
};

} // namespace iamtok::test
