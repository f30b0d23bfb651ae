// iamtok-floor: the benchmark's bare AF_UNIX line server (the floor).

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
    } else if (numeric && arg == "--reply-bytes" && number >= 32 && number <= 65'536) {
      options.reply_bytes = number;
    } else if (numeric && arg == "--lifetime-s" && number > 0 && number <= 3600) {
      options.lifetime = std::chrono::seconds(number);
    } else {
      std::fprintf(stderr, "iamtok-floor: bad option %s %s\n", argv[i], argv[i + 1]);
      return 64;
    }
  }
  if (options.socket_path.empty() || argc % 2 == 0) {
    std::fputs("usage: iamtok-floor --socket PATH [--reply-bytes N] [--lifetime-s N]\n", stderr);
    return 64;
  }
  return iamtok::bench::run_floor(options);
}
