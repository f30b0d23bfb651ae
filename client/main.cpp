#include "client/client.hpp"

#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <span>

int main(int argc, char* argv[])
{
  // A closed stdout must give an error exit, not a silent death.
  std::signal(SIGPIPE, SIG_IGN);
  const std::span<const char* const> args(argv, static_cast<std::size_t>(argc));
  const auto options = iamtok::client::parse_args(args.empty() ? args : args.subspan(1), std::getenv("IAMTOKEN_SOCKET"));
  if (!options) {
    fmt::print(stderr, "iamtoken-get: usage: {} (see --help)\n", options.error());
    return iamtok::client::k_exit_usage;
  }
  return iamtok::client::run(*options);
}
