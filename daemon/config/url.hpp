#pragma once

// Endpoint URLs and loopback addresses as the configuration writes them
// (iamtokend.json(5)): the IMDS and IAM endpoints, and the HTTP endpoint's
// "listen" entries. Pure: parsing only, no name lookup.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace iamtok::config {

// A parsed endpoint URL: scheme "http" or "https" (lower case), a host
// (without brackets for IPv6), a port (0 when absent) and a path ("" or
// starting with '/').
struct Url
{
  std::string scheme;
  std::string host;
  std::uint16_t port = 0;
  std::string path;
};

// Parses "scheme://host[:port][/path]"; nullopt for anything else (user
// info, query, fragment, spaces, an empty host, a bad port).
std::optional<Url> parse_url(std::string_view text);

// True for "localhost", IPv4 127.0.0.0/8 and IPv6 ::1 (also IPv4-mapped 127/8).
bool is_loopback_host(std::string_view host);

// One address of the HTTP endpoint: a loopback literal and a port.
struct HttpListen
{
  std::string address; // "127.0.0.1", "::1" (no brackets)
  std::uint16_t port = 0; // 0: an ephemeral port, chosen at bind and logged
  friend bool operator==(const HttpListen&, const HttpListen&) = default;
};

// "127.0.0.1:8911", "[::1]:8911".
std::string to_string(const HttpListen& listen);

// Parses one "listen" entry: "IPv4:PORT" with an address in 127.0.0.0/8, or
// "[::1]:PORT"; nullopt for anything else (names, other addresses, a missing
// or bad port).
std::optional<HttpListen> parse_http_listen(std::string_view text);

} // namespace iamtok::config
