// libFuzzer target: proto::parse_request must accept any line without
// crashing, and what it accepts must survive a round trip through
// format_request unchanged; errors must be bad_request with a message that
// never echoes the input.

#include "proto/codec.hpp"
#include "proto/json.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace iamtok::proto;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  const auto request = parse_request(line);
  if (!request) {
    const auto& error = request.error();
    if (error.code != ErrorCode::bad_request || error.message.empty()
        || error.message.find('\n') != std::string::npos || !iamtok::json::is_valid_utf8(error.message)) {
      std::abort();
    }
    return 0;
  }
  const bool has_profile = request->op == Op::token || request->op == Op::watch;
  if (has_profile && request->profile.empty()) {
    std::abort();
  }
  if (request->min_valid_s && (*request->min_valid_s < 0 || *request->min_valid_s > k_max_min_valid_s)) {
    std::abort();
  }
  const auto formatted = format_request(*request);
  if (formatted.find('\n') != std::string::npos && formatted.find('\n') + 1 != formatted.size()) {
    std::abort();
  }
  const std::string_view again_line =
    !formatted.empty() && formatted.back() == '\n' ? std::string_view(formatted).substr(0, formatted.size() - 1)
                                                   : std::string_view(formatted);
  if (again_line.size() > k_max_line_bytes * 6 + 64 || !iamtok::json::is_valid_utf8(again_line)) {
    std::abort();
  }
  const auto again = parse_request(again_line);
  if (!again) {
    std::abort();
  }
  // Fields that do not apply to the op are not carried by format_request.
  Request expected = *request;
  if (!has_profile) {
    expected.profile.clear();
    expected.min_valid_s.reset();
  }
  if (!(*again == expected)) {
    std::abort();
  }
  if (format_request(*again) != formatted) {
    std::abort();
  }
  return 0;
}
