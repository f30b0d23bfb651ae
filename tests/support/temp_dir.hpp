#pragma once

// A fresh directory under $TMPDIR (or /tmp) for one test, removed with its
// contents when the object goes away. Shared by the unit and e2e tests.

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace iamtok::test {

class TempDir
{
public:
  TempDir()
  {
    std::string pattern = (std::filesystem::temp_directory_path() / "iamtok-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    m_path = pattern;
  }
  ~TempDir()
  {
    std::error_code ignored;
    std::filesystem::remove_all(m_path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return m_path; }
  std::filesystem::path operator/(std::string_view name) const { return m_path / name; }

  // The path of `name` inside the directory.
  std::string file(std::string_view name) const { return (m_path / name).string(); }

  // Writes `content` to `name` with `mode` and returns its path; throws if
  // the file cannot be written.
  std::string write(std::string_view name, const std::string& content, mode_t mode = 0600) const
  {
    const std::string path = file(name);
    std::ofstream(path, std::ios::binary) << content;
    if (::chmod(path.c_str(), mode) != 0) {
      throw std::runtime_error("cannot write " + path);
    }
    return path;
  }

private:
  std::filesystem::path m_path;
};

} // namespace iamtok::test
