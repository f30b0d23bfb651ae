#pragma once

// One HTTP/1.1 server connection over Asio C++20 coroutines, shared by every
// server in the project: read, feed the RequestReader, answer each complete
// request in order (keep-alive and pipelining), with the idle and
// partial-request deadlines and the head/body limits the caller gives. After
// a framing error the connection gets that error's response and is closed.
// What a request means is the caller's Handler.

#include "http/message.hpp"

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include <chrono>
#include <functional>
#include <optional>

namespace iamtok::http {

struct SessionOptions
{
  ReaderLimits limits;
  // No new request begun for this long: close (0: no deadline).
  std::chrono::milliseconds idle_timeout{0};
  // A request begun but not complete this long: close (0: no deadline). A
  // response that cannot be written within the larger of the two also closes.
  std::chrono::milliseconds partial_timeout{0};
  // A closing connection reads (and discards) what the client still sends
  // for at most this long, so its last response is not reset away.
  std::chrono::milliseconds linger{2000};
};

// What a Handler decided for one request.
struct Answer
{
  // nullopt: the handler is done with the connection (it hung it up or reset
  // it); the session ends without writing.
  std::optional<Response> response;
  bool close = false; // close after this response even if the client keeps alive
};

using Handler = std::function<asio::awaitable<Answer>(Request&)>;
// The response to a framing error (event.kind == error: status and message).
using ErrorResponder = std::function<Response(const ReaderEvent& event)>;
// Called when a deadline closes the connection: true if a request was partial.
using TimeoutObserver = std::function<void(bool partial)>;

// Serves `socket` until the client closes, a deadline passes, a framing error
// or a non-keep-alive request ends it. Never throws for what the client sends.
asio::awaitable<void> serve(asio::ip::tcp::socket& socket, const SessionOptions& options, Handler handler,
                            ErrorResponder on_error, TimeoutObserver on_timeout = {});

// Waits until the peer closes (or the connection fails), discarding input.
asio::awaitable<void> wait_for_close(asio::ip::tcp::socket& socket);

// A graceful close after the last response: stop sending, then discard what
// the client still sends until it closes or `linger` passes.
asio::awaitable<void> lingering_close(asio::ip::tcp::socket& socket, std::chrono::milliseconds linger);

} // namespace iamtok::http
