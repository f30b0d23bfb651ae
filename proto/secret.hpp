#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace iamtok {

// A bearer credential (access token, CR token). Its formatter prints
// "<redacted>", so a log line cannot leak it by accident, and its storage is
// wiped when it is destroyed, overwritten or moved from.
class Secret
{
public:
  Secret() = default;
  explicit Secret(std::string value) noexcept : m_value(std::move(value)) {}
  Secret(const Secret& other) : m_value(other.m_value) {}
  Secret(Secret&& other) noexcept : m_value(std::move(other.m_value)) { other.wipe(); }
  Secret& operator=(const Secret& other);
  Secret& operator=(Secret&& other) noexcept;
  ~Secret() { wipe(); }

  // The value itself: only for the wire (HTTP body, socket reply).
  std::string_view expose() const noexcept { return m_value; }
  bool empty() const noexcept { return m_value.empty(); }
  std::size_t size() const noexcept { return m_value.size(); }

  friend bool operator==(const Secret& a, const Secret& b) noexcept { return a.m_value == b.m_value; }

  // Zeroes the whole buffer (including spare capacity) and empties it.
  void wipe() noexcept;

private:
  std::string m_value;
};

// Zeroes a std::string that held a secret (a formatted reply line, a request
// body) before it is freed or reused.
void wipe_string(std::string& s) noexcept;

} // namespace iamtok

template<> struct fmt::formatter<iamtok::Secret> : fmt::formatter<std::string_view>
{
  template<typename FormatContext>
  auto format(const iamtok::Secret&, FormatContext& ctx) const
  {
    return fmt::formatter<std::string_view>::format("<redacted>", ctx);
  }
};
