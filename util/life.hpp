#pragma once

// A life token for callbacks that may outlive their owner: the owner holds a
// Life, each callback captures a Life::Watch and checks alive() before it
// touches the owner. Single-threaded (one io_context thread).

#include <memory>

namespace iamtok::util {

class Life
{
public:
  class Watch
  {
  public:
    Watch() = default;
    // True while the Life it came from exists (and has not been reset()).
    bool alive() const noexcept { return !m_token.expired(); }

  private:
    friend class Life;
    explicit Watch(std::weak_ptr<const char> token) : m_token(std::move(token)) {}
    std::weak_ptr<const char> m_token;
  };

  Life() = default;
  Life(const Life&) = delete;
  Life& operator=(const Life&) = delete;

  // A watch that reports alive() until this Life dies or is reset().
  Watch watch() const { return Watch(m_token); }

  // Ends every watch handed out so far; later watches are alive again.
  void reset() { m_token = std::make_shared<const char>('\0'); }

private:
  std::shared_ptr<const char> m_token = std::make_shared<const char>('\0');
};

} // namespace iamtok::util
