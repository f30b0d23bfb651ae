#include "daemon/server/dispatch.hpp"

#include <version.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <utility>

namespace iamtok::server {

namespace {

const config::Profile* find_profile(const config::Config& config, std::string_view name)
{
  const auto it = std::find_if(config.profiles.begin(), config.profiles.end(),
                               [&](const config::Profile& p) { return p.name == name; });
  return it == config.profiles.end() ? nullptr : &*it;
}

// Who got a token, for the audit trail (no group list: nothing to copy).
Caller audited(const Caller& caller)
{
  return Caller{caller.uid, caller.gid, caller.pid, {}};
}

ReplyLine token_reply(const proto::RequestId& id, std::string_view profile, const engine::TokenResult& result,
                  bool last_on_error)
{
  if (!result) {
    return error_reply(id, to_error_info(result.error()), last_on_error);
  }
  return ReplyLine(proto::format_token_reply(id, profile, result->access_token, result->expires_at,
                                         result->expires_in),
               false);
}

std::optional<std::chrono::seconds> min_valid(const proto::Request& request)
{
  if (!request.min_valid_s) {
    return std::nullopt;
  }
  return std::chrono::seconds(*request.min_valid_s);
}

} // namespace

ReplyLine error_reply(const proto::RequestId& id, const proto::ErrorInfo& error, bool last)
{
  return ReplyLine(proto::format_error_reply(id, error), error.code, last);
}

bool may_use(const config::Profile& profile, const Caller& caller, uid_t daemon_uid)
{
  return caller.uid == 0 || caller.uid == daemon_uid || !profile.allow
         || profile.allow->matches(caller.uid, caller.gid, caller.groups);
}

proto::ErrorInfo to_error_info(const engine::TokenError& error)
{
  proto::ErrorInfo info;
  info.message = error.message;
  switch (error.code) {
  case engine::TokenError::Code::unknown_profile:
    info.code = proto::ErrorCode::unknown_profile;
    if (info.message.empty()) {
      info.message = "no such profile";
    }
    break;
  case engine::TokenError::Code::unavailable:
    info.code = proto::ErrorCode::unavailable;
    if (info.message.empty()) {
      info.message = "no token available";
    }
    info.retry_after_s = std::max<std::int64_t>(error.retry_after_s, 1);
    if (error.upstream) {
      info.upstream.status = error.upstream->http_status;
      info.upstream.code = error.upstream->code;
      info.upstream.request_id = error.upstream->request_id;
    }
    break;
  }
  return info;
}

// Shared between a Watch and the engine callbacks, which may outlive it.
struct Watch::State
{
  engine::Engine* engine = nullptr;
  engine::WatchId id = 0;
  bool ended = false;

  void end()
  {
    if (!ended) {
      ended = true;
      if (id != 0) {
        engine->unwatch(std::exchange(id, 0));
      }
    }
  }
};

Watch& Watch::operator=(Watch&& other) noexcept
{
  if (this != &other) {
    if (m_state) {
      m_state->end();
    }
    m_state = std::move(other.m_state);
  }
  return *this;
}

Watch::~Watch()
{
  if (m_state) {
    m_state->end();
  }
}

Dispatcher::Dispatcher(engine::Engine& engine, const config::Config& config, uid_t daemon_uid,
                       std::function<Traffic()> counters, Via via)
  : m_engine(engine),
    m_config(std::make_shared<const config::Config>(config)),
    m_daemon_uid(daemon_uid),
    m_counters(std::move(counters)),
    m_via(via)
{
}

void Dispatcher::set_config(const config::Config& config)
{
  m_config = std::make_shared<const config::Config>(config);
  std::vector<std::string> names;
  names.reserve(config.profiles.size());
  for (const auto& profile : config.profiles) {
    names.push_back(profile.name);
  }
  m_audit->retain(names);
}

std::optional<proto::ErrorInfo> Dispatcher::authorize(std::string_view profile, const Caller& caller)
{
  auto denied = check(profile, caller);
  if (denied) {
    deny(caller, profile, *denied);
  }
  return denied;
}

void Dispatcher::deny(const Caller& caller, std::string_view asked, const proto::ErrorInfo& error)
{
  m_audit->denied(caller, m_via, asked, proto::to_string(error.code), error.message);
}

std::optional<proto::ErrorInfo> Dispatcher::check(std::string_view profile, const Caller& caller) const
{
  const config::Profile* found = find_profile(*m_config, profile);
  if (found == nullptr) {
    return proto::ErrorInfo{proto::ErrorCode::unknown_profile, "no such profile", {}, {}};
  }
  if (!may_use(*found, caller)) {
    return proto::ErrorInfo{proto::ErrorCode::forbidden, "caller may not use this profile", {}, {}};
  }
  return std::nullopt;
}

Dispatcher::Handled Dispatcher::handle(std::string_view line, const Caller& caller, ReplyCallback done,
                                       Watch* watch_slot)
{
  auto request = proto::parse_request(line);
  if (!request) {
    done(error_reply(request.error().id,
                     proto::ErrorInfo{request.error().code, request.error().message, {}, {}}));
    return {};
  }
  Handled handled{request->op, {}, {}};
  if (request->op == proto::Op::watch && watch_slot != nullptr) {
    handled.watch_id = request->id;
    handled.watched = request->profile;
    *watch_slot = watch(*request, caller, std::move(done));
    return handled;
  }
  handle(*request, caller, std::move(done));
  return handled;
}

void Dispatcher::handle(const proto::Request& request, const Caller& caller, ReplyCallback done)
{
  switch (request.op) {
  case proto::Op::ping:
    done(ReplyLine(proto::format_ok_reply(request.id), false));
    return;
  case proto::Op::status:
    done(ReplyLine(status_line(request.id, caller), false));
    return;
  case proto::Op::metrics:
    if (m_metrics) {
      done(ReplyLine(proto::format_metrics_reply(request.id, m_metrics()), false));
    } else {
      done(error_reply(request.id, {proto::ErrorCode::internal, "metrics are not available", {}, {}}));
    }
    return;
  case proto::Op::watch:
    done(error_reply(request.id, {proto::ErrorCode::bad_request, "watch needs its own connection", {}, {}}));
    return;
  case proto::Op::token:
    break;
  }
  grant(request.profile, caller, min_valid(request),
        [id = request.id, profile = request.profile, done = std::move(done)](
          tl::expected<engine::Grant, proto::ErrorInfo> result) {
          if (!result) {
            done(error_reply(id, result.error()));
            return;
          }
          done(ReplyLine(proto::format_token_reply(id, profile, result->access_token, result->expires_at,
                                               result->expires_in),
                     false));
        });
}

void Dispatcher::grant(std::string_view profile, const Caller& caller, std::optional<std::chrono::seconds> min_valid,
                       GrantCallback done)
{
  if (auto denied = authorize(profile, caller)) {
    done(tl::unexpected(std::move(*denied)));
    return;
  }
  m_engine.get_token(profile, min_valid,
                     [profile = std::string(profile), audit = m_audit, via = m_via, who = audited(caller),
                      done = std::move(done)](engine::TokenResult result) {
                       if (!result) {
                         done(tl::unexpected(to_error_info(result.error())));
                         return;
                       }
                       audit->granted(who, via, profile, result->generation, result->expires_at);
                       done(std::move(*result));
                     });
}

Watch Dispatcher::watch(const proto::Request& request, const Caller& caller, ReplyCallback on_reply)
{
  if (auto denied = authorize(request.profile, caller)) {
    on_reply(error_reply(request.id, *denied, true));
    return Watch();
  }
  auto state = std::make_shared<Watch::State>();
  state->engine = &m_engine;
  m_engine.get_token(
    request.profile, min_valid(request),
    [state, id = request.id, profile = request.profile, audit = m_audit, via = m_via, who = audited(caller),
     on_reply](engine::TokenResult result) {
      if (state->ended) {
        return;
      }
      if (!result) {
        state->ended = true;
        on_reply(token_reply(id, profile, result, true));
        return;
      }
      audit->granted(who, via, profile, result->generation, result->expires_at);
      on_reply(token_reply(id, profile, result, true));
      if (state->ended) {
        return;
      }
      // Watching from inside the get_token callback: no renewal slips in between.
      state->id = state->engine->watch(profile, [state, id, profile, audit, via, who,
                                                 on_reply](engine::TokenResult renewed) {
        if (state->ended) {
          return;
        }
        if (!renewed) {
          // The watch is over (profile removed by a reload): the engine forgets it.
          state->id = 0;
          state->ended = true;
        } else {
          audit->granted(who, via, profile, renewed->generation, renewed->expires_at);
        }
        on_reply(token_reply(id, profile, renewed, true));
      });
      if (state->id == 0 && !state->ended) {
        state->ended = true;
        on_reply(error_reply(id, {proto::ErrorCode::unknown_profile, "no such profile", {}, {}}, true));
      }
    });
  return Watch(std::move(state));
}

std::string Dispatcher::status_line(const proto::RequestId& id, const Caller& caller) const
{
  const engine::Status engine_status = m_engine.status();
  const config::Config& config = *m_config;

  proto::StatusInfo info;
  info.version = std::string(iamtok::k_version);
  info.uptime_s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - m_started)
                    .count();
  info.source.type = std::string(config::to_string(config.source.type));
  info.source.state = std::string(engine::to_string(engine_status.source.state));
  info.source.expires_at = engine_status.source.expires_at;
  for (const engine::ProfileStatus& profile : engine_status.profiles) {
    const config::Profile* configured = find_profile(config, profile.name);
    if (configured == nullptr || !may_use(*configured, caller)) {
      continue;
    }
    proto::ProfileInfo entry;
    entry.name = profile.name;
    entry.state = std::string(engine::to_string(profile.state));
    entry.expires_at = profile.expires_at;
    entry.refresh_at = profile.refresh_at;
    entry.refreshes = profile.refreshes;
    entry.failures = profile.failures;
    if (profile.last_error) {
      entry.last_error = proto::LastError{profile.last_error->http_status, profile.last_error->code,
                                          profile.last_error->request_id, profile.last_error->message};
    }
    info.profiles.push_back(std::move(entry));
  }
  const Traffic counters = m_counters ? m_counters() : Traffic{};
  info.counters.requests = counters.requests;
  info.counters.errors = counters.errors;
  info.counters.connections = counters.connections;
  info.counters.upstream_calls = engine_status.upstream_calls;
  return proto::format_status_reply(id, info);
}

} // namespace iamtok::server
