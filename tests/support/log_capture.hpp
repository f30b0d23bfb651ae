#pragma once

// Captures the daemon logger's lines instead of writing them, while alive;
// then restores the previous sink, level and style. For tests only: the
// production logger knows nothing of it (daemon/log/log.hpp's setters).

#include "daemon/log/log.hpp"

#include <memory>
#include <string>
#include <vector>

namespace iamtok::test {

class LogCapture
{
public:
  explicit LogCapture(log::Level at = log::Level::debug, log::Style style = log::Style::plain)
    : m_lines(std::make_shared<std::vector<std::string>>()),
      m_previous_sink(log::set_sink([lines = m_lines](log::Level, std::string_view line) {
        lines->emplace_back(line);
      })),
      m_previous_level(log::set_level(at)),
      m_previous_style(log::set_style(style))
  {
  }
  ~LogCapture()
  {
    log::set_style(m_previous_style);
    log::set_level(m_previous_level);
    log::set_sink(std::move(m_previous_sink));
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  const std::vector<std::string>& lines() const { return *m_lines; }

private:
  std::shared_ptr<std::vector<std::string>> m_lines;
  log::Sink m_previous_sink;
  log::Level m_previous_level;
  log::Style m_previous_style;
};

} // namespace iamtok::test
