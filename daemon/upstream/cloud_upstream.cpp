#include "daemon/upstream/cloud_upstream.hpp"

#include "daemon/upstream/file_source.hpp"

#include <asio/co_spawn.hpp>
#include <asio/post.hpp>
#include <fmt/format.h>

#include <exception>

namespace iamtok::upstream {

using engine::Failure;
using engine::UpstreamError;

namespace {

constexpr std::string_view k_imds_silent =
  "IMDS did not answer: is the metadata service enabled on this instance, and is the hop "
  "limit large enough?";

// A bug (an exception escaping a callback) surfaces from io_context::run().
void rethrow(const std::exception_ptr& error)
{
  if (error) {
    std::rethrow_exception(error);
  }
}

std::int64_t unix_now()
{
  return std::chrono::duration_cast<std::chrono::seconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

} // namespace

CloudUpstream::CloudUpstream(asio::io_context& io, const config::Config& config, RequestObserver* observer)
  : m_io(io),
    m_source(config.source),
    m_exchange(config.exchange),
    m_iam_endpoint(config.iam.endpoint),
    m_timeout(config.refresh.timeout),
    m_connect_timeout(config.refresh.connect_timeout),
    m_observer(observer),
    // The loader accepts only the versions imds_paths() knows.
    m_imds_paths(imds_paths(m_source.imds.version).value()),
    m_http(io)
{
}

CloudUpstream::~CloudUpstream() = default;

bool CloudUpstream::cr_token_per_exchange() const
{
  return m_source.type == config::SourceType::file;
}

HttpRequest CloudUpstream::imds_request(std::string_view path) const
{
  HttpRequest request;
  request.url = fmt::format("{}{}?version={}", m_source.imds.endpoint, path, m_source.imds.version);
  request.timeout = m_timeout;
  request.connect_timeout = m_connect_timeout;
  request.use_proxy = false; // link-local: never through a proxy
  return request;
}

void CloudUpstream::fetch_cr_token(engine::UpstreamCallback done)
{
  if (m_source.type == config::SourceType::file) {
    // A small local file: read synchronously, but complete from the loop.
    asio::post(m_io, [path = m_source.file.path, done = std::move(done),
                      life = m_life.watch()]() mutable {
      if (!life.alive()) {
        return;
      }
      auto token = read_cr_token_file(path);
      if (!token) {
        done(tl::unexpected(std::move(token.error())));
        return;
      }
      done(engine::IssuedToken{std::move(*token), std::chrono::seconds(0)});
    });
    return;
  }
  HttpRequest request = imds_request(m_imds_paths.token);
  request.method = "PUT";
  request.headers = {"Metadata-Flavor: ibm", "Accept: application/json",
                     "Content-Type: application/json"};
  request.body = imds_token_body(static_cast<int>(m_source.imds.token_lifetime.count()));
  asio::co_spawn(m_io, call(Call::imds_token, std::move(request), std::move(done), m_life.watch()),
                 rethrow);
}

void CloudUpstream::exchange(const engine::ProfileTarget& profile, const Secret& cr_token,
                             engine::UpstreamCallback done)
{
  // The request (and so the token) is built here: the coroutine needs no
  // reference to the caller's Secret; the client wipes it after the transfer.
  HttpRequest request;
  Call which = Call::iam_token;
  if (m_exchange == config::Exchange::iam) {
    request.method = "POST";
    request.url = m_iam_endpoint + "/identity/token";
    request.headers = {"Content-Type: application/x-www-form-urlencoded", "Accept: application/json"};
    request.body = iam_exchange_body(cr_token, profile);
    request.timeout = m_timeout;
    request.connect_timeout = m_connect_timeout;
    request.use_proxy = true;
  } else {
    which = Call::imds_iam_token;
    request = imds_request(m_imds_paths.iam_token);
    request.method = "POST";
    std::string authorization;
    authorization.reserve(cr_token.size() + 32);
    authorization += "Authorization: Bearer ";
    authorization += cr_token.expose();
    request.headers.push_back(std::move(authorization));
    request.headers.emplace_back("Metadata-Flavor: ibm");
    request.headers.emplace_back("Accept: application/json");
    request.headers.emplace_back("Content-Type: application/json");
    request.body = imds_exchange_body(profile);
  }
  asio::co_spawn(m_io, call(which, std::move(request), std::move(done), m_life.watch()), rethrow);
}

asio::awaitable<void> CloudUpstream::call(Call which, HttpRequest request,
                                          engine::UpstreamCallback done, util::Life::Watch life)
{
  if (!life.alive()) {
    co_return;
  }
  std::optional<engine::UpstreamResult> result;
  try {
    const std::string url = request.url;
    const auto started = std::chrono::steady_clock::now();
    HttpResult reply = co_await m_http.request(std::move(request));
    if (m_observer != nullptr) {
      m_observer->on_request(observed(which, reply, std::chrono::steady_clock::now() - started));
    }
    result = result_of(which, url, std::move(reply));
  } catch (const std::exception& e) {
    UpstreamError error;
    error.failure = Failure::transport;
    error.message = fmt::format("{} request failed: {}", call_name(which), e.what());
    result = tl::unexpected(std::move(error));
  }
  done(std::move(*result));
}

RequestOutcome CloudUpstream::observed(Call which, const HttpResult& reply, std::chrono::nanoseconds duration)
{
  RequestOutcome outcome;
  outcome.call = which == Call::imds_token ? "imds_token" : which == Call::iam_token ? "iam_token" : "imds_iam_token";
  outcome.duration = duration;
  if (reply) {
    outcome.http_status = static_cast<int>(reply->status);
  } else {
    outcome.failure = reply.error().failure;
  }
  return outcome;
}

engine::UpstreamResult CloudUpstream::result_of(Call which, const std::string& url,
                                                HttpResult reply) const
{
  const bool imds = which != Call::iam_token;
  if (!reply) {
    UpstreamError error;
    error.failure = reply.error().failure;
    error.definitive = reply.error().definitive;
    if (imds && error.failure == Failure::timeout) {
      error.message = fmt::format("{} ({}: {})", k_imds_silent, call_name(which), reply.error().message);
    } else if (error.failure == Failure::timeout) {
      error.message = fmt::format("{} did not answer within {} ms ({})", call_name(which),
                                  m_timeout.count(), reply.error().message);
    } else {
      error.message = fmt::format("{} request failed: {}", call_name(which), reply.error().message);
    }
    return tl::unexpected(std::move(error));
  }
  HttpResponse& response = *reply;
  const int status = static_cast<int>(response.status);
  if (status >= 200 && status <= 299) {
    auto token = parse_token_reply(which, response.body);
    if (!token) {
      token.error().http_status = status;
      token.error().message += fmt::format(" (from {})", url);
    }
    return token;
  }
  const ReplyHeaders headers{response.retry_after, response.request_id, response.location};
  return tl::unexpected(parse_error_reply(which, status, response.body, headers, unix_now()));
}

bool same_upstream(const config::Config& a, const config::Config& b)
{
  return a.source == b.source && a.exchange == b.exchange && a.iam == b.iam &&
         a.refresh.timeout == b.refresh.timeout && a.refresh.connect_timeout == b.refresh.connect_timeout;
}

} // namespace iamtok::upstream
