// iamtoken-sim: local emulator of IBM Cloud IMDS and IAM (docs/simulator.md).

#include "sim/options.hpp"
#include "sim/server.hpp"

#include "version.hpp"

#include <fmt/format.h>

#include <string_view>
#include <vector>

int main(int argc, char** argv)
{
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  const auto options = iamtok::sim::parse_options(args);
  if (!options) {
    fmt::print(stderr, "iamtoken-sim: {}\nTry 'iamtoken-sim --help'.\n", options.error());
    return 64;
  }
  if (options->help) {
    fmt::print("{}", iamtok::sim::usage());
    return 0;
  }
  if (options->version) {
    fmt::print("iamtoken-sim {}\n", iamtok::k_version);
    return 0;
  }
  return iamtok::sim::run(*options);
}
