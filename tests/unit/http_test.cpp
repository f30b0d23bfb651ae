// http/form.hpp: form and query decoding. http/message.hpp: request assembly on http-parser (limits, pipelining,
// strict framing) and response rendering.

#include "http/form.hpp"
#include "http/message.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace iamtok::http;

namespace {

// Every event `wire` produces when fed in pieces of `step` bytes.
std::vector<ReaderEvent> feed_in_pieces(RequestReader& reader, std::string_view wire, std::size_t step)
{
  std::vector<ReaderEvent> events;
  for (std::size_t i = 0; i < wire.size(); i += step) {
    for (auto& e : reader.feed(wire.substr(i, step))) {
      events.push_back(std::move(e));
    }
  }
  return events;
}

ReaderLimits strict_limits()
{
  return ReaderLimits{8 * 1024, 8 * 1024, true};
}

// The single error `wire` gets from a strict reader (fails the test otherwise).
ReaderEvent strict_error(std::string_view wire)
{
  RequestReader reader(strict_limits());
  auto events = reader.feed(wire);
  REQUIRE_FALSE(events.empty());
  REQUIRE(events.back().kind == ReaderEvent::Kind::error);
  CHECK(reader.failed());
  return events.back();
}

} // namespace

// ---------------------------------------------------------------------------
// HTTP request assembly

TEST_CASE("the reader assembles pipelined requests split across reads", "[http]")
{
  RequestReader reader;
  const std::string wire =
    "PUT /identity/v1/token?version=2025-08-26 HTTP/1.1\r\nHost: x\r\nMetadata-Flavor:  ibm \r\n"
    "Content-Length: 2\r\n\r\n{}"
    "GET /sim/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  const auto events = feed_in_pieces(reader, wire, 7);
  REQUIRE(events.size() == 2);
  REQUIRE(events[0].kind == ReaderEvent::Kind::request);
  const auto& first = events[0].request;
  CHECK(first.method == "PUT");
  CHECK(first.path == "/identity/v1/token");
  CHECK(first.query == "version=2025-08-26");
  REQUIRE(first.header("metadata-flavor") != nullptr);
  CHECK(*first.header("metadata-flavor") == "ibm");
  CHECK(first.body == "{}");
  CHECK(first.keep_alive);
  CHECK(events[1].request.method == "GET");
  CHECK_FALSE(events[1].request.keep_alive);
}

TEST_CASE("the reader rejects oversized bodies and headers, and garbage", "[http]")
{
  SECTION("body over the limit by Content-Length")
  {
    RequestReader reader(ReaderLimits{16 * 1024, 10});
    const auto events = reader.feed("POST /identity/token HTTP/1.1\r\nContent-Length: 11\r\n\r\n");
    REQUIRE(events.size() == 1);
    CHECK(events[0].kind == ReaderEvent::Kind::error);
    CHECK(events[0].status == 413);
    CHECK(reader.failed());
    CHECK(reader.feed("GET / HTTP/1.1\r\n\r\n").empty());
  }
  SECTION("chunked body over the limit")
  {
    RequestReader reader(ReaderLimits{16 * 1024, 10});
    const auto events =
      reader.feed("POST /identity/token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nc\r\n0123456789ab\r\n0\r\n\r\n");
    REQUIRE_FALSE(events.empty());
    CHECK(events.back().status == 413);
  }
  SECTION("headers over the limit")
  {
    RequestReader reader(ReaderLimits{64, 1024});
    const auto events = reader.feed("GET /sim/stats HTTP/1.1\r\nX-Long: " + std::string(100, 'a') + "\r\n\r\n");
    REQUIRE(events.size() == 1);
    CHECK(events[0].status == 431);
  }
  SECTION("not HTTP")
  {
    RequestReader reader;
    const auto events = reader.feed("hello there\r\n\r\n");
    REQUIRE(events.size() == 1);
    CHECK(events[0].kind == ReaderEvent::Kind::error);
    CHECK(events[0].status == 400);
  }
}

TEST_CASE("the reader asks for 100 Continue before a body the client holds back", "[http]")
{
  RequestReader reader;
  auto events = reader.feed("POST /identity/token HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
  REQUIRE(events.size() == 1);
  CHECK(events[0].kind == ReaderEvent::Kind::expect_continue);
  events = reader.feed("a=b");
  REQUIRE(events.size() == 1);
  CHECK(events[0].request.body == "a=b");
}

TEST_CASE("HTTP/1.0 requests are not kept alive", "[http]")
{
  RequestReader reader;
  const auto events = reader.feed("GET /sim/stats HTTP/1.0\r\n\r\n");
  REQUIRE(events.size() == 1);
  CHECK_FALSE(events[0].request.keep_alive);
}

TEST_CASE("responses carry Content-Length and Connection: close when not kept alive", "[http]")
{
  Response r;
  r.status = 503;
  r.headers.push_back({"Retry-After", "2"});
  r.body = "{}";
  CHECK(serialize(r, true) ==
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 2\r\n"
        "Content-Length: 2\r\n\r\n{}");
  CHECK(serialize(r, false).find("Connection: close\r\n") != std::string::npos);
  CHECK(media_type(" Application/X-WWW-Form-Urlencoded ; charset=UTF-8") == "application/x-www-form-urlencoded");
}

// ---------------------------------------------------------------------------
// Strict framing (the daemon's endpoint)

TEST_CASE("strict framing refuses Transfer-Encoding, with or without Content-Length", "[http][strict]")
{
  CHECK(strict_error("POST /identity/token HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3\r\nabc\r\n0\r\n\r\n")
          .status == 400);
  CHECK(strict_error("POST /identity/token HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
          .status == 400);
  CHECK(strict_error("POST /identity/token HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: identity\r\n"
                     "Content-Length: 3\r\n\r\nabc")
          .status == 400);
}

TEST_CASE("strict framing refuses a duplicate or invalid Content-Length", "[http][strict]")
{
  CHECK(strict_error("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")
          .status == 400);
  CHECK(strict_error("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")
          .status == 400);
  CHECK(strict_error("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3, 3\r\n\r\nabc").status == 400);
  CHECK(strict_error("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n").status == 400);
  CHECK(strict_error("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0x10\r\n\r\n").status == 400);
}

TEST_CASE("strict framing needs Host on HTTP/1.1 but not on HTTP/1.0", "[http][strict]")
{
  CHECK(strict_error("GET /healthz HTTP/1.1\r\n\r\n").status == 400);
  RequestReader reader(strict_limits());
  const auto events = reader.feed("GET /healthz HTTP/1.0\r\n\r\n");
  REQUIRE(events.size() == 1);
  CHECK(events[0].kind == ReaderEvent::Kind::request);
  CHECK_FALSE(events[0].request.keep_alive);
}

TEST_CASE("strict framing enforces the 8 KiB head and body limits", "[http][strict]")
{
  CHECK(strict_error("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + std::string(9000, 'a') + "\r\n\r\n")
          .status == 431);
  CHECK(strict_error("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 8193\r\n\r\n").status == 413);
  RequestReader reader(strict_limits());
  const auto events =
    reader.feed("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 8192\r\n\r\n" + std::string(8192, 'x'));
  REQUIRE(events.size() == 1);
  CHECK(events[0].request.body.size() == 8192);
}

TEST_CASE("strict framing keeps pipelined keep-alive requests apart, and stops at the first bad one", "[http][strict]")
{
  RequestReader reader(strict_limits());
  const std::string wire = "POST /a HTTP/1.1\r\nHost: 127.0.0.1:8911\r\nContent-Length: 5\r\n\r\nhello"
                           "GET /b HTTP/1.1\r\nHost: localhost\r\n\r\n"
                           "POST /c HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                           "GET /d HTTP/1.1\r\nHost: localhost\r\n\r\n";
  const auto events = feed_in_pieces(reader, wire, 5);
  REQUIRE(events.size() == 3);
  CHECK(events[0].request.path == "/a");
  CHECK(events[0].request.body == "hello");
  CHECK(events[0].request.keep_alive);
  CHECK(events[1].request.path == "/b");
  CHECK(events[2].kind == ReaderEvent::Kind::error);
  CHECK(events[2].status == 400);
}

TEST_CASE("the reader tells when a request is partly read", "[http]")
{
  RequestReader reader(strict_limits());
  CHECK_FALSE(reader.in_request());
  CHECK(reader.feed("GET /healthz HTTP/1.1\r\nHo").empty());
  CHECK(reader.in_request());
  CHECK(reader.feed("st: localhost\r\n\r\n").size() == 1);
  CHECK_FALSE(reader.in_request());
}

// ---------------------------------------------------------------------------
// Forms and query strings

TEST_CASE("form decoding handles percent escapes, plus signs and empty pieces", "[http][form]")
{
  const auto fields = parse_form("a=1&&crn=crn%3Av1%3Ax%2Fy&name=my+profile&flag&empty=&pct=100%25");
  REQUIRE(fields.has_value());
  REQUIRE(fields->size() == 6);
  CHECK(find_field(*fields, "a") == "1");
  CHECK(find_field(*fields, "crn") == "crn:v1:x/y");
  CHECK(find_field(*fields, "name") == "my profile");
  CHECK(find_field(*fields, "flag") == "");
  CHECK(find_field(*fields, "empty") == "");
  CHECK(find_field(*fields, "pct") == "100%");
  CHECK_FALSE(find_field(*fields, "missing").has_value());
  CHECK(count_field(*fields, "a") == 1);
}

TEST_CASE("form decoding rejects a truncated or non-hex percent escape", "[http][form]")
{
  CHECK_FALSE(parse_form("a=%4").has_value());
  CHECK_FALSE(parse_form("a=%").has_value());
  CHECK_FALSE(parse_form("a=%zz").has_value());
  CHECK(percent_decode("a+b", false) == "a+b");
}
