// libFuzzer target: the upstream reply, error and Retry-After parsers must
// accept any bytes without crashing, and what they accept must be sane.

#include "daemon/upstream/replies.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace iamtok::upstream;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  for (const auto call : {Call::imds_token, Call::imds_iam_token, Call::iam_token}) {
    const auto token = parse_token_reply(call, input);
    if (token) {
      const auto value = token->token.expose();
      if (value.empty() || token->expires_in.count() <= 0 || token->expires_in > k_max_expires_in) {
        std::abort();
      }
      for (const char c : value) {
        if (c <= 0x20 || c >= 0x7f) {
          std::abort();
        }
      }
    } else if (token.error().failure != iamtok::engine::Failure::malformed) {
      std::abort();
    }
    const auto error = parse_error_reply(call, 400 + static_cast<int>(size % 200), input, input, 1795420800);
    if (error.code.size() > 64 + 3 || error.request_id.size() > 128 + 3) {
      std::abort();
    }
    if (error.retry_after && (error.retry_after->count() < 0 || error.retry_after->count() > 86400)) {
      std::abort();
    }
  }
  if (sanitize_message(input).size() > 200 + 3) {
    std::abort();
  }
  (void)parse_http_date(input);
  return 0;
}
