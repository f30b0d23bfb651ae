#include "http/message.hpp"

#include "util/strings.hpp"

#include <fmt/format.h>
#include <http_parser.h>

#include <algorithm>
#include <optional>


namespace iamtok::http {

using util::iequals;
using util::trim;

const std::string* Request::header(std::string_view name) const
{
  for (const auto& h : headers) {
    if (iequals(h.name, name)) {
      return &h.value;
    }
  }
  return nullptr;
}

std::string_view reason_phrase(int status)
{
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 413: return "Payload Too Large";
  case 415: return "Unsupported Media Type";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Unknown";
  }
}

std::string serialize(const Response& response, bool keep_alive)
{
  std::string out = fmt::format("HTTP/1.1 {} {}\r\n", response.status, reason_phrase(response.status));
  if (!response.body.empty() || response.status != 204) {
    fmt::format_to(std::back_inserter(out), "Content-Type: {}\r\n", response.content_type);
  }
  for (const auto& h : response.headers) {
    fmt::format_to(std::back_inserter(out), "{}: {}\r\n", h.name, h.value);
  }
  if (response.status != 204) {
    fmt::format_to(std::back_inserter(out), "Content-Length: {}\r\n", response.body.size());
  }
  if (!keep_alive) {
    out += "Connection: close\r\n";
  }
  out += "\r\n";
  out += response.body;
  return out;
}

std::string media_type(std::string_view content_type)
{
  const auto semicolon = content_type.find(';');
  const auto type = trim(content_type.substr(0, semicolon));
  return util::to_lower(type);
}

namespace {

bool all_digits(std::string_view text)
{
  return !text.empty() && text.size() <= 18
         && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// What makes a request's framing ambiguous or incomplete under strict rules,
// or nullopt. Header values are already trimmed.
std::optional<std::string_view> strict_framing_problem(const Request& req, unsigned major, unsigned minor)
{
  std::size_t lengths = 0;
  bool host = false;
  for (const auto& h : req.headers) {
    if (iequals(h.name, "Transfer-Encoding")) {
      return "Transfer-Encoding is not accepted: send Content-Length";
    }
    if (iequals(h.name, "Content-Length")) {
      if (++lengths > 1) {
        return "more than one Content-Length";
      }
      if (!all_digits(h.value)) {
        return "invalid Content-Length";
      }
    }
    host = host || iequals(h.name, "Host");
  }
  if (major == 1 && minor >= 1 && !host) {
    return "HTTP/1.1 request without Host";
  }
  return std::nullopt;
}

} // namespace

// http-parser's C callbacks: each finds its reader through parser->data. A
// non-zero return stops the parser (after fail() recorded why).
struct RequestReader::Callbacks
{
  static RequestReader& self(http_parser* p) { return *static_cast<RequestReader*>(p->data); }

  static bool count_header_bytes(RequestReader& r, std::size_t n)
  {
    r.m_header_bytes += n;
    if (r.m_header_bytes > r.m_limits.max_header_bytes) {
      r.fail(431, "request line and headers too large");
      return false;
    }
    return true;
  }

  static int on_message_begin(http_parser* p)
  {
    auto& r = self(p);
    r.m_current = Request{};
    r.m_header_bytes = 0;
    r.m_in_value = false;
    r.m_in_request = true;
    return 0;
  }

  static int on_url(http_parser* p, const char* at, std::size_t n)
  {
    auto& r = self(p);
    if (!count_header_bytes(r, n)) {
      return -1;
    }
    r.m_current.target.append(at, n);
    return 0;
  }

  static int on_header_field(http_parser* p, const char* at, std::size_t n)
  {
    auto& r = self(p);
    // A name may arrive in pieces: count its ": " and CRLF once, when it starts.
    const bool starts = r.m_in_value || r.m_current.headers.empty();
    if (!count_header_bytes(r, starts ? n + 4 : n)) {
      return -1;
    }
    if (starts) {
      r.m_current.headers.emplace_back();
      r.m_in_value = false;
    }
    r.m_current.headers.back().name.append(at, n);
    return 0;
  }

  static int on_header_value(http_parser* p, const char* at, std::size_t n)
  {
    auto& r = self(p);
    if (!count_header_bytes(r, n)) {
      return -1;
    }
    r.m_in_value = true;
    r.m_current.headers.back().value.append(at, n);
    return 0;
  }

  static int on_headers_complete(http_parser* p)
  {
    auto& r = self(p);
    auto& req = r.m_current;
    for (auto& h : req.headers) {
      h.value = std::string(trim(h.value));
    }
    req.method = http_method_str(static_cast<http_method>(p->method));
    const auto question = req.target.find('?');
    req.path = req.target.substr(0, question);
    if (question != std::string::npos) {
      const auto rest = std::string_view(req.target).substr(question + 1);
      req.query = std::string(rest.substr(0, rest.find('#')));
    }
    const bool chunked = (p->flags & F_CHUNKED) != 0;
    const bool has_length = (p->flags & F_CONTENTLENGTH) != 0;
    if (r.m_limits.strict) {
      if (auto problem = strict_framing_problem(req, p->http_major, p->http_minor)) {
        r.fail(400, std::string(*problem));
        return -1;
      }
    }
    if (has_length && p->content_length > r.m_limits.max_body_bytes) {
      r.fail(413, "request body too large");
      return -1;
    }
    const auto* expect = req.header("Expect");
    if (expect != nullptr && iequals(*expect, "100-continue") && (chunked || (has_length && p->content_length > 0))) {
      ReaderEvent event;
      event.kind = ReaderEvent::Kind::expect_continue;
      r.m_events.push_back(std::move(event));
    }
    return 0;
  }

  static int on_body(http_parser* p, const char* at, std::size_t n)
  {
    auto& r = self(p);
    if (r.m_current.body.size() + n > r.m_limits.max_body_bytes) {
      r.fail(413, "request body too large");
      return -1;
    }
    r.m_current.body.append(at, n);
    return 0;
  }

  static int on_message_complete(http_parser* p)
  {
    auto& r = self(p);
    r.m_current.keep_alive = http_should_keep_alive(p) != 0;
    r.m_in_request = false;
    ReaderEvent event;
    event.kind = ReaderEvent::Kind::request;
    event.request = std::move(r.m_current);
    r.m_current = Request{};
    r.m_events.push_back(std::move(event));
    return 0;
  }

  static const http_parser_settings& settings()
  {
    static const http_parser_settings s = [] {
      http_parser_settings init{};
      http_parser_settings_init(&init);
      init.on_message_begin = on_message_begin;
      init.on_url = on_url;
      init.on_header_field = on_header_field;
      init.on_header_value = on_header_value;
      init.on_headers_complete = on_headers_complete;
      init.on_body = on_body;
      init.on_message_complete = on_message_complete;
      return init;
    }();
    return s;
  }
};

RequestReader::RequestReader(ReaderLimits limits)
  : m_limits(limits),
    m_parser(std::make_unique<http_parser>())
{
  http_parser_init(m_parser.get(), HTTP_REQUEST);
  m_parser->data = this;
}

RequestReader::~RequestReader() = default;

void RequestReader::fail(int status, std::string message)
{
  if (!m_failed) {
    m_failed = true;
    m_error_status = status;
    m_error_message = std::move(message);
  }
}

std::vector<ReaderEvent> RequestReader::feed(std::string_view data)
{
  m_events.clear();
  if (m_failed) {
    return {};
  }
  const auto parsed = http_parser_execute(m_parser.get(), &Callbacks::settings(), data.data(), data.size());
  if (!m_failed) {
    if (m_parser->upgrade != 0) {
      fail(400, "protocol upgrade not supported");
    } else if (HTTP_PARSER_ERRNO(m_parser.get()) != HPE_OK || parsed != data.size()) {
      fail(400, fmt::format("malformed HTTP request ({})",
                            http_errno_name(HTTP_PARSER_ERRNO(m_parser.get()))));
    }
  }
  if (m_failed && !m_error_reported) {
    m_error_reported = true;
    ReaderEvent event;
    event.kind = ReaderEvent::Kind::error;
    event.status = m_error_status;
    event.message = m_error_message;
    m_events.push_back(std::move(event));
  }
  return std::move(m_events);
}

} // namespace iamtok::http
