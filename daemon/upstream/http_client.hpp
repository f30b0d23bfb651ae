#pragma once

// An asynchronous HTTP client on the daemon's io_context: one libcurl multi
// handle driven by Asio through curl's socket interface (no thread per
// request, no blocking call), so connections are kept alive and reused.
// Redirects are never followed (a 3xx is returned as it is), TLS is 1.2 or
// later and the peer's certificate and host name are always verified.
// Not thread-safe: use it from the io_context's thread only.

#include "daemon/engine/ports.hpp"

#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <tl/expected.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace iamtok::upstream {

struct HttpRequest
{
  std::string method = "GET"; // GET, POST, PUT, ...
  std::string url;
  std::vector<std::string> headers; // "Name: value" lines
  std::string body;                 // sent with any method but GET
  std::chrono::milliseconds timeout{10'000};        // the whole transfer
  std::chrono::milliseconds connect_timeout{2'000}; // the TCP (and TLS) connect
  bool use_proxy = true; // false: never through a proxy, whatever the environment says
};

struct HttpResponse
{
  HttpResponse() = default;
  HttpResponse(const HttpResponse&) = default;
  HttpResponse(HttpResponse&&) = default;
  HttpResponse& operator=(const HttpResponse&) = default;
  HttpResponse& operator=(HttpResponse&&) = default;
  // The body may hold a token: it is wiped.
  ~HttpResponse();

  long status = 0;
  std::string body;        // at most k_max_reply_size bytes
  std::string retry_after; // the Retry-After header's value, empty if absent
  std::string request_id;  // X-Request-Id or Transaction-Id, empty if absent
  std::string location;    // Location (of a 3xx), empty if absent
};

// A transfer that got no complete HTTP reply: Failure::transport (connect,
// reset, TLS, cancelled), Failure::timeout (connect or whole-request
// deadline), or Failure::malformed (reply larger than 64 KiB, not HTTP).
struct TransferError
{
  engine::Failure failure = engine::Failure::transport;
  std::string message; // curl's description; never a header or body
  // True when retrying cannot help: the server's certificate did not verify
  // (or no CA to verify it with), or TLS 1.2 could not be negotiated.
  bool definitive = false;
};

// How a curl result code (a CURLcode) that is not CURLE_OK is treated:
// timeout, malformed (something answered, but not HTTP) or transport; and
// whether it is definitive (certificate and TLS-version problems).
struct TransferClass
{
  engine::Failure failure = engine::Failure::transport;
  bool definitive = false;
};
TransferClass classify_transfer_error(int curl_code) noexcept;

using HttpResult = tl::expected<HttpResponse, TransferError>;

class HttpClient
{
public:
  explicit HttpClient(asio::io_context& io);
  // Ends every transfer in flight; their completion handlers are destroyed
  // without being called. Destroy the client before its io_context.
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Performs `request`: the response (any HTTP status), or how the transfer
  // failed. The request's body and header lines are wiped once it ends.
  asio::awaitable<HttpResult> request(HttpRequest request);

  // The same as an Asio asynchronous operation with signature
  // void(HttpResult). Never completes inside this call. A cancellation
  // (per-operation, any type) ends the transfer with Failure::transport.
  template<typename CompletionToken>
  auto async_request(HttpRequest request, CompletionToken&& token)
  {
    return asio::async_initiate<CompletionToken, void(HttpResult)>(
      [this](auto handler, HttpRequest req) {
        using Handler = std::decay_t<decltype(handler)>;
        asio::cancellation_slot slot = asio::get_associated_cancellation_slot(handler);
        start(std::move(req), std::make_unique<HandlerCompletion<Handler>>(std::move(handler), executor()),
              slot);
      },
      token, std::move(request));
  }

  // Transfers started and not yet completed.
  std::size_t in_flight() const noexcept;

private:
  // A type-erased completion handler (Asio 1.22 has no any_completion_handler).
  class Completion
  {
  public:
    virtual ~Completion() = default;
    // Posts the handler with `result` to its associated executor.
    virtual void complete(HttpResult result) = 0;
  };

  template<typename Handler>
  class HandlerCompletion final : public Completion
  {
  public:
    HandlerCompletion(Handler handler, asio::any_io_executor fallback)
      : m_handler(std::move(handler)), m_fallback(std::move(fallback))
    {
    }

    void complete(HttpResult result) override
    {
      auto executor = asio::get_associated_executor(m_handler, m_fallback);
      asio::post(executor, [handler = std::move(m_handler), result = std::move(result)]() mutable {
        std::move(handler)(std::move(result));
      });
    }

  private:
    Handler m_handler;
    asio::any_io_executor m_fallback;
  };

  asio::any_io_executor executor() const;
  void start(HttpRequest request, std::unique_ptr<Completion> completion, asio::cancellation_slot slot);

  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

} // namespace iamtok::upstream
