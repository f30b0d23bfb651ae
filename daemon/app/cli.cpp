#include "daemon/app/cli.hpp"

#include "daemon/app/daemon.hpp"
#include "daemon/config/config.hpp"

#include <version.hpp>

#include <fmt/format.h>

#include <cstdio>

namespace iamtok::app {

namespace {

// "--name=value" or "--name value": the value, advancing `i` in the second
// case; nullopt if there is none.
std::optional<std::string_view>
option_value(std::span<const char* const> args, std::size_t& i, std::string_view arg)
{
  if (const auto equals = arg.find('='); equals != std::string_view::npos) {
    return arg.substr(equals + 1);
  }
  if (i + 1 < args.size()) {
    return std::string_view(args[++i]);
  }
  return std::nullopt;
}

std::string_view option_name(std::string_view arg)
{
  return arg.substr(0, arg.find('='));
}

int check_config(const Options& options)
{
  const auto loaded = config::load_config(options.config_path);
  if (!config::report(
        loaded, [](const std::string& line) { fmt::print(stderr, "{}\n", line); },
        [](const std::string& line) { fmt::print(stderr, "warning: {}\n", line); })) {
    return k_exit_config;
  }
  for (const auto& line : config::summary_lines(loaded->config)) {
    fmt::print("{}\n", line);
  }
  return k_exit_ok;
}

} // namespace

tl::expected<Options, std::string> parse_args(std::span<const char* const> args, const char* env_config)
{
  Options options;
  options.config_path = env_config && *env_config ? env_config : k_default_config_path;
  bool help = false;
  bool version = false;
  bool check = false;

  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    const std::string_view name = option_name(arg);
    const bool has_inline_value = name.size() != arg.size();
    if (name == "--config" || name == "--log-level") {
      const auto value = option_value(args, i, arg);
      if (!value) {
        return tl::unexpected(fmt::format("option {} needs a value", name));
      }
      if (name == "--config") {
        if (value->empty()) {
          return tl::unexpected(std::string("option --config needs a non-empty path"));
        }
        options.config_path = std::string(*value);
      } else if (const auto level = log::parse_level(*value)) {
        options.log_level = *level;
      } else {
        return tl::unexpected(
          fmt::format("--log-level must be debug, info, warn or error, not \"{}\"", *value));
      }
    } else if (has_inline_value && (name == "--check-config" || name == "--version" || name == "--help")) {
      return tl::unexpected(fmt::format("option {} takes no value", name));
    } else if (arg == "--check-config") {
      check = true;
    } else if (arg == "--version") {
      version = true;
    } else if (arg == "--help" || arg == "-h") {
      help = true;
    } else if (arg.starts_with('-')) {
      return tl::unexpected(fmt::format("unknown option \"{}\"", arg));
    } else {
      return tl::unexpected(fmt::format("unexpected argument \"{}\"", arg));
    }
  }
  options.action = help      ? Options::Action::help
                   : version ? Options::Action::version
                   : check   ? Options::Action::check_config
                             : Options::Action::run;
  return options;
}

int usage_error(std::string_view message)
{
  fmt::print(stderr, "iamtokend: {} (see iamtokend --help)\n", message);
  return k_exit_usage;
}

std::string help_text()
{
  return fmt::format(
    R"(Usage: iamtokend [--config PATH] [--check-config] [--log-level LEVEL]
                 [--version] [--help]

Keeps IBM Cloud IAM access tokens for the configured trusted profiles fresh and
hands them to local programs over a Unix socket (use iamtoken-get). It gets the
machine's compute-resource token from the VPC instance metadata service or a
projected service-account token file, and authorizes each caller by its uid/gid.

Options:
  --config PATH      configuration file (default: $IAMTOKEND_CONFIG if set,
                     else {})
  --check-config     validate the configuration and print one line per profile;
                     exit 0 if it is valid, else print every problem and exit 2
  --log-level LEVEL  debug, info (default), warn or error
  --version          print the version and exit
  --help, -h         print this help and exit

Logs go to stderr, one line per event (with journal priorities under systemd).
Signals: SIGTERM/SIGINT stop gracefully, SIGHUP reloads the configuration.
Exit codes: 0 clean stop, 1 fatal error, 2 invalid configuration,
            3 cannot bind or listen on the socket, 64 usage error.
)",
    k_default_config_path);
}

int run(const Options& options)
{
  log::set_level(options.log_level);
  switch (options.action) {
  case Options::Action::help:
    fmt::print("{}", help_text());
    return k_exit_ok;
  case Options::Action::version:
    fmt::print("iamtokend {}\n", k_version);
    return k_exit_ok;
  case Options::Action::check_config:
    return check_config(options);
  case Options::Action::run:
    break;
  }

  auto loaded = config::load_config(options.config_path);
  if (!config::report(
        loaded, [](const std::string& line) { log::error("invalid configuration: {}", line); },
        [](const std::string& line) { log::warn("configuration: {}", line); })) {
    return k_exit_config;
  }
  return run_daemon(options, std::move(loaded->config));
}

} // namespace iamtok::app
