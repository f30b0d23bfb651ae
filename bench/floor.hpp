#pragma once

// The benchmark's floors, on the same Asio model as the daemon (one
// io_context thread, one coroutine per connection): a bare AF_UNIX line
// server that answers every request line with a fixed reply of a token
// reply's size, and a bare HTTP/1.1 keep-alive server on the project's shared
// HTTP framing (http/session.hpp) that answers every request with a fixed
// 200 response of the HTTP endpoint's token response size.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace iamtok::bench {

struct FloorOptions
{
  std::string socket_path;
  std::string http_host;                          // HTTP floor: listen here (a loopback address) ...
  std::uint16_t http_port = 0;                    // ... on this port (0: the kernel picks one)
  std::string port_file;                          // HTTP floor: the bound port is written here
  std::size_t reply_bytes = 1024;                 // reply size, '\n' included (HTTP: head included)
  std::chrono::seconds lifetime{900};             // exits after this long whatever happens
};

// A JSON object line of exactly `bytes` bytes (at least 32), '\n' included.
std::string floor_reply(std::size_t bytes);

// An HTTP/1.1 200 JSON response (keep-alive) of exactly `bytes` bytes, head
// included (at least 128).
std::string http_floor_response(std::size_t bytes);

// Serve until SIGTERM/SIGINT or the lifetime ends. Return 0, or 1 if the
// socket cannot be bound (message on stderr). run_floor: the AF_UNIX line
// floor on socket_path; run_http_floor: the HTTP floor on http_host:http_port.
int run_floor(const FloorOptions& options);
int run_http_floor(const FloorOptions& options);

} // namespace iamtok::bench
