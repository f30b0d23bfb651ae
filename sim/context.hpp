#pragma once

// What the simulator's service files share (sim/simulator.cpp: routing,
// faults, minting; sim/imds.cpp, sim/iam.cpp, sim/control.cpp: one service
// each): the request being handled with the error replies of each service,
// and small reply helpers. Internal to iamtok_sim_core; the interface is
// sim/simulator.hpp.

#include "sim/simulator.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace iamtok::sim {

using SysTime = std::chrono::system_clock::time_point;

// The emulated paths (docs/upstream.md): both IMDS API generations, and IAM.
inline constexpr std::string_view k_old_token_path = "/instance_identity/v1/token";
inline constexpr std::string_view k_new_token_path = "/identity/v1/token";
inline constexpr std::string_view k_old_iam_token_path = "/instance_identity/v1/iam_token";
inline constexpr std::string_view k_new_iam_token_path = "/identity/v1/iam_tokens";
inline constexpr std::string_view k_iam_path = "/identity/token";

inline constexpr std::string_view k_cr_token_grant = "urn:ibm:params:oauth:grant-type:cr-token";

// The `target` of an IMDS error: what in the request is wrong.
struct ErrorTarget
{
  std::string name;
  std::string type; // "field", "parameter" or "header"
  std::optional<std::string> value;
};

struct RequestContext
{
  SysTime start;
  std::string trace; // IMDS "trace" / IAM "context.requestId"

  // `start` in Unix seconds: the iat of the tokens minted for this request.
  std::int64_t start_unix() const;

  // An error in IMDS's shape: {"errors":[{code, message, more_info[, target]}],
  // "status_code", "trace"}.
  Response imds_error(int status, std::string_view code, std::string_view message,
                      std::optional<ErrorTarget> target = std::nullopt) const;

  // An error in IAM's shape ({errorCode, errorMessage, errorDetails, context}),
  // with the Transaction-Id header; `end` is the context's endTime.
  Response iam_error(int status, std::string_view code, std::string_view message, std::string_view details,
                     SysTime end) const;
};

// A reply with `status` and `body` (the default content type is JSON).
Response json_response(int status, std::string body);

// `r` with the Allow header a 405 carries.
Response method_not_allowed(Response r, std::string_view allow);

// "2026-11-23T08:00:00.000Z", as IMDS writes created_at and expires_at.
std::string iso8601(SysTime t);

} // namespace iamtok::sim
