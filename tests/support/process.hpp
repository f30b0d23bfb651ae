#pragma once

// What every test that starts a program needs: a NULL-terminated char*
// array over owned strings (argv, envp), the test's own environment less
// the variables the program under test would otherwise pick up, and a
// bounded wait for what the program does.

#include <unistd.h>

#include <chrono>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace iamtok::test {

// Owned strings with the char* array execve() and posix_spawn() take.
class CStrings
{
public:
  explicit CStrings(std::vector<std::string> strings) : m_strings(std::move(strings))
  {
    for (auto& s : m_strings) {
      m_pointers.push_back(s.data());
    }
    m_pointers.push_back(nullptr);
  }
  CStrings(const CStrings&) = delete;
  CStrings& operator=(const CStrings&) = delete;

  char** data() noexcept { return m_pointers.data(); }
  const std::string& front() const { return m_strings.front(); }

private:
  std::vector<std::string> m_strings;
  std::vector<char*> m_pointers;
};

// `program` followed by `args`.
inline std::vector<std::string> command_line(const std::string& program, const std::vector<std::string>& args)
{
  std::vector<std::string> out{program};
  out.insert(out.end(), args.begin(), args.end());
  return out;
}

// The test's environment without the variables named in `drop`, then
// `extra` ("NAME=value" entries).
inline std::vector<std::string> environment_without(const std::vector<std::string_view>& drop,
                                                    const std::vector<std::string>& extra = {})
{
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const auto name = entry.substr(0, entry.find('='));
    bool dropped = false;
    for (const auto d : drop) {
      dropped = dropped || d == name;
    }
    if (!dropped) {
      out.emplace_back(entry);
    }
  }
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

// Polls `done` every `poll` until it returns true or `timeout` passes; the
// caller derives `timeout` from what it waits for.
template<typename Predicate>
bool eventually(Predicate done, std::chrono::milliseconds timeout,
                std::chrono::milliseconds poll = std::chrono::milliseconds(20))
{
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(poll);
  }
  return true;
}

} // namespace iamtok::test
