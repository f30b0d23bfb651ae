// libFuzzer target: the simulator's HTTP side. The input is one connection's
// bytes: RequestReader must assemble the same requests whether the bytes come
// at once or in pieces, and every complete request goes through
// Simulator::handle (with a fixed clock) and serialize() without crashing.
// The form, base64url and token parsers get the raw bytes too.

#include "http/form.hpp"
#include "http/message.hpp"
#include "sim/jwt.hpp"
#include "sim/simulator.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace iamtok::sim;
using namespace iamtok::http;

namespace {

// Fixed "now" for the simulator: 2026-11-23T12:00:00Z.
constexpr std::int64_t k_now = 1795435200;

// Small limits so the size checks are reachable with short inputs.
constexpr ReaderLimits k_limits{1024, 2048};

bool same_events(const std::vector<ReaderEvent>& a, const std::vector<ReaderEvent>& b)
{
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto& x = a[i];
    const auto& y = b[i];
    // Input that is both too large and malformed may fail either way first,
    // depending on where the pieces end: any error status is fine then.
    if (x.kind != y.kind || (x.kind != ReaderEvent::Kind::error && x.status != y.status)
        || x.request.method != y.request.method
        || x.request.target != y.request.target || x.request.body != y.request.body
        || x.request.keep_alive != y.request.keep_alive || x.request.headers.size() != y.request.headers.size()) {
      return false;
    }
    for (std::size_t h = 0; h < x.request.headers.size(); ++h) {
      if (x.request.headers[h].name != y.request.headers[h].name
          || x.request.headers[h].value != y.request.headers[h].value) {
        return false;
      }
    }
  }
  return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  RequestReader whole(k_limits);
  const auto events = whole.feed(input);

  // The same bytes in pieces of 1..7 bytes, the sizes taken from the input.
  RequestReader pieces(k_limits);
  std::vector<ReaderEvent> piece_events;
  for (std::size_t at = 0, i = 0; at < input.size(); ++i) {
    const std::size_t n = std::min<std::size_t>(input.size() - at, 1 + data[i % size] % 7);
    for (auto& event : pieces.feed(input.substr(at, n))) {
      piece_events.push_back(std::move(event));
    }
    at += n;
  }
  if (!same_events(events, piece_events) || whole.failed() != pieces.failed()) {
    std::abort();
  }

  Simulator simulator({}, [] { return std::chrono::system_clock::time_point(std::chrono::seconds(k_now)); });
  for (std::size_t i = 0; i < events.size(); ++i) {
    const auto& event = events[i];
    if (event.kind == ReaderEvent::Kind::error) {
      if (i + 1 != events.size() || event.message.empty()
          || (event.status != 400 && event.status != 413 && event.status != 431)) {
        std::abort();
      }
      continue;
    }
    if (event.kind != ReaderEvent::Kind::request) {
      continue;
    }
    const auto& request = event.request;
    if (request.path.size() > request.target.size() || request.body.size() > k_limits.max_body_bytes) {
      std::abort();
    }
    const auto action = simulator.handle(request);
    if (action.kind == Action::Kind::respond) {
      const auto wire = serialize(action.response, request.keep_alive);
      if (!wire.starts_with("HTTP/1.1 ") || wire.find("\r\n\r\n") == std::string::npos) {
        std::abort();
      }
      (void)media_type(request.header("Content-Type") ? *request.header("Content-Type") : "");
    }
  }

  (void)parse_form(input);
  (void)percent_decode(input, false);
  (void)base64url_decode(input);
  (void)verify_token(TokenKind::identity, input, k_now);
  (void)verify_token(TokenKind::access, input, k_now);
  return 0;
}
