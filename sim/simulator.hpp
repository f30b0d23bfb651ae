#pragma once

// The emulated services, without I/O (docs/upstream.md, docs/simulator.md): routes a parsed
// request to IMDS (both API generations), IAM's CR-token grant or the control
// endpoints, checks it as the real service does, mints tokens, applies the
// injected faults and keeps the counters. The transport (sim/server.hpp)
// carries out the returned Action: wait, then answer, hang or reset.

#include "proto/secret.hpp"
#include "http/message.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace iamtok::sim {

// The shared HTTP framing's messages (http/message.hpp).
using http::Header;
using http::media_type;
using http::reason_phrase;
using http::Request;
using http::Response;


// A trusted profile linked to the emulated instance (and eligible for its CR
// tokens at IAM). An empty name cannot be selected by name.
struct Profile
{
  std::string id;
  std::string name;
  std::string crn;
};

// The account every emulated resource lives in.
inline constexpr std::string_view k_account_id = "0123456789abcdef0123456789abcdef";

// The two demo profiles used when none is configured:
// Profile-00000000-0000-4000-8000-000000000001 "reader" and
// Profile-00000000-0000-4000-8000-000000000002 "deployer".
std::vector<Profile> default_profiles();

// The CRN the simulator gives a profile configured without one.
std::string profile_crn(std::string_view id);

struct SimConfig
{
  std::vector<Profile> profiles = default_profiles();
  // The profile (by id) IMDS uses when an iam_token request names none;
  // without one such a request fails with missing_field, as IMDS does on an
  // instance that has no default trusted profile.
  std::optional<std::string> default_profile_id;
  std::chrono::seconds iam_lifetime{3600};
  std::chrono::milliseconds latency{0}; // added to every emulated request
  std::uint64_t seed = 1;               // request ids, trace ids and jti
};

// The endpoints that faults and counters distinguish.
enum class Target { imds_token, imds_iam_token, iam };

// status: an error reply of the service's own shape; hang; reset; garbage:
// a 200 that is not JSON; slow: the right answer, late; redirect: a 3xx with
// a Location; html: an error status with an HTML page (a proxy's or load
// balancer's); short_jwt: the right answer, but the token's JWT exp - iat is
// jwt_lifetime, shorter than expires_in says.
enum class FaultMode { status, hang, reset, garbage, slow, redirect, html, short_jwt };

struct FaultRule
{
  FaultMode mode = FaultMode::status;
  int status = 503; // 302 for redirect, 502 for html unless given
  std::optional<int> retry_after_s;
  std::chrono::milliseconds delay{500};
  std::optional<std::int64_t> remaining; // nullopt: until cleared
  std::string location = "https://iam.elsewhere.invalid/identity/token"; // redirect
  std::chrono::seconds jwt_lifetime{5};                                  // short_jwt
};

// What the transport does with one request.
struct Action
{
  enum class Kind {
    respond, // wait `delay`, then send `response`
    hang,    // never answer; close when the client does (or after a cap)
    reset,   // wait `delay`, then close the connection with a TCP RST
  };
  Kind kind = Kind::respond;
  std::chrono::milliseconds delay{0};
  Response response;
};

struct Stats
{
  std::uint64_t imds_token = 0;
  std::uint64_t imds_iam_token = 0;
  std::uint64_t iam = 0;
  std::map<std::string, std::uint64_t> by_profile; // access tokens issued, by profile id
  std::uint64_t connections = 0;
};

using WallClock = std::function<std::chrono::system_clock::time_point()>;

// The request being handled, with its start time and request id
// (sim/context.hpp, internal to the simulator's service files).
struct RequestContext;

class Simulator
{
public:
  explicit Simulator(SimConfig config, WallClock clock = [] { return std::chrono::system_clock::now(); });

  // The action for one request. Emulated endpoints count every request that
  // reaches them (faulted and rejected ones too); control endpoints do not
  // count and see no latency or faults.
  Action handle(const Request& request);

  // Counts one accepted TCP connection.
  void note_connection() { ++m_stats.connections; }

  const Stats& stats() const { return m_stats; }
  const SimConfig& config() const { return m_config; }

  // Replaces the fault rule for `target` (nullopt: the rule for "all").
  void set_fault(std::optional<Target> target, FaultRule rule);
  void clear_faults();
  void reset_stats();

private:
  // The services, one file each: sim/control.cpp, sim/imds.cpp, sim/iam.cpp.
  Action handle_control(const Request& request);
  Response handle_imds_token(const Request& request, RequestContext& ctx);
  Response handle_imds_iam_token(const Request& request, RequestContext& ctx);
  Response handle_iam(const Request& request, RequestContext& ctx);
  std::optional<FaultRule> take_fault(Target target);
  Response fault_response(Target target, int status, RequestContext& ctx);

  std::string uuid();
  std::int64_t now_unix() const;
  Secret mint_access_token(const Profile& profile, std::int64_t iat, std::string_view grant);
  const Profile* find_profile(std::string_view field, std::string_view value) const;

  // exp - iat of the tokens minted for the request being handled (short_jwt).
  std::int64_t jwt_lifetime(std::int64_t lifetime) const;

  SimConfig m_config;
  WallClock m_clock;
  std::optional<std::chrono::seconds> m_short_jwt;
  std::mt19937_64 m_random;
  Stats m_stats;
  std::map<std::optional<Target>, FaultRule> m_faults;
};

} // namespace iamtok::sim
