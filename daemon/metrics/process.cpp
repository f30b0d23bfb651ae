#include "daemon/metrics/metrics.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <iterator>
#include <sstream>

namespace iamtok::metrics {

namespace {

std::string read_file(const char* path)
{
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::optional<std::int64_t> to_int(std::string_view text)
{
  std::int64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size()) {
    return std::nullopt;
  }
  return value;
}

// Entries of /proc/self/fd, less the one opendir() itself holds.
std::optional<double> count_open_fds()
{
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) {
    return std::nullopt;
  }
  double count = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') {
      ++count;
    }
  }
  ::closedir(dir);
  return count - 1;
}

} // namespace

std::optional<std::int64_t> parse_boot_time(std::string_view proc_stat)
{
  std::size_t at = 0;
  while (at < proc_stat.size()) {
    const std::size_t end = std::min(proc_stat.find('\n', at), proc_stat.size());
    const std::string_view line = proc_stat.substr(at, end - at);
    if (line.substr(0, 6) == "btime ") {
      return to_int(line.substr(6));
    }
    at = end + 1;
  }
  return std::nullopt;
}

ProcessStats parse_proc_stat(std::string_view stat, long ticks_per_second, long page_size,
                             std::optional<std::int64_t> boot_time)
{
  ProcessStats stats;
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so the
  // fields are counted from the last ')'. Field 3 (state) is fields[0].
  const std::size_t paren = stat.rfind(')');
  if (paren == std::string_view::npos || ticks_per_second <= 0 || page_size <= 0) {
    return stats;
  }
  std::vector<std::string_view> fields;
  std::size_t at = paren + 1;
  while (at < stat.size()) {
    while (at < stat.size() && (stat[at] == ' ' || stat[at] == '\n')) {
      ++at;
    }
    const std::size_t end = std::min(stat.find_first_of(" \n", at), stat.size());
    if (end > at) {
      fields.push_back(stat.substr(at, end - at));
    }
    at = end;
  }
  // man 5 proc: utime (14), stime (15), starttime (22), vsize (23), rss (24).
  const auto field = [&](std::size_t number) -> std::optional<std::int64_t> {
    return number - 3 < fields.size() ? to_int(fields[number - 3]) : std::nullopt;
  };
  const auto utime = field(14);
  const auto stime = field(15);
  if (utime && stime) {
    stats.cpu_seconds = static_cast<double>(*utime + *stime) / static_cast<double>(ticks_per_second);
  }
  if (const auto start = field(22); start && boot_time) {
    stats.start_time_seconds =
      static_cast<double>(*boot_time) + static_cast<double>(*start) / static_cast<double>(ticks_per_second);
  }
  if (const auto vsize = field(23)) {
    stats.virtual_bytes = static_cast<double>(*vsize);
  }
  if (const auto rss = field(24)) {
    stats.resident_bytes = static_cast<double>(*rss) * static_cast<double>(page_size);
  }
  return stats;
}

ProcessStats read_process_stats()
{
  ProcessStats stats = parse_proc_stat(read_file("/proc/self/stat"), ::sysconf(_SC_CLK_TCK),
                                       ::sysconf(_SC_PAGESIZE), parse_boot_time(read_file("/proc/stat")));
  stats.open_fds = count_open_fds();
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    stats.max_fds = static_cast<double>(limit.rlim_cur);
  }
  return stats;
}

} // namespace iamtok::metrics
