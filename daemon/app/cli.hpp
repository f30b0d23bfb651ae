#pragma once

// The iamtokend command line (iamtokend(8)): argument parsing, --help, --version,
// --check-config, and handing a loaded configuration to run_daemon().

#include "daemon/log/log.hpp"

#include <tl/expected.hpp>

#include <span>
#include <string>
#include <string_view>

namespace iamtok::app {

inline constexpr std::string_view k_default_config_path = "/etc/iamtokend/config.json";

// Exit codes of iamtokend (iamtokend(8); 64 is EX_USAGE).
inline constexpr int k_exit_ok = 0;
inline constexpr int k_exit_fatal = 1;
inline constexpr int k_exit_config = 2;
inline constexpr int k_exit_bind = 3;
inline constexpr int k_exit_usage = 64;

struct Options
{
  enum class Action { run, check_config, version, help };
  Action action = Action::run;
  std::string config_path;             // --config, else env IAMTOKEND_CONFIG, else the default
  log::Level log_level = log::Level::info;
};

// Parses the arguments after argv[0]. `env_config` is getenv("IAMTOKEND_CONFIG")
// (may be null): it replaces the default path, not --config. Returns a
// one-line message for a usage error (unknown option, missing value, ...).
tl::expected<Options, std::string> parse_args(std::span<const char* const> args,
                                              const char* env_config);

// Prints "iamtokend: <message>" and a hint to --help on stderr; returns 64.
int usage_error(std::string_view message);

// Carries out `options`: prints help or the version (0), checks the
// configuration (0 valid, 2 invalid), or loads it and calls run_daemon()
// (2 if it is invalid). Returns the process exit code.
int run(const Options& options);

// The --help text.
std::string help_text();

} // namespace iamtok::app
