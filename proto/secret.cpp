#include "proto/secret.hpp"

#include <cstring>

namespace iamtok {

void wipe_string(std::string& s) noexcept
{
  // resize() to the capacity never reallocates, so this reaches every byte
  // the buffer ever held; explicit_bzero is not optimised away.
  s.resize(s.capacity());
  explicit_bzero(s.data(), s.size());
  s.clear();
}

void Secret::wipe() noexcept
{
  wipe_string(m_value);
}

Secret& Secret::operator=(const Secret& other)
{
  if (this != &other) {
    wipe();
    m_value = other.m_value;
  }
  return *this;
}

Secret& Secret::operator=(Secret&& other) noexcept
{
  if (this != &other) {
    wipe();
    m_value = std::move(other.m_value);
    other.wipe();
  }
  return *this;
}

} // namespace iamtok
