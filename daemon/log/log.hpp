#pragma once

// The daemon's logger: one line per event on stderr. Under systemd (env
// JOURNAL_STREAM set) each line starts with an sd-daemon priority ("<6>"),
// otherwise with a plain level word ("INFO"). Messages are fmt format
// strings; a Secret argument prints as <redacted>. Control characters in a
// message are escaped, so an event never spans two lines.

#include <fmt/format.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace iamtok::log {

enum class Level { debug, info, warn, error };

// How a line is prefixed: plain level words, or sd-daemon priorities.
enum class Style { plain, journal };

// "debug", "info", "warn", "error" (also "warning"); nullopt for anything else.
std::optional<Level> parse_level(std::string_view text);
// "debug", "info", "warn" or "error".
std::string_view to_string(Level level);

// Style::journal when env JOURNAL_STREAM is set (stderr is the journal),
// else Style::plain.
Style style_from_environment();

// The finished line for an event, without the newline: "<4>message" or
// "WARN message". Control characters in `message` are escaped ("\n" -> "\\n").
std::string format_line(Level level, Style style, std::string_view message);

// Receives every finished line (no newline) at or above the current level.
// Called with a lock held: a sink must not log.
using Sink = std::function<void(Level level, std::string_view line)>;

// The default sink: writes the line and a newline to stderr in one write(2).
void stderr_sink(Level level, std::string_view line);

// Global settings; initially Level::info, style_from_environment() and
// stderr_sink. Each setter returns the previous value (for tests to restore).
Level set_level(Level level);
Level level();
Style set_style(Style style);
Sink set_sink(Sink sink);

// True if an event at `level` would be written.
bool enabled(Level level);

// Formats and emits one event at `level`, regardless of the current level.
void write(Level level, std::string_view message);

// Emits one event at `level` if enabled: log::at(Level::warn, "x = {}", x).
template<typename... Args>
void at(Level level, fmt::format_string<Args...> format, Args&&... args)
{
  if (enabled(level)) {
    write(level, fmt::format(format, std::forward<Args>(args)...));
  }
}

template<typename... Args>
void debug(fmt::format_string<Args...> format, Args&&... args)
{
  at(Level::debug, format, std::forward<Args>(args)...);
}

template<typename... Args>
void info(fmt::format_string<Args...> format, Args&&... args)
{
  at(Level::info, format, std::forward<Args>(args)...);
}

template<typename... Args>
void warn(fmt::format_string<Args...> format, Args&&... args)
{
  at(Level::warn, format, std::forward<Args>(args)...);
}

template<typename... Args>
void error(fmt::format_string<Args...> format, Args&&... args)
{
  at(Level::error, format, std::forward<Args>(args)...);
}

} // namespace iamtok::log
