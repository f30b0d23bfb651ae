#pragma once

// HTTP/1.1 server-side messages, without I/O, shared by every server in the
// project (the simulator, the daemon's SDK endpoint): RequestReader turns the
// bytes of one connection into complete requests (Node's http-parser does the
// parsing, with size bounds and optional strict framing), and serialize()
// renders a response. The connection loop over Asio is http/session.hpp.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct http_parser;

namespace iamtok::http {

struct Header
{
  std::string name;
  std::string value;
};

struct Request
{
  std::string method;    // "GET", "PUT", ...
  std::string target;    // the raw request-target: "/identity/v1/token?version=..."
  std::string path;      // the target up to '?' (not decoded)
  std::string query;     // after '?', without the '#' fragment (not decoded)
  std::vector<Header> headers;
  std::string body;
  bool keep_alive = true;    // false for HTTP/1.0 or "Connection: close"
  bool from_loopback = true; // the transport sets this from the peer address

  // The value of the first header called `name` (case-insensitive), or
  // nullptr when there is none.
  const std::string* header(std::string_view name) const;
};

struct Response
{
  int status = 200;
  std::string content_type = "application/json";
  std::vector<Header> headers; // besides Content-Type, Content-Length, Connection
  std::string body;
};

// "OK", "Bad Request", ... ("Unknown" for a status without a phrase here).
std::string_view reason_phrase(int status);

// The response on the wire: status line, headers, Content-Length and
// "Connection: close" unless `keep_alive`, then the body.
std::string serialize(const Response& response, bool keep_alive);

// The media type of a Content-Type value, lower-cased and without parameters
// or surrounding spaces: "Application/JSON; charset=utf-8" -> "application/json".
std::string media_type(std::string_view content_type);

struct ReaderLimits
{
  std::size_t max_header_bytes = 16 * 1024; // request line + headers
  std::size_t max_body_bytes = 64 * 1024;
  // Strict framing (the daemon's endpoint): a body only by Content-Length; a
  // Transfer-Encoding header, more than one Content-Length or one that is not
  // a plain decimal number is a 400 error, so no two parsers can disagree
  // about where a request ends. Also: an HTTP/1.1 request without Host is 400.
  bool strict = false;
};

// One step of what a connection's bytes amount to, in order.
struct ReaderEvent
{
  enum class Kind {
    request,         // a complete request
    expect_continue, // the client waits for "100 Continue" before the body
    error,           // unusable input: answer `status` and close
  };
  Kind kind = Kind::request;
  Request request;       // Kind::request
  int status = 0;        // Kind::error: 400, 413 or 431
  std::string message;   // Kind::error: what is wrong, never input bytes
};

// Incremental request parser for one connection (pipelining-safe: a read may
// hold several requests, or part of one). After an error it ignores input.
class RequestReader
{
public:
  explicit RequestReader(ReaderLimits limits = {});
  ~RequestReader();
  RequestReader(const RequestReader&) = delete;
  RequestReader& operator=(const RequestReader&) = delete;

  // The events that `data` completes, in order; the last one is an error if
  // the input cannot be parsed or is too large.
  std::vector<ReaderEvent> feed(std::string_view data);

  // True once an error was reported.
  bool failed() const noexcept { return m_failed; }

  // True while a request has begun but is not complete (for the
  // partial-request deadline).
  bool in_request() const noexcept { return m_in_request; }

private:
  struct Callbacks;

  void fail(int status, std::string message);

  ReaderLimits m_limits;
  std::unique_ptr<http_parser> m_parser;
  Request m_current;
  std::size_t m_header_bytes = 0;
  bool m_in_value = false;
  bool m_in_request = false;
  bool m_failed = false;
  bool m_error_reported = false;
  int m_error_status = 0;
  std::string m_error_message;
  std::vector<ReaderEvent> m_events;
};

} // namespace iamtok::http
