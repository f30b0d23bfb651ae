#pragma once

// The engine's Upstream on IBM Cloud: the CR token from IMDS or from a
// projected token file, exchanged for access tokens at IAM or at IMDS
// (docs/upstream.md). Requests run as coroutines on the io_context.

#include "daemon/config/config.hpp"
#include "daemon/engine/ports.hpp"
#include "daemon/upstream/http_client.hpp"
#include "daemon/upstream/observer.hpp"
#include "daemon/upstream/replies.hpp"
#include "daemon/upstream/requests.hpp"
#include "util/life.hpp"

#include <asio/io_context.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace iamtok::upstream {

class CloudUpstream final : public engine::Upstream
{
public:
  // Reads `config`'s source, exchange, iam and refresh.timeout /
  // refresh.connect_timeout (see same_upstream) as load_config() validated
  // them (iamtokend.json(5)): a known IMDS version, endpoints without a
  // trailing slash, the imds exchange only with the imds source. `observer`
  // (may be null) is told of every request's end; it and `io` must outlive
  // this object. Throws std::runtime_error if libcurl cannot be set up.
  CloudUpstream(asio::io_context& io, const config::Config& config, RequestObserver* observer = nullptr);
  // Calls in flight are abandoned: their callbacks are never called.
  ~CloudUpstream() override;
  CloudUpstream(const CloudUpstream&) = delete;
  CloudUpstream& operator=(const CloudUpstream&) = delete;

  // True for the file source (kubelet rotates the file).
  bool cr_token_per_exchange() const override;

  // IMDS: PUT the token path; file: read the file now (expires_in is then 0:
  // unknown). `done` is called once, later, from the io_context.
  void fetch_cr_token(engine::UpstreamCallback done) override;

  // IAM: POST /identity/token (CR-token grant, through a proxy if the
  // environment sets one); IMDS: POST the iam_token path with the CR token as
  // bearer. `done` is called once, later, from the io_context.
  void exchange(const engine::ProfileTarget& profile, const Secret& cr_token,
                engine::UpstreamCallback done) override;

private:
  asio::awaitable<void> call(Call call, HttpRequest request, engine::UpstreamCallback done,
                             util::Life::Watch life);
  HttpRequest imds_request(std::string_view path) const;
  engine::UpstreamResult result_of(Call call, const std::string& url, HttpResult result) const;
  static RequestOutcome observed(Call call, const HttpResult& reply, std::chrono::nanoseconds duration);

  asio::io_context& m_io;
  config::SourceConfig m_source;
  config::Exchange m_exchange;
  std::string m_iam_endpoint;
  std::chrono::milliseconds m_timeout;         // whole request
  std::chrono::milliseconds m_connect_timeout; // TCP/TLS connect
  RequestObserver* m_observer;
  ImdsPaths m_imds_paths;
  HttpClient m_http;
  // Coroutines not yet started when this object dies check this first.
  util::Life m_life;
};

// True if CloudUpstreams built from `a` and `b` would be the same: the
// fields the constructor reads are equal. A reload that changes any of them
// needs a new upstream.
bool same_upstream(const config::Config& a, const config::Config& b);

} // namespace iamtok::upstream
