#include "client/exec.hpp"
#include "util/error.hpp"

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <utility>

namespace iamtok::client {
namespace {

constexpr std::size_t k_max_env_name = 128;

// One option of the exec command line: its name ("--env", "-p") and, when
// written as "--name=value" or "-pNAME", the value that came with it.
struct Arg
{
  std::string_view name;
  std::optional<std::string_view> attached;
};

Arg split_option(std::string_view arg)
{
  if (arg.starts_with("--")) {
    if (const auto equals = arg.find('='); equals != std::string_view::npos) {
      return {arg.substr(0, equals), arg.substr(equals + 1)};
    }
    return {arg, std::nullopt};
  }
  if (arg.starts_with("-p") && arg.size() > 2) {
    return {"-p", arg.substr(2)};
  }
  return {arg, std::nullopt};
}

bool takes_value(std::string_view name)
{
  return name == "-p" || name == "--profile" || name == "--min-valid" || name == "--env" || name == "--sdk-env" ||
         name == "--socket" || name == "--timeout";
}

// Applies option `name` with `value` (for options that take one) to `options`.
tl::expected<void, std::string> apply(ExecOptions& options, std::string_view name, std::string_view value)
{
  if (name == "-p" || name == "--profile") {
    if (value.empty()) {
      return tl::make_unexpected("--profile must not be empty");
    }
    options.profile = value;
  } else if (name == "--min-valid") {
    const auto seconds = parse_integer(value);
    if (!seconds || *seconds < 0 || *seconds > proto::k_max_min_valid_s) {
      return tl::make_unexpected(fmt::format("--min-valid must be an integer from 0 to {}", proto::k_max_min_valid_s));
    }
    options.min_valid_s = *seconds;
  } else if (name == "--env") {
    if (!is_env_name(value)) {
      return tl::make_unexpected("--env needs a variable name: letters, digits and '_', not starting with a digit");
    }
    if (value == k_env_expires_at) {
      return tl::make_unexpected(fmt::format("--env {} would overwrite the expiry time", k_env_expires_at));
    }
    if (std::find(options.env_names.begin(), options.env_names.end(), value) == options.env_names.end()) {
      options.env_names.emplace_back(value);
    }
  } else if (name == "--sdk-env") {
    auto prefix = sdk_env_prefix(value);
    if (!prefix) {
      return tl::make_unexpected(
        "--sdk-env needs a service name: letters, digits, '_' and '-', not starting with a digit");
    }
    if (std::find(options.sdk_prefixes.begin(), options.sdk_prefixes.end(), *prefix) == options.sdk_prefixes.end()) {
      options.sdk_prefixes.push_back(std::move(*prefix));
    }
  } else if (name == "--socket") {
    if (value.empty()) {
      return tl::make_unexpected("--socket must not be empty");
    }
    options.socket_path = value;
  } else if (name == "--timeout") {
    const auto timeout = parse_seconds(value);
    if (!timeout) {
      return tl::make_unexpected("--timeout must be a positive number of seconds");
    }
    options.timeout = *timeout;
  }
  return {};
}

std::size_t name_length(std::string_view entry)
{
  const auto equals = entry.find('=');
  return equals == std::string_view::npos ? entry.size() : equals;
}

} // namespace

bool is_env_name(std::string_view name)
{
  if (name.empty() || name.size() > k_max_env_name || (name[0] >= '0' && name[0] <= '9')) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::optional<std::string> sdk_env_prefix(std::string_view service)
{
  std::string prefix;
  prefix.reserve(service.size());
  for (const char c : service) {
    if (c >= 'a' && c <= 'z') {
      prefix += static_cast<char>(c - 'a' + 'A');
    } else if (c == '-') {
      prefix += '_';
    } else {
      prefix += c;
    }
  }
  // The longest suffix added is "_BEARER_TOKEN".
  if (!is_env_name(prefix) || prefix.size() + 13 > k_max_env_name) {
    return std::nullopt;
  }
  return prefix;
}

tl::expected<ExecOptions, std::string> parse_exec_args(std::span<const char* const> args, const char* env_socket)
{
  ExecOptions options;
  options.socket_path = env_socket != nullptr && *env_socket != '\0' ? env_socket : std::string(k_default_socket);
  std::size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (!arg.starts_with("-") || arg == "-") {
      break; // COMMAND starts here
    }
    const auto [name, attached] = split_option(arg);
    if (name == "--quiet" || name == "--help" || name == "-h") {
      if (attached) {
        return tl::make_unexpected(fmt::format("option {} takes no value", name));
      }
      (name == "--quiet" ? options.quiet : options.help) = true;
      continue;
    }
    if (!takes_value(name)) {
      return tl::make_unexpected(fmt::format("unknown option {} for exec", name));
    }
    std::string_view value;
    if (attached) {
      value = *attached;
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return tl::make_unexpected(fmt::format("option {} needs a value", name));
    }
    if (const auto applied = apply(options, name, value); !applied) {
      return tl::make_unexpected(applied.error());
    }
  }
  for (; i < args.size(); ++i) {
    options.command.emplace_back(args[i]);
  }
  if (options.help) {
    return options;
  }
  if (options.profile.empty()) {
    return tl::make_unexpected("exec needs --profile NAME");
  }
  if (options.command.empty() || options.command.front().empty()) {
    return tl::make_unexpected("exec needs a COMMAND (iamtoken-get exec -p NAME -- COMMAND [ARG...])");
  }
  return options;
}

std::vector<std::string> exec_environment(std::span<const char* const> inherited, const ExecOptions& options,
                                          std::string_view token, std::int64_t expires_at)
{
  // Each name once, first come first served (--env IAM_ACCESS_TOKEN is a no-op).
  std::vector<std::pair<std::string, std::string>> set;
  const auto is_set_here = [&](std::string_view name) {
    return std::any_of(set.begin(), set.end(), [&](const auto& pair) { return pair.first == name; });
  };
  const auto add = [&](std::string name, std::string_view value) {
    if (!is_set_here(name)) {
      set.emplace_back(std::move(name), value);
    }
  };
  add(std::string(k_env_access_token), token);
  add(std::string(k_env_expires_at), std::to_string(expires_at));
  for (const auto& name : options.env_names) {
    add(name, token);
  }
  for (const auto& prefix : options.sdk_prefixes) {
    add(prefix + "_AUTH_TYPE", "bearerToken");
    add(prefix + "_BEARER_TOKEN", token);
  }

  std::vector<std::string> environment;
  environment.reserve(inherited.size() + set.size());
  for (const char* entry : inherited) {
    if (entry != nullptr && !is_set_here(std::string_view(entry).substr(0, name_length(entry)))) {
      environment.emplace_back(entry);
    }
  }
  for (auto& [name, value] : set) {
    std::string entry;
    entry.reserve(name.size() + 1 + value.size());
    entry.append(name).append("=").append(value);
    environment.push_back(std::move(entry));
    wipe_string(value);
  }
  return environment;
}

int exec_failure_exit_code(int error)
{
  return error == ENOENT || error == ENOTDIR ? k_exit_not_found : k_exit_not_executable;
}

std::string exec_help_text()
{
  return fmt::format(
    "Usage: iamtoken-get exec --profile NAME [--min-valid SECONDS] [--env VAR]...\n"
    "                         [--sdk-env SERVICE]... [--socket PATH] [--timeout SECONDS]\n"
    "                         [--quiet] [--] COMMAND [ARG...]\n"
    "\n"
    "Gets a token of profile NAME, then runs COMMAND in place of iamtoken-get (same\n"
    "process, signals, exit status and terminal) with the token in its environment:\n"
    "  IAM_ACCESS_TOKEN, IAM_TOKEN_EXPIRES_AT (Unix seconds) always;\n"
    "  VAR=<token> for each --env VAR (e.g. --env IC_IAM_TOKEN for Terraform);\n"
    "  SERVICE_AUTH_TYPE=bearerToken and SERVICE_BEARER_TOKEN=<token> for each\n"
    "  --sdk-env SERVICE (IBM Cloud SDKs; SERVICE upper-cased, '-' -> '_').\n"
    "\n"
    "  --min-valid SECS   the token must stay valid this long (0-1800, default {};\n"
    "                     the daemon caps it at half the token's lifetime)\n"
    "\n"
    "If no token comes, COMMAND is not run and the exit code is iamtoken-get's\n"
    "(69, 70, 75, 77, 78); 126/127 if COMMAND cannot be run or is not found.\n"
    "The token is not renewed inside COMMAND: a process that outlives it should call\n"
    "iamtoken-get again or use the socket's watch op (see iamtoken-get(1), iamtokend(8)).\n",
    k_exec_default_min_valid_s);
}

int run_exec(const ExecOptions& options)
{
  const auto fail = [&](const Failure& failure) {
    if (!options.quiet) {
      print_failure("iamtoken-get", failure);
    }
    return failure.exit_code;
  };
  // A closed stderr must not kill the client with SIGPIPE; COMMAND gets the
  // disposition iamtoken-get was started with.
  const auto previous_sigpipe = std::signal(SIGPIPE, SIG_IGN);
  auto reply = fetch_token(options.socket_path, options.profile, options.min_valid_s, options.timeout);
  if (!reply) {
    return fail(reply.error());
  }
  std::span<const char* const> inherited;
  if (environ != nullptr) {
    std::size_t count = 0;
    while (environ[count] != nullptr) {
      ++count;
    }
    inherited = std::span<const char* const>(environ, count);
  }
  auto environment = exec_environment(inherited, options, reply->access_token.expose(), reply->expires_at);
  reply->access_token.wipe();
  reply->raw.wipe();

  std::vector<char*> envp;
  envp.reserve(environment.size() + 1);
  for (auto& entry : environment) {
    envp.push_back(entry.data());
  }
  envp.push_back(nullptr);
  std::vector<std::string> command = options.command;
  std::vector<char*> argv;
  argv.reserve(command.size() + 1);
  for (auto& arg : command) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);

  std::signal(SIGPIPE, previous_sigpipe == SIG_ERR ? SIG_DFL : previous_sigpipe);
  // The socket is closed (and close-on-exec anyway). execvpe searches PATH
  // of this process's environment.
  ::execvpe(argv[0], argv.data(), envp.data());
  const int error = errno;
  std::signal(SIGPIPE, SIG_IGN);
  for (auto& entry : environment) {
    wipe_string(entry);
  }
  return fail({exec_failure_exit_code(error), "exec",
               fmt::format("cannot run {}: {}", options.command.front(), util::errno_text(error))});
}

} // namespace iamtok::client
