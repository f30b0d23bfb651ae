#pragma once

// The Unix socket front end (docs/protocol.md): accepts connections, reads NDJSON
// request lines with limits and timeouts, authorizes callers by SO_PEERCRED /
// SO_PEERGROUPS, and answers through the engine. Transport only: the mapping
// from a request to a reply lives in dispatch.hpp.
//
// Choices: at EOF (half-close) a last line without its '\n' is answered like
// a complete one (bad_request when it is cut short). A watcher that does not
// read keeps at most 4 renewals queued (the oldest are dropped: a newer token
// supersedes them); its watch ends when the client closes or shuts down its
// sending side. A write that cannot complete within idle_timeout closes the
// connection.

#include "daemon/config/config.hpp"
#include "daemon/engine/engine.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/server/dispatch.hpp"

#include <asio.hpp>
#include <tl/expected.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace iamtok::server {

struct Limits
{
  // 0: config.socket.max_connections (also after reconfigure); else a cap on it.
  std::uint32_t max_connections = 0;
  std::chrono::milliseconds idle_timeout{60'000};        // no request for this long: close
  std::chrono::milliseconds partial_line_timeout{10'000}; // a partial line held this long: close
  std::chrono::milliseconds drain_timeout{2'000};         // graceful stop: in-flight replies
};

class Server
{
public:
  // Serves `engine`, which must outlive the Server. Every member runs on the
  // io_context's thread (or before io.run() starts it).
  Server(asio::io_context& io, engine::Engine& engine, const config::Config& config,
         Limits limits = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Creates the socket file at config.socket.path with its mode and group
  // (no window with wider permissions; a stale socket file is replaced, a
  // live one or a non-socket is an error) and listens. Returns a message on
  // failure (the daemon exits 3).
  tl::expected<void, std::string> listen();
  // Uses a listening socket passed by systemd (LISTEN_FDS); never unlinks it.
  tl::expected<void, std::string> adopt(int fd);

  // Starts accepting (co_spawn on the io_context).
  void start();

  // Swaps in a new config (ACLs, limits): watchers whose profile is gone or
  // who may no longer use it get one error line and are closed.
  void reconfigure(const config::Config& config);

  // Stops accepting, lets in-flight replies finish for at most
  // Limits::drain_timeout, closes every connection, removes the socket file it
  // created, then calls `done`.
  void stop(std::function<void()> done);

  // Requests and error replies so far; connections open now.
  Traffic counters() const;
  // Requests answered so far by op and result (for the metrics).
  metrics::RequestCounts request_counts() const;

  // Where the metrics op gets its text (see Dispatcher::set_metrics).
  void set_metrics(std::function<std::string()> exposition);

private:
  struct Impl;
  std::shared_ptr<Impl> m_impl;
};

} // namespace iamtok::server
