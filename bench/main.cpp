// iamtok-bench: drives a Unix socket with NDJSON requests, or a loopback HTTP
// server with IAM-style token requests, and prints one key=value line with
// the throughput and latency quantiles (bench/run.sh).

#include "bench/load.hpp"

#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

namespace {

constexpr const char* k_usage =
    "usage: iamtok-bench (--socket PATH [--request JSON] | --http PORT --profile-id ID)\n"
    "                    [--connections N] [--depth N] [--requests N]\n"
    "                    [--duration-ms N] [--hold-ms N] [--grace-ms N]\n"
    "  --http PORT: POST /identity/token to 127.0.0.1:PORT (IBM's ContainerAuthenticator's request)\n";

bool parse_number(std::string_view text, std::uint64_t& out)
{
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end;
}

void announce_hold()
{
  std::printf("holding\n");
  std::fflush(stdout);
}

} // namespace

int main(int argc, char** argv)
{
  iamtok::bench::LoadOptions options;
  std::string profile_id;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) {
      std::fputs(k_usage, stderr);
      return 64;
    }
    const std::string_view value = argv[++i];
    std::uint64_t number = 0;
    const bool numeric = parse_number(value, number);
    if (arg == "--socket") {
      options.socket_path = value;
    } else if (arg == "--request") {
      options.request_line = value;
    } else if (numeric && arg == "--http" && number > 0 && number <= 65'535) {
      options.http_port = static_cast<std::uint16_t>(number);
    } else if (arg == "--profile-id") {
      profile_id = value;
    } else if (numeric && arg == "--connections" && number > 0 && number <= 100'000) {
      options.connections = static_cast<std::uint32_t>(number);
    } else if (numeric && arg == "--depth" && number > 0 && number <= 10'000) {
      options.depth = static_cast<std::uint32_t>(number);
    } else if (numeric && arg == "--requests" && number <= 100'000'000) {
      options.requests = number;
    } else if (numeric && arg == "--duration-ms" && number <= 600'000) {
      options.duration = std::chrono::milliseconds(number);
    } else if (numeric && arg == "--hold-ms" && number <= 600'000) {
      options.hold = std::chrono::milliseconds(number);
    } else if (numeric && arg == "--grace-ms" && number <= 600'000) {
      options.grace = std::chrono::milliseconds(number);
    } else {
      std::fprintf(stderr, "iamtok-bench: bad option %s %s\n%s", argv[i - 1], argv[i], k_usage);
      return 64;
    }
  }
  if (options.socket_path.empty() == (options.http_port == 0) || (options.http_port != 0 && profile_id.empty())) {
    std::fputs(k_usage, stderr);
    return 64;
  }
  if (options.http_port != 0) {
    options.http_request = iamtok::bench::iam_token_request(options.http_host, options.http_port, profile_id);
  }
  const auto result = iamtok::bench::run_load(options, &announce_hold);
  std::printf("connections=%u connected=%u depth=%u sent=%llu ok=%llu errors=%llu seconds=%.3f "
              "throughput=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f reply_bytes=%zu\n",
              options.connections, result.connected, options.depth,
              static_cast<unsigned long long>(result.sent),
              static_cast<unsigned long long>(result.ok),
              static_cast<unsigned long long>(result.errors), result.seconds,
              result.throughput(), result.quantile_us(0.5), result.quantile_us(0.99),
              result.quantile_us(0.999), result.quantile_us(1.0), result.reply_bytes);
  return 0;
}
