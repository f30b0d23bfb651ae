// libFuzzer target: proto::parse_reply and parse_status_reply must accept any
// line without crashing; what they accept must survive the matching reply
// builder and parse back the same; messages must be one line of UTF-8.

#include "proto/codec.hpp"
#include "proto/json.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace iamtok::proto;

namespace {

void check_message(const std::string& message)
{
  if (message.empty() || message.find('\n') != std::string::npos || !iamtok::json::is_valid_utf8(message)) {
    std::abort();
  }
}

void check_reply(const Reply& reply)
{
  if (reply.is_token()) {
    const auto line = format_token_reply(reply.id, reply.profile, reply.access_token, reply.expires_at,
                                         reply.expires_in);
    const auto again = parse_reply(line);
    if (!again || !again->is_token() || !(again->access_token == reply.access_token)
        || again->profile != reply.profile || again->expires_at != reply.expires_at
        || again->expires_in != reply.expires_in || again->id != reply.id) {
      std::abort();
    }
  } else if (!reply.ok) {
    const auto code = reply.error_code();
    if (!code) {
      return; // a code this build does not know: nothing to build it from
    }
    const ErrorInfo info{*code, reply.message, reply.retry_after_s, reply.upstream};
    const auto again = parse_reply(format_error_reply(reply.id, info));
    if (!again || again->ok || again->code != reply.code || again->message != reply.message
        || again->retry_after_s != reply.retry_after_s || !(again->upstream == reply.upstream)
        || again->id != reply.id) {
      std::abort();
    }
  } else {
    const auto again = parse_reply(format_ok_reply(reply.id));
    if (!again || !again->ok || again->is_token() || again->id != reply.id) {
      std::abort();
    }
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
  const std::string_view line(reinterpret_cast<const char*>(data), size);

  const auto reply = parse_reply(line);
  if (reply) {
    check_reply(*reply);
  } else {
    check_message(reply.error());
  }

  const auto status = parse_status_reply(line);
  if (status) {
    if (!reply || !reply->ok) {
      std::abort(); // a status reply is an ok reply
    }
    const auto again = parse_status_reply(format_status_reply(reply->id, *status));
    if (!again || !(*again == *status)) {
      std::abort();
    }
  } else {
    check_message(status.error());
  }
  return 0;
}
