#include "client/credential_helper.hpp"

#include <cstdlib>
#include <span>

int main(int argc, char* argv[])
{
  const std::span<const char* const> args(argv, static_cast<std::size_t>(argc));
  const iamtok::client::HelperEnvironment environment{std::getenv("IAMTOKEN_REGISTRY_PROFILE"),
                                                      std::getenv("IAMTOKEN_SOCKET")};
  return iamtok::client::run_credential_helper(args.empty() ? args : args.subspan(1), environment);
}
