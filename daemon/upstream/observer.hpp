#pragma once

// A hook that sees every upstream HTTP request end (for the metrics): which
// call, how it ended and how long it took. Never sees a header or a body.

#include "daemon/engine/ports.hpp"

#include <chrono>
#include <string_view>

namespace iamtok::upstream {

struct RequestOutcome
{
  std::string_view call; // "imds_token", "iam_token" or "imds_iam_token"
  int http_status = 0;   // 0: no HTTP reply (see failure)
  engine::Failure failure = engine::Failure::transport; // when http_status is 0: transport or timeout
  std::chrono::nanoseconds duration{};                  // from the request's start to its end
};

class RequestObserver
{
public:
  virtual ~RequestObserver() = default;
  // Called on the io_context's thread once per request, when it ends.
  virtual void on_request(const RequestOutcome& outcome) = 0;
};

} // namespace iamtok::upstream
