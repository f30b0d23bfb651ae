#include "daemon/app/daemon.hpp"

namespace iamtok::app {

// TEMPORARY: a placeholder until the daemon is wired up (server, engine,
// upstream, signals, sd_notify). This whole file is replaced then.
int run_daemon(const Options&, config::Config)
{
  log::error("daemon not built yet");
  return k_exit_fatal;
}

} // namespace iamtok::app
