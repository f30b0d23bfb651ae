#pragma once

// errno values as text for messages.

#include <string>
#include <system_error>

namespace iamtok::util {

// The message of errno value `error` ("No such file or directory").
inline std::string errno_text(int error)
{
  return std::generic_category().message(error);
}

} // namespace iamtok::util
