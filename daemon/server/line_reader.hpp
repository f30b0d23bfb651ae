#pragma once

// The socket's request framing (docs/protocol.md): NDJSON lines of at most
// max_line_bytes before their '\n', the idle timeout since the last request
// and the partial-line timeout since the first byte of an unfinished one.
// No socket and no clock: the session feeds it the bytes it read and the
// times it took; the deadline is a pure function of those times.
//
// Built for the session's hot path (docs/benchmarks.md): bytes can be read
// straight into the buffer (prepare/commit), and an empty reader frees its
// buffer before the session waits, so an idle connection holds none.

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace iamtok::server {

using LineClock = std::chrono::steady_clock;

struct LineLimits
{
  std::size_t max_line_bytes = 4096;                       // before the '\n'
  std::chrono::milliseconds idle_timeout{60'000};          // no request for this long
  std::chrono::milliseconds partial_line_timeout{10'000};  // a partial line held this long
};

// When a wait for more bytes ends: the idle deadline from `last_request`,
// or the partial-line one from `partial_since` (if set) when that is sooner.
LineClock::time_point read_deadline(const LineLimits& limits, LineClock::time_point last_request,
                                    std::optional<LineClock::time_point> partial_since);

class LineReader
{
public:
  // `limits` must outlive the reader. `now`: the connection's start, from
  // which the first idle timeout runs.
  LineReader(const LineLimits& limits, LineClock::time_point now) : m_limits(&limits), m_last_request(now) {}

  // Appends bytes read from the peer.
  void append(std::string_view bytes) { m_buffer.append(bytes); }
  // Reads straight into the buffer: `read(data, n)` gets room for `n` more
  // bytes at its end and returns how many it stored there (0 to n), which
  // fill() returns too.
  template<typename Read> std::size_t fill(std::size_t n, Read&& read)
  {
    const std::size_t held = m_buffer.size();
    m_buffer.resize(held + n);
    const std::size_t got = read(m_buffer.data() + held, n);
    m_buffer.resize(held + got);
    return got;
  }

  // True if a complete line within the limit is buffered.
  bool has_line();
  // Takes that line (without its '\n'); `now` becomes the time of the last
  // request and the partial-line clock stops. Only after has_line().
  std::string take_line(LineClock::time_point now);

  // True if the buffered bytes cannot become a line within the limit (more
  // than max_line_bytes before any '\n'): the request is too large.
  bool too_long() const;

  // Before waiting for more bytes at `now`: starts the partial-line clock if
  // bytes of an unfinished line are held, frees the buffer if none are, and
  // returns when the wait must end (read_deadline()).
  LineClock::time_point wait(LineClock::time_point now);

  bool empty() const { return m_buffer.empty(); }
  // True if the partial-line clock runs (the timeout that ends a wait is
  // then the partial-line one or the idle one, whichever came first).
  bool partial() const { return m_partial_since.has_value(); }
  // The bytes of an unfinished line (at the end of the stream).
  std::string_view rest() const { return m_buffer; }
  // The buffer's capacity (an empty string's once an empty reader waited).
  std::size_t capacity() const { return m_buffer.capacity(); }

private:
  const LineLimits* m_limits;
  // Holds bytes only while a request is being read or answered.
  std::string m_buffer;
  std::size_t m_newline = std::string::npos; // found by has_line()
  LineClock::time_point m_last_request;
  std::optional<LineClock::time_point> m_partial_since;
};

} // namespace iamtok::server
