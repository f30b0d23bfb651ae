#pragma once

// The SDK endpoint's TCP transport (docs/http.md): Asio acceptors on the
// configured loopback addresses (or sockets passed by systemd), one shared
// HTTP session (http/session.hpp) per connection with strict framing, 8 KiB
// head and body, 60 s idle and 10 s partial-request deadlines; past
// max_connections one 503 and close. The caller is the uid owning the
// client's socket (server::tcp_peer_credentials); the routes (routes.hpp)
// answer.

#include "daemon/config/config.hpp"
#include "daemon/engine/engine.hpp"
#include "daemon/http/routes.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/server/dispatch.hpp"

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <tl/expected.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace iamtok::http {

struct ListenerLimits
{
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds partial_timeout{10'000};
  std::size_t max_head_bytes = 8 * 1024;
  std::size_t max_body_bytes = 8 * 1024;
};

class Listener
{
public:
  // `config.http` must be set. `engine` must outlive the Listener; every
  // member runs on the io_context's thread.
  Listener(asio::io_context& io, engine::Engine& engine, const config::Config& config, ListenerLimits limits = {});
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Binds and listens on every config.http.listen address; a message naming
  // the address on the first failure (the daemon exits 3).
  tl::expected<void, std::string> listen();
  // Uses listening TCP sockets passed by systemd instead; each must be bound
  // to a loopback address.
  tl::expected<void, std::string> adopt(const std::vector<int>& fds);

  // "127.0.0.1:8911" for each listening socket (the bound port, also for 0).
  std::vector<std::string> local_addresses() const;

  // Starts accepting on every socket.
  void start();

  // A reloaded config: allow lists and profiles, max_connections. The listen
  // addresses stay (the caller logs that a change needs a restart).
  void reconfigure(const config::Config& config);

  // Stops accepting and closes every connection.
  void stop();

  // Where /metrics gets its text.
  void set_metrics(std::function<std::string()> exposition);

  const metrics::RequestCounts& request_counts() const;
  std::uint64_t connections() const;

private:
  struct Impl;
  std::shared_ptr<Impl> m_impl;
};

} // namespace iamtok::http
