#pragma once

// Watches the pod's CR-token file with inotify, so a token kubelet has just
// written is used at once instead of at the next backoff step. The parent
// directory is watched, not the file: that sees plain writes, atomic renames
// onto the name and kubelet's `..data` symlink swap (which never touches the
// file's own name). Runs on the io_context; no thread, no polling.

#include "util/life.hpp"

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace iamtok::upstream {

class TokenFileWatcher
{
public:
  // Identifies the content a path currently leads to (symlinks followed):
  // device, inode, size and modification time, or "absent". Never reads the
  // file, so never holds the token.
  struct Identity
  {
    bool present = false;
    unsigned long long device = 0;
    unsigned long long inode = 0;
    long long size = 0;
    long long mtime_ns = 0;
    friend bool operator==(const Identity&, const Identity&) = default;
  };
  static Identity identity_of(const std::string& path);

  // Watches the parent directories of `paths` (the configured path, or every
  // default path). Calls `on_change` from the io_context when what one of
  // them leads to changed (a new identity), at most once per `min_interval`
  // (a change inside it is reported at its end). Directories that do not
  // exist are skipped and listed by unwatched().
  TokenFileWatcher(asio::io_context& io, std::vector<std::string> paths, std::function<void()> on_change,
                   std::chrono::milliseconds min_interval = std::chrono::milliseconds(1000));
  ~TokenFileWatcher();
  TokenFileWatcher(const TokenFileWatcher&) = delete;
  TokenFileWatcher& operator=(const TokenFileWatcher&) = delete;

  // False if inotify could not be set up at all (then error() says why).
  bool active() const noexcept { return m_active; }
  const std::string& error() const noexcept { return m_error; }
  // The directories that could not be watched (absent, no permission).
  const std::vector<std::string>& unwatched() const noexcept { return m_unwatched; }

private:
  struct Watched
  {
    std::string path;
    std::string directory;
    std::string name;
    Identity identity;
  };

  void wait();
  void on_readable();
  void check();
  void report();

  asio::io_context& m_io;
  std::vector<Watched> m_files;
  std::vector<std::pair<int, std::string>> m_watches; // descriptor, directory
  std::function<void()> m_on_change;
  std::chrono::milliseconds m_min_interval;
  asio::posix::stream_descriptor m_descriptor;
  asio::steady_timer m_timer;
  std::chrono::steady_clock::time_point m_last_report{};
  bool m_timer_armed = false;
  bool m_active = false;
  std::string m_error;
  std::vector<std::string> m_unwatched;
  util::Life m_life;
};

} // namespace iamtok::upstream
