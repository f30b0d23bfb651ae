#pragma once

// The mapping from a parsed request to its reply line (docs/protocol.md),
// apart from the socket transport (as Kea's command manager): authorization
// and its audit trail, token requests through the engine, status, ping,
// metrics, and the watch subscription.
// Single-threaded like the engine; no Asio.

#include "daemon/config/config.hpp"
#include "daemon/engine/engine.hpp"
#include "daemon/server/audit.hpp"
#include "daemon/server/peer.hpp"
#include "proto/codec.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace iamtok::server {

struct Traffic
{
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;
  std::uint64_t connections = 0; // open now
};

// One reply line (ending in '\n'). Its storage is wiped on destruction, as a
// token reply holds the token.
struct ReplyLine
{
  std::string line;
  bool error = false; // an error reply (counted in Traffic::errors)
  bool last = false;  // the connection is closed once this line is written
  proto::ErrorCode code = proto::ErrorCode::internal; // an error reply's code
  ReplyLine() = default;
  // An ok reply (`error` false), or an error whose code is not known here.
  ReplyLine(std::string line_, bool error_, bool last_ = false)
    : line(std::move(line_)), error(error_), last(last_)
  {
  }
  // An error reply with `code_`.
  ReplyLine(std::string line_, proto::ErrorCode code_, bool last_ = false)
    : line(std::move(line_)), error(true), last(last_), code(code_)
  {
  }
  ReplyLine(const ReplyLine&) = default;
  ReplyLine(ReplyLine&&) noexcept = default;
  ReplyLine& operator=(const ReplyLine&) = default;
  ReplyLine& operator=(ReplyLine&&) noexcept = default;
  ~ReplyLine() { wipe_string(line); }
};

using ReplyCallback = std::function<void(ReplyLine)>;

// True if `caller` may use `profile`: its uid is 0 or `daemon_uid`, the
// profile has no allow list, or the allow list matches its uid, primary gid
// or a supplementary group.
bool may_use(const config::Profile& profile, const Caller& caller, uid_t daemon_uid);

// The error reply for an engine failure: unknown_profile, or unavailable
// with retry_after_s and the last upstream failure.
proto::ErrorInfo to_error_info(const engine::TokenError& error);

// An error reply line (`last`: the connection closes after it), for the
// transport's own errors too (busy, request_too_large, internal).
ReplyLine error_reply(const proto::RequestId& id, const proto::ErrorInfo& error, bool last = false);

// Ends a watch when destroyed: no more replies after that.
class Watch
{
public:
  struct State;
  Watch() = default;
  explicit Watch(std::shared_ptr<State> state) : m_state(std::move(state)) {}
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;
  Watch(Watch&&) noexcept = default;
  Watch& operator=(Watch&& other) noexcept;
  ~Watch();

private:
  std::shared_ptr<State> m_state;
};

class Dispatcher
{
public:
  // `counters` gives the server's counters for status replies; `source_type`
  // comes from the config. `daemon_uid` is always allowed.
  // `via` names the transport in the audit trail.
  Dispatcher(engine::Engine& engine, const config::Config& config, uid_t daemon_uid,
             std::function<Traffic()> counters, Via via = Via::socket);

  // Where the metrics op gets its text (until set: an `internal` error).
  void set_metrics(std::function<std::string()> exposition) { m_metrics = std::move(exposition); }

  // Swaps in a new configuration (allow lists, profiles, source type).
  void set_config(const config::Config& config);
  const config::Config& config() const { return *m_config; }

  // nullopt if `caller` may use `profile`; else unknown_profile (not
  // configured) or forbidden (configured, but not for this caller).
  std::optional<proto::ErrorInfo> check(std::string_view profile, const Caller& caller) const;
  // check(), and a denial goes to the audit trail.
  std::optional<proto::ErrorInfo> authorize(std::string_view profile, const Caller& caller);
  // Puts a refusal decided elsewhere (an HTTP selector that matches no
  // profile) on the audit trail; `asked` names what the caller asked for.
  void deny(const Caller& caller, std::string_view asked, const proto::ErrorInfo& error);

  // A token for `caller` from `profile`, as a socket token request: authorize()
  // (a denial is audited), then the engine with `min_valid` (nullopt: the
  // default); a grant is audited. `done` gets the grant or the error reply's
  // info (unknown_profile, forbidden, unavailable), possibly from inside
  // this call. Every transport asks for tokens through here.
  using GrantCallback = std::function<void(tl::expected<engine::Grant, proto::ErrorInfo>)>;
  void grant(std::string_view profile, const Caller& caller, std::optional<std::chrono::seconds> min_valid,
             GrantCallback done);

  // True if `caller` may use `profile` (see may_use()).
  bool may_use(const config::Profile& profile, const Caller& caller) const
  {
    return server::may_use(profile, caller, m_daemon_uid);
  }

  // The metrics text, or nullopt until set_metrics().
  std::optional<std::string> metrics_text() const
  {
    return m_metrics ? std::optional<std::string>(m_metrics()) : std::nullopt;
  }

  // What handle() made of a request line, for the transport's counters and
  // its watch mode.
  struct Handled
  {
    std::optional<proto::Op> op; // nullopt: not a request (answered with its error)
    // A watch request: its id and profile (reconfigure() may end the watch).
    proto::RequestId watch_id;
    std::string watched;
  };

  // The one entry from a request line (without '\n') to its reply: parses
  // it (a malformed line is answered with its error: bad_request, with the
  // id when it could be read) and answers it, calling `done` possibly from
  // inside this call. Every request but a watch gets exactly one reply. A
  // watch request, without `watch_slot`, is answered with bad_request; with
  // it, it starts a watch as watch() does (`done` gets its replies) and
  // *watch_slot keeps it: the session switches mode.
  Handled handle(std::string_view line, const Caller& caller, ReplyCallback done, Watch* watch_slot = nullptr);

  // Starts a watch: `on_reply` gets the current token, then one token reply
  // per renewal, until the returned Watch is destroyed. An error (not
  // allowed, unknown profile, no token now, the profile removed by a reload)
  // is one reply with `last` set, after which nothing more comes.
  Watch watch(const proto::Request& request, const Caller& caller, ReplyCallback on_reply);

  // The status reply for `caller`: only the profiles it may use.
  std::string status_line(const proto::RequestId& id, const Caller& caller) const;

private:
  void handle(const proto::Request& request, const Caller& caller, ReplyCallback done);

  engine::Engine& m_engine;
  std::shared_ptr<const config::Config> m_config;
  uid_t m_daemon_uid;
  std::function<Traffic()> m_counters;
  std::function<std::string()> m_metrics;
  Via m_via;
  // Shared with the engine callbacks, which may run after a reload.
  std::shared_ptr<Audit> m_audit = std::make_shared<Audit>();
  std::chrono::steady_clock::time_point m_started = std::chrono::steady_clock::now();
};

} // namespace iamtok::server
