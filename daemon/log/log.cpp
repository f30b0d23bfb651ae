#include "daemon/log/log.hpp"

#include <cerrno>
#include <cstdlib>
#include <mutex>

#include <unistd.h>

namespace iamtok::log {

namespace {

struct State
{
  std::mutex mutex;
  Level level = Level::info;
  Style style = style_from_environment();
  Sink sink = stderr_sink;
};

State& state()
{
  static State s;
  return s;
}

void append_escaped(std::string& out, std::string_view text)
{
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte != 0x7f) {
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += fmt::format("\\x{:02x}", byte);
    }
  }
}

} // namespace

std::optional<Level> parse_level(std::string_view text)
{
  if (text == "debug") {
    return Level::debug;
  }
  if (text == "info") {
    return Level::info;
  }
  if (text == "warn" || text == "warning") {
    return Level::warn;
  }
  if (text == "error") {
    return Level::error;
  }
  return std::nullopt;
}

std::string_view to_string(Level level)
{
  switch (level) {
  case Level::debug: return "debug";
  case Level::info: return "info";
  case Level::warn: return "warn";
  case Level::error: return "error";
  }
  return "info";
}

Style style_from_environment()
{
  const char* journal = std::getenv("JOURNAL_STREAM");
  return journal && *journal ? Style::journal : Style::plain;
}

std::string format_line(Level level, Style style, std::string_view message)
{
  std::string_view prefix;
  if (style == Style::journal) {
    // sd-daemon.h: SD_DEBUG <7>, SD_INFO <6>, SD_WARNING <4>, SD_ERR <3>.
    switch (level) {
    case Level::debug: prefix = "<7>"; break;
    case Level::info: prefix = "<6>"; break;
    case Level::warn: prefix = "<4>"; break;
    case Level::error: prefix = "<3>"; break;
    }
  } else {
    switch (level) {
    case Level::debug: prefix = "DEBUG "; break;
    case Level::info: prefix = "INFO "; break;
    case Level::warn: prefix = "WARN "; break;
    case Level::error: prefix = "ERROR "; break;
    }
  }
  std::string line;
  line.reserve(prefix.size() + message.size());
  line += prefix;
  append_escaped(line, message);
  return line;
}

void stderr_sink(Level, std::string_view line)
{
  std::string out;
  out.reserve(line.size() + 1);
  out += line;
  out += '\n';
  // One write(2) per line so concurrent writers do not interleave; bounded
  // retries on EINTR and short writes. A failing stderr is ignored.
  std::string_view rest = out;
  for (int attempt = 0; attempt < 100 && !rest.empty(); ++attempt) {
    const ssize_t n = ::write(STDERR_FILENO, rest.data(), rest.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return;
    }
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
}

Level set_level(Level level)
{
  auto& s = state();
  const std::lock_guard lock(s.mutex);
  return std::exchange(s.level, level);
}

Level level()
{
  auto& s = state();
  const std::lock_guard lock(s.mutex);
  return s.level;
}

Style set_style(Style style)
{
  auto& s = state();
  const std::lock_guard lock(s.mutex);
  return std::exchange(s.style, style);
}

Sink set_sink(Sink sink)
{
  auto& s = state();
  const std::lock_guard lock(s.mutex);
  return std::exchange(s.sink, sink ? std::move(sink) : Sink(stderr_sink));
}

bool enabled(Level at_level)
{
  return at_level >= level();
}

void write(Level at_level, std::string_view message)
{
  auto& s = state();
  const std::lock_guard lock(s.mutex);
  const std::string line = format_line(at_level, s.style, message);
  s.sink(at_level, line);
}

} // namespace iamtok::log
