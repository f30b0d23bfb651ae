#pragma once

// The benchmark's floor: a bare AF_UNIX line server on the same Asio model as
// the daemon (one io_context thread, one coroutine per connection) that answers
// every request line with a fixed reply of a token reply's size.

#include <chrono>
#include <cstddef>
#include <string>

namespace iamtok::bench {

struct FloorOptions
{
  std::string socket_path;
  std::size_t reply_bytes = 1024;                 // reply size, '\n' included
  std::chrono::seconds lifetime{900};             // exits after this long whatever happens
};

// A JSON object line of exactly `bytes` bytes (at least 32), '\n' included.
std::string floor_reply(std::size_t bytes);

// Serves until SIGTERM/SIGINT or the lifetime ends. Returns 0, or 1 if the
// socket cannot be bound (message on stderr).
int run_floor(const FloorOptions& options);

} // namespace iamtok::bench
