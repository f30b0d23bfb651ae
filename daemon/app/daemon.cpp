#include "daemon/app/daemon.hpp"

#include "daemon/app/asio_ports.hpp"
#include "daemon/app/notify.hpp"
#include "daemon/engine/engine.hpp"
#include "daemon/engine/system_ports.hpp"
#include "daemon/http/listener.hpp"
#include "daemon/log/log.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/server/server.hpp"
#include "daemon/upstream/cloud_upstream.hpp"
#include "daemon/upstream/file_source.hpp"
#include "daemon/upstream/observer.hpp"
#include "daemon/upstream/switchable.hpp"
#include "daemon/upstream/token_watcher.hpp"
#include "version.hpp"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <fmt/format.h>
#include <systemd/sd-daemon.h>

#include <malloc.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstdint>
#include <exception>
#include <memory>
#include <set>
#include <string_view>
#include <string>
#include <utility>
#include <vector>

namespace iamtok::app {
namespace {

// READY=1 is sent at the latest this long after start or a reload (iamtokend(8), SYSTEMD INTEGRATION).
constexpr auto k_settle_limit = std::chrono::seconds(10);
// A graceful stop that has not finished by then ends the loop anyway.
constexpr auto k_stop_limit = std::chrono::seconds(4);

// Raises the soft RLIMIT_NOFILE to the hard limit (iamtokend(8), SYSTEMD INTEGRATION).
void raise_fd_limit()
{
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      log::warn("cannot raise the open file limit to {}", limit.rlim_max);
    }
  }
}

engine::Settings engine_settings(const config::Config& config)
{
  return engine::Settings{config.refresh.at_fraction, config.refresh.min_valid, config.refresh.timeout};
}

std::vector<engine::ProfileSpec> profile_specs(const config::Config& config)
{
  std::vector<engine::ProfileSpec> specs;
  specs.reserve(config.profiles.size());
  for (const auto& profile : config.profiles) {
    specs.push_back({profile.name, {profile.profile_id, profile.profile_name, profile.profile_crn}});
  }
  return specs;
}

// Warnings about a token's own claims: an iat far from the local clock (the
// local clock or the service's is off; callers see expires_at on the local
// clock), and a JWT that expires before expires_in says.
void check_token_claims(std::string_view what, const engine::IssuedToken& issued)
{
  const auto unix_now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  if (issued.issued_at && upstream::is_clock_skewed(*issued.issued_at, unix_now)) {
    log::warn("{}: the token was issued at {} by the service's clock, {} s {} the local clock (more "
              "than {} s apart): check NTP on this machine",
              what, *issued.issued_at, std::abs(*issued.issued_at - unix_now),
              *issued.issued_at > unix_now ? "ahead of" : "behind", upstream::k_max_clock_skew.count());
  }
  if (issued.jwt_lifetime && issued.expires_in > std::chrono::seconds(0) && *issued.jwt_lifetime < issued.expires_in) {
    log::info("{}: the token's own exp - iat ({} s) is shorter than expires_in ({} s): using {} s", what,
              issued.jwt_lifetime->count(), issued.expires_in.count(), issued.jwt_lifetime->count());
  }
}

// Counts every upstream HTTP request in the metrics: the code is the HTTP
// status, or timeout/transport when no reply came.
class UpstreamCounter final : public upstream::RequestObserver
{
public:
  void on_request(const upstream::RequestOutcome& outcome) override
  {
    if (outcome.http_status != 0) {
      const fmt::format_int status(outcome.http_status);
      m_stats.record(outcome.call, std::string_view(status.data(), status.size()), outcome.duration);
    } else {
      m_stats.record(outcome.call, outcome.failure == engine::Failure::timeout ? "timeout" : "transport",
                     outcome.duration);
    }
  }

  const metrics::UpstreamStats& stats() const noexcept { return m_stats; }

private:
  metrics::UpstreamStats m_stats;
};

// The engine's Upstream with a log line for every result and a hook that
// runs after each exchange has been handed to the engine (for STATUS=), on
// top of `inner` (which must outlive it).
class LoggingUpstream final : public engine::Upstream
{
public:
  LoggingUpstream(asio::io_context& io, engine::Upstream& inner, std::function<void()> on_exchange)
    : m_io(io), m_inner(inner), m_on_exchange(std::move(on_exchange))
  {
  }

  void set_profiles(std::vector<engine::ProfileSpec> specs) { m_specs = std::move(specs); }

  bool cr_token_per_exchange() const override { return m_inner.cr_token_per_exchange(); }

  void fetch_cr_token(engine::UpstreamCallback done) override
  {
    m_inner.fetch_cr_token([done = std::move(done)](engine::UpstreamResult result) {
      if (result) {
        log::debug("CR token obtained");
        check_token_claims("CR token", *result);
      } else {
        log::warn("cannot get a CR token: {}", engine::describe(result.error()));
      }
      done(std::move(result));
    });
  }

  void exchange(const engine::ProfileTarget& target, const Secret& cr_token,
                engine::UpstreamCallback done) override
  {
    auto logged = [this, target, done = std::move(done)](engine::UpstreamResult result) {
      const std::string name = local_name(target);
      if (result) {
        check_token_claims(fmt::format("profile {}", name), *result);
        const auto lifetime = std::min(result->expires_in, result->jwt_lifetime.value_or(result->expires_in));
        if (m_have_token.insert(name).second) {
          log::info("profile {}: first token, valid for {} s", name, lifetime.count());
        } else {
          log::debug("profile {}: token renewed, valid for {} s", name, lifetime.count());
        }
      } else {
        log::warn("profile {}: token exchange failed: {}", name, engine::describe(result.error()));
      }
      done(std::move(result));
      asio::post(m_io, m_on_exchange);
    };
    m_inner.exchange(target, cr_token, std::move(logged));
  }

private:
  // The local name(s) configured for `target`, or its upstream identifier.
  std::string local_name(const engine::ProfileTarget& target) const
  {
    std::string names;
    for (const auto& spec : m_specs) {
      if (spec.target == target) {
        names += names.empty() ? spec.name : "," + spec.name;
      }
    }
    if (!names.empty()) {
      return names;
    }
    return !target.id.empty() ? target.id : !target.name.empty() ? target.name : target.crn;
  }

  asio::io_context& m_io;
  engine::Upstream& m_inner;
  std::function<void()> m_on_exchange;
  std::vector<engine::ProfileSpec> m_specs;
  std::set<std::string> m_have_token;
};

class Daemon
{
public:
  Daemon(asio::io_context& io, Options options, config::Config config)
    : m_io(io),
      m_options(std::move(options)),
      m_config(std::move(config)),
      m_timers(io),
      m_signals(io, SIGTERM, SIGINT),
      m_hangup(io, SIGHUP),
      m_settle_timer(io),
      m_watchdog_timer(io),
      m_stop_timer(io)
  {
  }

  ~Daemon()
  {
    // The server uses the engine, the engine the upstream; all of them go
    // before the io_context.
    m_token_watcher.reset();
    m_http.reset();
    m_server.reset();
    m_engine.reset();
    m_logging.reset();
    m_upstream.reset();
  }

  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  int run()
  {
    log::info("iamtokend {} starting: {} profile(s), source {}, exchange {}", k_version,
              m_config.profiles.size(), config::to_string(m_config.source.type),
              config::to_string(m_config.exchange));
    std::unique_ptr<engine::Upstream> cloud;
    try {
      cloud = std::make_unique<upstream::CloudUpstream>(m_io, m_config, &m_upstream_counter);
    } catch (const std::exception& e) {
      log::error("cannot set up the upstream: {}", e.what());
      return k_exit_fatal;
    }
    m_upstream = std::make_unique<upstream::SwitchableUpstream>(m_io, std::move(cloud));
    m_logging = std::make_unique<LoggingUpstream>(m_io, *m_upstream, [this] { update_status(); });
    m_logging->set_profiles(profile_specs(m_config));
    m_engine = std::make_unique<engine::Engine>(engine::Ports{m_clock, m_timers, m_random, *m_logging},
                                                engine_settings(m_config), profile_specs(m_config));
    m_server = std::make_unique<server::Server>(m_io, *m_engine, m_config, server::Limits{});
    m_server->set_metrics([this] { return metrics_text(); });

    // Sockets passed by systemd: those named "http" are the HTTP endpoint's,
    // any other one is the Unix socket.
    std::vector<int> unix_fds;
    std::vector<int> http_fds;
    char** names = nullptr;
    const int passed = sd_listen_fds_with_names(1, &names);
    for (int i = 0; i < std::max(passed, 0); ++i) {
      const bool http = names != nullptr && names[i] != nullptr && std::string_view(names[i]) == "http";
      (http ? http_fds : unix_fds).push_back(SD_LISTEN_FDS_START + i);
    }
    if (names != nullptr) {
      for (int i = 0; i < std::max(passed, 0); ++i) {
        std::free(names[i]);
      }
      std::free(names);
    }
    if (unix_fds.size() > 1) {
      log::error("systemd passed {} sockets for the Unix socket; expected one", unix_fds.size());
      return k_exit_bind;
    }
    const auto listening = unix_fds.size() == 1 ? m_server->adopt(unix_fds.front()) : m_server->listen();
    if (!listening) {
      log::error("cannot listen on {}: {}", m_config.socket.path, listening.error());
      return k_exit_bind;
    }
    if (unix_fds.size() == 1) {
      log::info("listening on the socket passed by systemd");
    } else {
      log::info("listening on {}", m_config.socket.path);
    }
    if (!start_http(http_fds)) {
      return k_exit_bind;
    }

    wait_for_signal();
    wait_for_hangup();
    start_watchdog();
    watch_token_file();
    m_engine->start();
    m_server->start();
    if (m_http) {
      m_http->start();
    }
    announce_when_settled();

    m_io.run();
    log::info("stopped");
    return m_exit_code;
  }

private:
  // The HTTP endpoint, when the config has an "http" section: on the sockets
  // systemd passed as "http", else bound to its listen addresses. False
  // (after logging) when it cannot listen.
  bool start_http(const std::vector<int>& passed)
  {
    if (!m_config.http) {
      if (!passed.empty()) {
        log::warn("systemd passed {} http socket(s) but the configuration has no \"http\" section: not serving HTTP",
                  passed.size());
        for (const int fd : passed) {
          ::close(fd);
        }
      }
      return true;
    }
    m_http = std::make_unique<http::Listener>(m_io, *m_engine, m_config);
    m_http->set_metrics([this] { return metrics_text(); });
    const auto listening = passed.empty() ? m_http->listen() : m_http->adopt(passed);
    if (!listening) {
      log::error("http endpoint: {}", listening.error());
      return false;
    }
    for (const auto& address : m_http->local_addresses()) {
      log::info("http endpoint listening on {}{}", address, passed.empty() ? "" : " (passed by systemd)");
    }
    return true;
  }

  // With a file source: an inotify watch on the token file, so profiles
  // backing off after a rejected or unreadable CR token retry as soon as
  // kubelet writes a new one. None with an imds source.
  void watch_token_file()
  {
    m_token_watcher.reset();
    if (m_config.source.type != config::SourceType::file) {
      return;
    }
    std::vector<std::string> paths;
    if (!m_config.source.file.path.empty()) {
      paths.push_back(m_config.source.file.path);
    } else {
      for (const auto path : upstream::default_cr_token_paths()) {
        paths.emplace_back(path);
      }
    }
    m_token_watcher = std::make_unique<upstream::TokenFileWatcher>(m_io, paths, [this] {
      if (m_stopping || !m_engine) {
        return;
      }
      log::info("the CR token file changed: profiles waiting for a usable CR token retry now");
      m_engine->cr_token_changed();
    });
    if (!m_token_watcher->active()) {
      log::warn("cannot watch the CR token file ({}): a new token is used at the next retry",
                m_token_watcher->error());
    } else if (!m_token_watcher->unwatched().empty() && !m_config.source.file.path.empty()) {
      log::warn("cannot watch {} (does the directory exist?): a new token is used at the next retry",
                m_token_watcher->unwatched().front());
    }
  }

  // The metrics exposition: what the socket's metrics op answers.
  std::string metrics_text() const
  {
    metrics::Snapshot snapshot;
    snapshot.version = std::string(k_version);
    snapshot.engine = m_engine->status();
    snapshot.unix_now = m_clock.unix_now();
    snapshot.transports.push_back(
      metrics::Transport{"socket", m_server->request_counts(), m_server->counters().connections});
    if (m_http) {
      snapshot.transports.push_back(metrics::Transport{"http", m_http->request_counts(), m_http->connections()});
    }
    snapshot.upstream = m_upstream_counter.stats();
    snapshot.process = metrics::read_process_stats();
    return metrics::exposition(snapshot);
  }

  void wait_for_signal()
  {
    m_signals.async_wait([this](const std::error_code& error, int signal_number) {
      if (!error) {
        stop(signal_number);
      }
    });
  }

  void wait_for_hangup()
  {
    m_hangup.async_wait([this](const std::error_code& error, int) {
      if (!error) {
        reload();
        wait_for_hangup();
      }
    });
  }

  void start_watchdog()
  {
    const auto interval = notify::watchdog_interval();
    if (!interval) {
      return;
    }
    notify::watchdog();
    m_watchdog_timer.expires_after(*interval);
    m_watchdog_timer.async_wait([this](const std::error_code& error) {
      if (!error) {
        start_watchdog();
      }
    });
  }

  // Sends READY=1 with a STATUS= line once the engine has settled (every
  // profile's first attempt finished) or k_settle_limit passed.
  void announce_when_settled()
  {
    const std::uint64_t generation = ++m_generation;
    const auto announce = [this, generation] {
      if (generation != m_generation || m_stopping) {
        return;
      }
      ++m_generation; // the other of the two triggers is now stale
      m_settle_timer.cancel();
      log_settled();
      // The first round's concurrent transfers (curl buffers, replies) are
      // freed now: hand their pages back instead of holding them for good.
      malloc_trim(0);
      m_status_text = status_text();
      notify::ready(m_status_text);
    };
    m_settle_timer.expires_after(k_settle_limit);
    m_settle_timer.async_wait([announce](const std::error_code& error) {
      if (!error) {
        announce();
      }
    });
    // when_settled may call back at once: defer so this function finishes first.
    m_engine->when_settled([this, announce] { asio::post(m_io, announce); });
  }

  void log_settled()
  {
    const auto status = m_engine->status();
    for (const auto& profile : status.profiles) {
      if (profile.state == engine::State::failed || profile.state == engine::State::pending) {
        log::warn("profile {}: no token yet ({}){}", profile.name, engine::to_string(profile.state),
                  profile.last_error ? ": " + engine::describe(*profile.last_error) : std::string());
      }
    }
    log::info("{}", status_text());
  }

  // "2/3 profiles fresh, 1 failed".
  std::string status_text() const
  {
    const auto status = m_engine->status();
    std::size_t fresh = 0;
    std::size_t stale = 0;
    std::size_t failed = 0;
    std::size_t pending = 0;
    for (const auto& profile : status.profiles) {
      switch (profile.state) {
      case engine::State::fresh:
      case engine::State::refreshing: ++fresh; break;
      case engine::State::stale: ++stale; break;
      case engine::State::failed: ++failed; break;
      case engine::State::pending: ++pending; break;
      }
    }
    std::string text = fmt::format("{}/{} profiles fresh", fresh, status.profiles.size());
    if (stale > 0) {
      text += fmt::format(", {} stale", stale);
    }
    if (failed > 0) {
      text += fmt::format(", {} failed", failed);
    }
    if (pending > 0) {
      text += fmt::format(", {} pending", pending);
    }
    return text;
  }

  // After an exchange: a new STATUS= line if the summary changed.
  void update_status()
  {
    if (m_stopping || !m_engine) {
      return;
    }
    auto text = status_text();
    if (text != m_status_text) {
      m_status_text = std::move(text);
      notify::status(m_status_text);
    }
  }

  void reload()
  {
    if (m_stopping) {
      return;
    }
    notify::reloading();
    log::info("reloading {}", m_options.config_path);
    auto loaded = config::load_config(m_options.config_path);
    if (!config::report(
          loaded, [](const std::string& line) { log::error("reload: {}", line); },
          [](const std::string& line) { log::warn("configuration: {}", line); })) {
      log::error("reload failed: keeping the previous configuration");
      notify::ready(m_status_text);
      return;
    }
    config::Config next = std::move(loaded->config);
    // A changed source, exchange, endpoint or timeout gets a new upstream;
    // calls already out finish on the old one.
    std::unique_ptr<engine::Upstream> cloud;
    if (!upstream::same_upstream(m_config, next)) {
      try {
        cloud = std::make_unique<upstream::CloudUpstream>(m_io, next, &m_upstream_counter);
      } catch (const std::exception& e) {
        log::error("reload: cannot set up the upstream: {}", e.what());
        log::error("reload failed: keeping the previous configuration");
        notify::ready(m_status_text);
        return;
      }
    }
    if (m_config.socket.path != next.socket.path || m_config.socket.mode != next.socket.mode ||
        m_config.socket.group != next.socket.group) {
      log::warn("reload: socket path, mode or group changed: restart iamtokend to apply");
    }
    const auto listen_of = [](const config::Config& c) {
      return c.http ? c.http->listen : std::vector<config::HttpListen>{};
    };
    if (listen_of(m_config) != listen_of(next)) {
      log::warn("reload: http.listen changed: restart iamtokend to apply");
    }
    std::size_t added = 0;
    for (const auto& profile : next.profiles) {
      bool known = false;
      for (const auto& old : m_config.profiles) {
        known = known || old.name == profile.name;
      }
      added += known ? 0 : 1;
    }
    const std::size_t removed = m_config.profiles.size() + added - next.profiles.size();
    if (cloud) {
      m_upstream->replace(std::move(cloud));
      log::info("reload: upstream settings changed: new calls use source {} and exchange {}",
                config::to_string(next.source.type), config::to_string(next.exchange));
      if (!(m_config.source == next.source)) {
        m_engine->forget_cr_token(); // a CR token of the old source is not used again
      }
    }
    const bool source_changed = !(m_config.source == next.source);
    m_logging->set_profiles(profile_specs(next));
    m_engine->reconfigure(engine_settings(next), profile_specs(next));
    m_server->reconfigure(next);
    if (m_http) {
      m_http->reconfigure(next);
    }
    m_config = std::move(next);
    if (source_changed) {
      watch_token_file();
    }
    log::info("reloaded: {} profile(s), {} added, {} removed", m_config.profiles.size(), added, removed);
    announce_when_settled();
  }

  void stop(int signal_number)
  {
    if (m_stopping) {
      return;
    }
    m_stopping = true;
    notify::stopping();
    log::info("stopping ({})", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
    std::error_code ignored;
    m_hangup.cancel(ignored);
    m_settle_timer.cancel();
    m_watchdog_timer.cancel();
    m_stop_timer.expires_after(k_stop_limit);
    m_stop_timer.async_wait([this](const std::error_code& error) {
      if (!error) {
        log::warn("graceful stop took too long; stopping now");
        finish();
      }
    });
    if (m_http) {
      m_http->stop();
    }
    m_server->stop([this] { asio::post(m_io, [this] { finish(); }); });
  }

  void finish()
  {
    if (m_finished) {
      return;
    }
    m_finished = true;
    m_stop_timer.cancel();
    m_engine->stop();
    m_exit_code = k_exit_ok;
    m_io.stop();
  }

  asio::io_context& m_io;
  Options m_options;
  config::Config m_config;
  engine::SystemClock m_clock;
  engine::SystemRandom m_random;
  AsioTimers m_timers;
  UpstreamCounter m_upstream_counter; // outlives every upstream
  // The engine calls m_logging, which calls m_upstream, which calls the
  // current CloudUpstream (replaced on a reload that changes its settings).
  std::unique_ptr<upstream::SwitchableUpstream> m_upstream;
  std::unique_ptr<LoggingUpstream> m_logging;
  std::unique_ptr<engine::Engine> m_engine;
  std::unique_ptr<server::Server> m_server;
  std::unique_ptr<http::Listener> m_http; // only with an "http" section
  std::unique_ptr<upstream::TokenFileWatcher> m_token_watcher;
  asio::signal_set m_signals;
  asio::signal_set m_hangup;
  asio::steady_timer m_settle_timer;
  asio::steady_timer m_watchdog_timer;
  asio::steady_timer m_stop_timer;
  std::uint64_t m_generation = 0;
  std::string m_status_text;
  bool m_stopping = false;
  bool m_finished = false;
  int m_exit_code = k_exit_fatal;
};

} // namespace

int run_daemon(const Options& options, config::Config config)
{
  std::signal(SIGPIPE, SIG_IGN);
  raise_fd_limit();
  // No core dumps (they would hold tokens) and no ptrace by other users.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    log::warn("cannot disable core dumps");
  }
  try {
    asio::io_context io(1);
    int code = k_exit_fatal;
    {
      Daemon daemon(io, options, std::move(config));
      code = daemon.run();
    }
    return code;
  } catch (const std::exception& e) {
    log::error("fatal: {}", e.what());
    return k_exit_fatal;
  }
}

} // namespace iamtok::app
