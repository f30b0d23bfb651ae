#include "daemon/app/cli.hpp"

#include <cstdlib>
#include <span>

int main(int argc, char* argv[])
{
  const std::span<const char* const> args(argv, static_cast<std::size_t>(argc));
  const auto options = iamtok::app::parse_args(args.empty() ? args : args.subspan(1),
                                               std::getenv("IAMTOKEND_CONFIG"));
  return options ? iamtok::app::run(*options) : iamtok::app::usage_error(options.error());
}
