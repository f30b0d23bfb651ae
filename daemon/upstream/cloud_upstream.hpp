#pragma once

// The engine's Upstream on IBM Cloud: the CR token from IMDS or from a
// projected token file, exchanged for access tokens at IAM or at IMDS
// (docs/upstream.md). Requests run as coroutines on the io_context.

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

enum class SourceType { imds, file };
enum class ExchangeType { iam, imds };

// What the upstream needs to know; the app fills it from the config.
struct Options
{
  SourceType source = SourceType::imds;
  std::string imds_endpoint = "http://169.254.169.254"; // no trailing path
  std::string imds_version = "2025-08-26";              // or "2022-03-01"
  int token_lifetime_s = 300;                           // asked of IMDS: 5-3600
  std::string file_path; // file source; empty: the first default path that exists
  ExchangeType exchange = ExchangeType::iam;
  std::string iam_endpoint = "https://iam.cloud.ibm.com";
  std::chrono::milliseconds timeout{10'000};        // whole request (refresh.timeout_s)
  std::chrono::milliseconds connect_timeout{2'000}; // TCP/TLS connect
  RequestObserver* observer = nullptr; // told of every request's end; must outlive the upstream
};

class CloudUpstream final : public engine::Upstream
{
public:
  // Throws std::invalid_argument for an unknown imds_version, or for the
  // imds exchange without the imds source. `io` must outlive this object.
  CloudUpstream(asio::io_context& io, Options options);
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
  Options m_options;
  ImdsPaths m_imds_paths;
  HttpClient m_http;
  // Coroutines not yet started when this object dies check this first.
  util::Life m_life;
};

} // namespace iamtok::upstream
