#include "daemon/upstream/http_client.hpp"

#include "daemon/upstream/replies.hpp"
#include "proto/secret.hpp"
#include "util/strings.hpp"
#include "version.hpp"

#include <asio/executor_work_guard.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <unordered_map>

// How the bridge works (after curl's asiohiper.cpp and juliobg/asio_http's
// curl_multi.cpp, minus their pitfalls):
// - curl tells us, per socket, what to wait for (socket callback); each curl
//   socket gets a posix::stream_descriptor whose async_wait calls
//   curl_multi_socket_action. curl owns the fd: on CURL_POLL_REMOVE the
//   descriptor is release()d, never closed.
// - curl tells us when it wants to be called back without socket activity
//   (timer callback); one steady_timer does that, a 0 ms timeout included, so
//   libcurl is never re-entered from inside its own callback.
// - after each curl_multi_socket_action, finished transfers are drained from
//   curl_multi_info_read, and the fd is looked up again before re-arming (curl
//   may have closed or replaced it meanwhile).

namespace iamtok::upstream {

using engine::Failure;

namespace {

constexpr std::size_t k_initial_body_capacity = 8 * 1024;
constexpr std::size_t k_max_header_value = 128;
constexpr std::size_t k_max_location = 512;

void init_curl_once()
{
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      throw std::runtime_error("curl_global_init failed");
    }
  });
}

// Appends to a string that may hold a token without leaving a copy behind
// in freed memory when it grows.
void append_wiping(std::string& out, std::string_view data)
{
  if (out.size() + data.size() > out.capacity()) {
    std::string bigger;
    bigger.reserve(std::max(out.capacity() * 2, out.size() + data.size()));
    bigger = out;
    wipe_string(out);
    out.swap(bigger);
  }
  out.append(data);
}

// The value of header `name` (lower case, with the colon) in `line`, trimmed
// and bounded; nullopt if the line is another header.
std::optional<std::string_view> header_value(std::string_view line, std::string_view name)
{
  if (!util::istarts_with(line, name)) {
    return std::nullopt;
  }
  return util::trim(line.substr(name.size())).substr(0, k_max_header_value);
}

// One socket curl asked us to watch.
struct Socket
{
  explicit Socket(asio::io_context& io) : descriptor(io) {}

  asio::posix::stream_descriptor descriptor;
  int wanted = 0;        // CURL_POLL_IN, CURL_POLL_OUT or CURL_POLL_INOUT
  bool reading = false;  // a wait_read is pending
  bool writing = false;  // a wait_write is pending
  bool released = false; // curl is done with it (or the client is gone)
};

} // namespace

TransferClass classify_transfer_error(int curl_code) noexcept
{
  switch (static_cast<CURLcode>(curl_code)) {
  case CURLE_OPERATION_TIMEDOUT:
    return {Failure::timeout, false};
  case CURLE_WEIRD_SERVER_REPLY:
  case CURLE_UNSUPPORTED_PROTOCOL:
  case CURLE_BAD_CONTENT_ENCODING:
    return {Failure::malformed, false}; // something answered, but not HTTP
  case CURLE_PEER_FAILED_VERIFICATION: // certificate or host name does not verify
  case CURLE_SSL_CACERT_BADFILE:       // no CA bundle to verify with
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_CERTPROBLEM:          // a local client certificate problem
  case CURLE_SSL_CIPHER:
  case CURLE_USE_SSL_FAILED:
    return {Failure::transport, true};
  default:
    return {Failure::transport, false};
  }
}

HttpResponse::~HttpResponse()
{
  wipe_string(body);
}

struct HttpClient::Impl
{
  // One request in flight, owning everything curl points to.
  struct Transfer
  {
    Transfer(asio::io_context& io, HttpRequest req) : request(std::move(req)), work(io.get_executor())
    {
      response.body.reserve(k_initial_body_capacity);
    }
    Transfer(const Transfer&) = delete;
    Transfer& operator=(const Transfer&) = delete;

    ~Transfer()
    {
      if (slot.is_connected()) {
        slot.clear();
      }
      for (curl_slist* node = headers; node != nullptr; node = node->next) {
        explicit_bzero(node->data, std::strlen(node->data));
      }
      curl_slist_free_all(headers);
      if (easy != nullptr) {
        curl_easy_cleanup(easy);
      }
      wipe_string(request.body);
      for (auto& header : request.headers) {
        wipe_string(header);
      }
    }

    std::uint64_t id = 0;
    CURL* easy = nullptr;
    HttpRequest request;
    curl_slist* headers = nullptr;
    HttpResponse response;
    bool too_large = false;
    char error_buffer[CURL_ERROR_SIZE] = {};
    std::unique_ptr<Completion> completion;
    asio::cancellation_slot slot;
    asio::executor_work_guard<asio::io_context::executor_type> work;
  };

  static constexpr long k_max_idle_connections = 8;

  explicit Impl(asio::io_context& context) : io(context), timer(context)
  {
    init_curl_once();
    multi = curl_multi_init();
    if (multi == nullptr) {
      throw std::runtime_error("curl_multi_init failed");
    }
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &Impl::on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &Impl::on_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, this);
    // Keep a few idle keep-alive connections (IMDS and IAM), not one per
    // transfer of a start-up burst: each cached connection costs memory.
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, k_max_idle_connections);
  }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  ~Impl()
  {
    closing = true;
    timer.cancel();
    for (auto& [easy, transfer] : transfers) {
      curl_multi_remove_handle(multi, easy);
    }
    transfers.clear();
    // curl closes its sockets in curl_multi_cleanup: hand them back first.
    for (auto& [fd, socket] : sockets) {
      socket->released = true;
      socket->descriptor.release();
    }
    sockets.clear();
    curl_multi_cleanup(multi);
  }

  // CURLMOPT_SOCKETFUNCTION: start, change or stop watching `fd`.
  static int on_socket(CURL*, curl_socket_t fd, int what, void* self_pointer, void*)
  {
    auto& self = *static_cast<Impl*>(self_pointer);
    if (what == CURL_POLL_REMOVE) {
      if (const auto it = self.sockets.find(fd); it != self.sockets.end()) {
        it->second->released = true;
        it->second->descriptor.release(); // curl owns the fd and closes it
        self.sockets.erase(it);
      }
      return 0;
    }
    if (self.closing) {
      return 0;
    }
    auto& socket = self.sockets[fd];
    if (!socket) {
      socket = std::make_shared<Socket>(self.io);
      std::error_code error;
      socket->descriptor.assign(fd, error);
      if (error) {
        self.sockets.erase(fd);
        return -1;
      }
    }
    socket->wanted = what;
    self.arm(socket, fd);
    return 0;
  }

  // CURLMOPT_TIMERFUNCTION: never calls libcurl itself; even a 0 ms timeout
  // goes through the timer, which completes from the io_context's loop.
  static int on_timer(CURLM*, long timeout_ms, void* self_pointer)
  {
    auto& self = *static_cast<Impl*>(self_pointer);
    if (self.closing) {
      return 0;
    }
    if (timeout_ms < 0) {
      self.timer.cancel();
      return 0;
    }
    self.timer.expires_after(std::chrono::milliseconds(timeout_ms));
    self.timer.async_wait([&self, life = std::weak_ptr<int>(self.life)](const std::error_code& error) {
      if (error || life.expired()) {
        return;
      }
      self.socket_action(CURL_SOCKET_TIMEOUT, 0);
    });
    return 0;
  }

  // Waits for what curl wants on `socket`, unless such a wait is pending.
  void arm(const std::shared_ptr<Socket>& socket, curl_socket_t fd)
  {
    if ((socket->wanted & CURL_POLL_IN) != 0 && !socket->reading) {
      socket->reading = true;
      socket->descriptor.async_wait(asio::posix::descriptor_base::wait_read,
                                    [this, socket, fd](const std::error_code& error) {
                                      socket->reading = false;
                                      if (!socket->released) {
                                        on_ready(socket, fd, CURL_POLL_IN, error);
                                      }
                                    });
    }
    if ((socket->wanted & CURL_POLL_OUT) != 0 && !socket->writing) {
      socket->writing = true;
      socket->descriptor.async_wait(asio::posix::descriptor_base::wait_write,
                                    [this, socket, fd](const std::error_code& error) {
                                      socket->writing = false;
                                      if (!socket->released) {
                                        on_ready(socket, fd, CURL_POLL_OUT, error);
                                      }
                                    });
    }
  }

  void on_ready(const std::shared_ptr<Socket>& socket, curl_socket_t fd, int direction,
                const std::error_code& error)
  {
    if (error == asio::error::operation_aborted || (socket->wanted & direction) == 0) {
      return; // curl no longer wants this direction
    }
    int select = direction == CURL_POLL_IN ? CURL_CSELECT_IN : CURL_CSELECT_OUT;
    if (error) {
      select = CURL_CSELECT_ERR;
    }
    socket_action(fd, select);
    // curl may have removed the socket, or closed it and opened another with
    // the same number: only re-arm the one still registered.
    const auto it = sockets.find(fd);
    if (!error && it != sockets.end() && it->second == socket) {
      arm(socket, fd);
    }
  }

  void socket_action(curl_socket_t fd, int select)
  {
    int running = 0;
    curl_multi_socket_action(multi, fd, select, &running);
    drain_finished();
  }

  void drain_finished()
  {
    int left = 0;
    while (CURLMsg* message = curl_multi_info_read(multi, &left)) {
      if (message->msg != CURLMSG_DONE) {
        continue;
      }
      CURL* easy = message->easy_handle;
      const CURLcode code = message->data.result;
      const auto it = transfers.find(easy);
      if (it == transfers.end()) {
        continue;
      }
      auto result = result_of(*it->second, code);
      finish(it->second->id, std::move(result));
    }
  }

  static HttpResult result_of(Transfer& transfer, CURLcode code)
  {
    if (code == CURLE_OK) {
      long status = 0;
      curl_easy_getinfo(transfer.easy, CURLINFO_RESPONSE_CODE, &status);
      transfer.response.status = status;
      return std::move(transfer.response);
    }
    const std::string_view detail =
      transfer.error_buffer[0] != '\0' ? transfer.error_buffer : curl_easy_strerror(code);
    TransferError error;
    if (code == CURLE_WRITE_ERROR && transfer.too_large) {
      error.failure = Failure::malformed;
      error.message = fmt::format("{}: reply larger than {} KiB", transfer.request.url,
                                  k_max_reply_size / 1024);
    } else {
      const auto kind = classify_transfer_error(code);
      error.failure = kind.failure;
      error.definitive = kind.definitive;
      error.message = fmt::format("{}: {}", transfer.request.url, detail);
      if (kind.definitive) {
        error.message += " (TLS: the server's certificate or TLS version is not accepted; not retried "
                         "before the backoff cap)";
      }
    }
    return tl::unexpected(std::move(error));
  }

  // Removes transfer `id` (if still there) and posts `result` to its handler.
  void finish(std::uint64_t id, HttpResult result)
  {
    for (auto it = transfers.begin(); it != transfers.end(); ++it) {
      if (it->second->id != id) {
        continue;
      }
      auto transfer = std::move(it->second);
      transfers.erase(it);
      curl_multi_remove_handle(multi, transfer->easy);
      if (transfer->slot.is_connected()) {
        transfer->slot.clear();
      }
      transfer->completion->complete(std::move(result));
      return;
    }
  }

  static size_t on_write(char* data, size_t size, size_t count, void* transfer_pointer)
  {
    auto& transfer = *static_cast<Transfer*>(transfer_pointer);
    const size_t length = size * count;
    if (transfer.response.body.size() + length > k_max_reply_size) {
      transfer.too_large = true;
      return 0; // anything but `length` aborts the transfer
    }
    append_wiping(transfer.response.body, std::string_view(data, length));
    return length;
  }

  static size_t on_header(char* data, size_t size, size_t count, void* transfer_pointer)
  {
    auto& transfer = *static_cast<Transfer*>(transfer_pointer);
    const size_t length = size * count;
    const std::string_view line(data, length);
    constexpr std::string_view k_retry_after = "retry-after:";
    auto& response = transfer.response;
    if (line.starts_with("HTTP/")) {
      // A new response (after a 1xx): forget the headers of the last one.
      response.retry_after.clear();
      response.request_id.clear();
      response.location.clear();
    } else if (const auto retry = header_value(line, k_retry_after)) {
      response.retry_after = *retry;
    } else if (const auto id = header_value(line, "x-request-id:")) {
      response.request_id = *id;
    } else if (const auto transaction = header_value(line, "transaction-id:")) {
      if (response.request_id.empty()) {
        response.request_id = *transaction;
      }
    } else if (util::istarts_with(line, "location:")) {
      response.location = util::trim(line.substr(9)).substr(0, k_max_location);
    }
    return length;
  }

  // Sets up and adds an easy handle; false (with a message) if curl refused.
  bool configure(Transfer& transfer, std::string& problem)
  {
    const HttpRequest& request = transfer.request;
    CURL* easy = transfer.easy;
    bool ok = true;
    const auto set = [&](CURLoption option, auto value) {
      ok = ok && curl_easy_setopt(easy, option, value) == CURLE_OK;
    };
    set(CURLOPT_URL, request.url.c_str());
    set(CURLOPT_NOSIGNAL, 1L);
    set(CURLOPT_PROTOCOLS_STR, "http,https");
    // A token request is never replayed elsewhere: a 3xx comes back as is.
    set(CURLOPT_FOLLOWLOCATION, 0L);
    set(CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
    set(CURLOPT_SSL_VERIFYPEER, 1L);
    set(CURLOPT_SSL_VERIFYHOST, 2L);
    set(CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout.count()));
    set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(request.connect_timeout.count()));
    set(CURLOPT_ERRORBUFFER, transfer.error_buffer);
    set(CURLOPT_WRITEFUNCTION, &Impl::on_write);
    set(CURLOPT_WRITEDATA, static_cast<void*>(&transfer));
    set(CURLOPT_HEADERFUNCTION, &Impl::on_header);
    set(CURLOPT_HEADERDATA, static_cast<void*>(&transfer));
    set(CURLOPT_USERAGENT, user_agent.c_str());
    if (!request.use_proxy) {
      set(CURLOPT_PROXY, "");
      set(CURLOPT_NOPROXY, "*");
    }
    if (request.method == "GET") {
      set(CURLOPT_HTTPGET, 1L);
    } else {
      set(CURLOPT_POST, 1L);
      set(CURLOPT_POSTFIELDS, request.body.data());
      set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
      if (request.method != "POST") {
        set(CURLOPT_CUSTOMREQUEST, request.method.c_str());
      }
    }
    // No "Expect: 100-continue" round trip for bodies over 1 KiB.
    for (const auto& line : request.headers) {
      transfer.headers = curl_slist_append(transfer.headers, line.c_str());
      ok = ok && transfer.headers != nullptr;
    }
    transfer.headers = curl_slist_append(transfer.headers, "Expect:");
    ok = ok && transfer.headers != nullptr;
    set(CURLOPT_HTTPHEADER, transfer.headers);
    if (!ok) {
      problem = "cannot set up the request (out of memory?)";
      return false;
    }
    if (const auto code = curl_multi_add_handle(multi, easy); code != CURLM_OK) {
      problem = curl_multi_strerror(code);
      return false;
    }
    return true;
  }

  void start(HttpRequest request, std::unique_ptr<Completion> completion, asio::cancellation_slot slot)
  {
    auto transfer = std::make_unique<Transfer>(io, std::move(request));
    transfer->id = ++next_id;
    transfer->completion = std::move(completion);
    transfer->easy = curl_easy_init();
    std::string problem = "curl_easy_init failed";
    if (transfer->easy == nullptr || !configure(*transfer, problem)) {
      transfer->completion->complete(
        tl::unexpected(TransferError{Failure::transport, fmt::format("{}: {}", transfer->request.url, problem)}));
      return;
    }
    if (slot.is_connected()) {
      transfer->slot = slot;
      slot.assign([this, id = transfer->id, life = std::weak_ptr<int>(life)](asio::cancellation_type type) {
        if (type == asio::cancellation_type::none) {
          return;
        }
        // Not from inside the cancellation handler: finishing clears its slot.
        asio::post(io, [this, id, life] {
          if (!life.expired()) {
            finish(id, tl::unexpected(TransferError{Failure::transport, "request cancelled"}));
          }
        });
      });
    }
    CURL* easy = transfer->easy;
    transfers.emplace(easy, std::move(transfer));
  }

  asio::io_context& io;
  CURLM* multi = nullptr;
  asio::steady_timer timer;
  std::unordered_map<curl_socket_t, std::shared_ptr<Socket>> sockets;
  std::unordered_map<CURL*, std::unique_ptr<Transfer>> transfers;
  std::string user_agent = fmt::format("iamtokend/{}", k_version);
  std::uint64_t next_id = 0;
  bool closing = false;
  // Handlers that may run after the client is gone check this first.
  std::shared_ptr<int> life = std::make_shared<int>(0);
};

HttpClient::HttpClient(asio::io_context& io) : m_impl(std::make_unique<Impl>(io)) {}

HttpClient::~HttpClient() = default;

asio::awaitable<HttpResult> HttpClient::request(HttpRequest request)
{
  co_return co_await async_request(std::move(request), asio::use_awaitable);
}

std::size_t HttpClient::in_flight() const noexcept
{
  return m_impl->transfers.size();
}

asio::any_io_executor HttpClient::executor() const
{
  return m_impl->io.get_executor();
}

void HttpClient::start(HttpRequest request, std::unique_ptr<Completion> completion,
                       asio::cancellation_slot slot)
{
  m_impl->start(std::move(request), std::move(completion), slot);
}

} // namespace iamtok::upstream
