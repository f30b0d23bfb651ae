#include "client/client.hpp"
#include "client/exec.hpp"

#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>

namespace {

// `iamtoken-get exec ...`: the token, then COMMAND in this process.
int exec_main(std::span<const char* const> args)
{
  const auto options = iamtok::client::parse_exec_args(args, std::getenv("IAMTOKEN_SOCKET"));
  if (!options) {
    fmt::print(stderr, "iamtoken-get: usage: {} (see iamtoken-get exec --help)\n", options.error());
    return iamtok::client::k_exit_usage;
  }
  if (options->help) {
    return iamtok::client::write_stdout(iamtok::client::exec_help_text()) ? iamtok::client::k_exit_ok
                                                                           : iamtok::client::k_exit_software;
  }
  return iamtok::client::run_exec(*options);
}

} // namespace

int main(int argc, char* argv[])
{
  const std::span<const char* const> all(argv, static_cast<std::size_t>(argc));
  const auto args = all.empty() ? all : all.subspan(1);
  if (!args.empty() && std::string_view(args.front()) == "exec") {
    // Before SIGPIPE is ignored: COMMAND inherits the caller's disposition.
    return exec_main(args.subspan(1));
  }
  // A closed stdout must give an error exit, not a silent death.
  std::signal(SIGPIPE, SIG_IGN);
  const auto options = iamtok::client::parse_args(args, std::getenv("IAMTOKEN_SOCKET"));
  if (!options) {
    fmt::print(stderr, "iamtoken-get: usage: {} (see --help)\n", options.error());
    return iamtok::client::k_exit_usage;
  }
  return iamtok::client::run(*options);
}
