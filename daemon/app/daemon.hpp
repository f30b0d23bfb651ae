#pragma once

#include "daemon/app/cli.hpp"
#include "daemon/config/config.hpp"

namespace iamtok::app {

// Runs the daemon with a validated configuration until SIGTERM or SIGINT
// (SIGHUP reloads from options.config_path). Returns the process exit code:
// 0 clean stop, 3 cannot bind/listen, 1 other fatal error.
int run_daemon(const Options& options, config::Config config);

} // namespace iamtok::app
