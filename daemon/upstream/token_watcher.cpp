#include "daemon/upstream/token_watcher.hpp"

#include <asio/post.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>

#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

namespace iamtok::upstream {

namespace {

// What puts new content behind a name: a writer closing it, a rename or a
// new link onto it (kubelet's symlink swap is a rename of `..data_tmp` onto
// `..data`), its metadata. Not IN_MODIFY: a plain write is complete only at
// close, and reacting to its truncation would spend the retry on an empty file.
constexpr std::uint32_t k_events = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ATTRIB;

std::pair<std::string, std::string> split(const std::string& path)
{
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) {
    return {".", path};
  }
  return {slash == 0 ? std::string("/") : path.substr(0, slash), path.substr(slash + 1)};
}

} // namespace

TokenFileWatcher::Identity TokenFileWatcher::identity_of(const std::string& path)
{
  struct stat info{};
  if (::stat(path.c_str(), &info) != 0) {
    return {};
  }
  return Identity{true, static_cast<unsigned long long>(info.st_dev), static_cast<unsigned long long>(info.st_ino),
                  static_cast<long long>(info.st_size),
                  static_cast<long long>(info.st_mtim.tv_sec) * 1'000'000'000LL + info.st_mtim.tv_nsec};
}

TokenFileWatcher::TokenFileWatcher(asio::io_context& io, std::vector<std::string> paths,
                                   std::function<void()> on_change, std::chrono::milliseconds min_interval)
  : m_io(io), m_on_change(std::move(on_change)), m_min_interval(min_interval), m_descriptor(io), m_timer(io)
{
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    m_error = fmt::format("inotify_init1: {}", std::error_code(errno, std::generic_category()).message());
    return;
  }
  m_descriptor.assign(fd);
  for (auto& path : paths) {
    auto [directory, name] = split(path);
    const bool known = std::any_of(m_watches.begin(), m_watches.end(),
                                   [&](const auto& watch) { return watch.second == directory; });
    if (!known) {
      const int wd = ::inotify_add_watch(fd, directory.c_str(), k_events | IN_ONLYDIR);
      if (wd < 0) {
        m_unwatched.push_back(directory);
        continue;
      }
      m_watches.emplace_back(wd, directory);
    } else if (std::find(m_unwatched.begin(), m_unwatched.end(), directory) != m_unwatched.end()) {
      continue;
    }
    m_files.push_back(Watched{path, std::move(directory), std::move(name), identity_of(path)});
  }
  m_active = true;
  wait();
}

TokenFileWatcher::~TokenFileWatcher()
{
  std::error_code ignored;
  m_timer.cancel();
  m_descriptor.close(ignored); // closes the inotify fd, which drops its watches
}

void TokenFileWatcher::wait()
{
  m_descriptor.async_wait(asio::posix::descriptor_base::wait_read,
                          [this, life = m_life.watch()](const std::error_code& error) {
                            if (error || !life.alive()) {
                              return;
                            }
                            on_readable();
                          });
}

void TokenFileWatcher::on_readable()
{
  // Drain every queued event; bounded by what the kernel queued.
  alignas(inotify_event) std::array<char, 16 * 1024> buffer{};
  bool relevant = false;
  for (int round = 0; round < 64; ++round) {
    const ssize_t n = ::read(m_descriptor.native_handle(), buffer.data(), buffer.size());
    if (n <= 0) {
      break; // EAGAIN: drained (or an error: wait again, the next read says)
    }
    for (ssize_t at = 0; at + static_cast<ssize_t>(sizeof(inotify_event)) <= n;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer.data() + at);
      const std::string_view name = event->len > 0 ? std::string_view(event->name) : std::string_view();
      if ((event->mask & IN_Q_OVERFLOW) != 0) {
        relevant = true;
      }
      for (const auto& file : m_files) {
        const auto watch = std::find_if(m_watches.begin(), m_watches.end(),
                                        [&](const auto& w) { return w.first == event->wd; });
        if (watch != m_watches.end() && watch->second == file.directory
            && (name == file.name || name == "..data")) {
          relevant = true;
        }
      }
      at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
    }
  }
  if (relevant) {
    check();
  }
  wait();
}

void TokenFileWatcher::check()
{
  bool changed = false;
  for (auto& file : m_files) {
    auto now = identity_of(file.path);
    if (now != file.identity) {
      file.identity = now;
      changed = changed || now.present;
    }
  }
  if (!changed && !m_timer_armed) {
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  const auto next_allowed = m_last_report + m_min_interval;
  if (now >= next_allowed && !m_timer_armed) {
    m_last_report = now;
    report();
    return;
  }
  if (m_timer_armed) {
    return; // the pending report covers this change too
  }
  m_timer_armed = true;
  m_timer.expires_at(next_allowed);
  m_timer.async_wait([this, life = m_life.watch()](const std::error_code& error) {
    if (error || !life.alive()) {
      return;
    }
    m_timer_armed = false;
    m_last_report = std::chrono::steady_clock::now();
    report();
  });
}

void TokenFileWatcher::report()
{
  // From the loop, not from inside this object's handlers.
  asio::post(m_io, [this, life = m_life.watch()] {
    if (life.alive()) {
      m_on_change();
    }
  });
}

} // namespace iamtok::upstream
