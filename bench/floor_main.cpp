// iamtok-floor: the benchmark's bare AF_UNIX line server, or (--http) its bare
// HTTP/1.1 keep-alive server: the floors.

#include "bench/floor.hpp"

#include <charconv>
#include <cstdio>
#include <string_view>

int main(int argc, char** argv)
{
  iamtok::bench::FloorOptions options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view arg = argv[i];
    const std::string_view value = argv[i + 1];
    std::size_t number = 0;
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), number);
    const bool numeric = ec == std::errc() && ptr == value.data() + value.size();
    if (arg == "--socket") {
      options.socket_path = value;
    } else if (arg == "--http") {
      // HOST:PORT, the host an IPv4 loopback literal (the floor serves loopback only).
      const auto colon = value.rfind(':');
      std::size_t port = 0;
      const auto digits = colon == std::string_view::npos ? std::string_view() : value.substr(colon + 1);
      auto [pptr, pec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
      if (colon == std::string_view::npos || !value.starts_with("127.") || pec != std::errc()
          || pptr != digits.data() + digits.size() || digits.empty() || port > 65'535) {
        std::fprintf(stderr, "iamtok-floor: bad --http %s (want 127.x.y.z:PORT)\n", argv[i + 1]);
        return 64;
      }
      options.http_host = value.substr(0, colon);
      options.http_port = static_cast<std::uint16_t>(port);
    } else if (arg == "--port-file") {
      options.port_file = value;
    } else if (numeric && arg == "--reply-bytes" && number >= 32 && number <= 65'536) {
      options.reply_bytes = number;
    } else if (numeric && arg == "--lifetime-s" && number > 0 && number <= 3600) {
      options.lifetime = std::chrono::seconds(number);
    } else {
      std::fprintf(stderr, "iamtok-floor: bad option %s %s\n", argv[i], argv[i + 1]);
      return 64;
    }
  }
  if (options.socket_path.empty() == options.http_host.empty() || argc % 2 == 0) {
    std::fputs("usage: iamtok-floor (--socket PATH | --http 127.0.0.1:PORT [--port-file PATH])\n"
               "                    [--reply-bytes N] [--lifetime-s N]\n",
               stderr);
    return 64;
  }
  return options.http_host.empty() ? iamtok::bench::run_floor(options) : iamtok::bench::run_http_floor(options);
}
