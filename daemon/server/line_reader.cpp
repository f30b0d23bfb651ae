#include "daemon/server/line_reader.hpp"

#include <algorithm>

namespace iamtok::server {

LineClock::time_point read_deadline(const LineLimits& limits, LineClock::time_point last_request,
                                    std::optional<LineClock::time_point> partial_since)
{
  auto deadline = last_request + limits.idle_timeout;
  if (partial_since) {
    deadline = std::min(deadline, *partial_since + limits.partial_line_timeout);
  }
  return deadline;
}

bool LineReader::has_line()
{
  // A '\n' past the limit does not end a line: the request is too long.
  m_newline = std::string_view(m_buffer).substr(0, m_limits->max_line_bytes + 1).find('\n');
  return m_newline != std::string_view::npos;
}

std::string LineReader::take_line(LineClock::time_point now)
{
  std::string line = m_buffer.substr(0, m_newline);
  m_buffer.erase(0, m_newline + 1);
  m_newline = std::string::npos;
  m_partial_since.reset();
  m_last_request = now;
  return line;
}

bool LineReader::too_long() const
{
  return m_buffer.size() > m_limits->max_line_bytes
         && std::string_view(m_buffer).substr(0, m_limits->max_line_bytes + 1).find('\n') == std::string_view::npos;
}

LineClock::time_point LineReader::wait(LineClock::time_point now)
{
  if (m_buffer.empty()) {
    std::string().swap(m_buffer);
  } else if (!m_partial_since) {
    m_partial_since = now;
  }
  return read_deadline(*m_limits, m_last_request, m_partial_since);
}

} // namespace iamtok::server
