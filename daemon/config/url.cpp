#include "daemon/config/url.hpp"

#include <fmt/format.h>

#include <algorithm>

#include <arpa/inet.h>
#include <netinet/in.h>

namespace iamtok::config {

std::optional<Url> parse_url(std::string_view text)
{
  const auto has_bad_char = std::any_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u >= 0x7f || c == '?' || c == '#' || c == '@' || c == '\\';
  });
  if (has_bad_char) {
    return std::nullopt;
  }
  const auto lower = [](std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](char c) {
      return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    });
    return out;
  };

  Url url;
  const auto scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) {
    return std::nullopt;
  }
  url.scheme = lower(text.substr(0, scheme_end));
  if (url.scheme != "http" && url.scheme != "https") {
    return std::nullopt;
  }
  std::string_view rest = text.substr(scheme_end + 3);
  const auto path_start = rest.find('/');
  std::string_view authority = rest.substr(0, path_start);
  url.path = path_start == std::string_view::npos ? "" : std::string(rest.substr(path_start));

  std::string_view port;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      return std::nullopt;
    }
    url.host = std::string(authority.substr(1, close - 1));
    in6_addr address{};
    if (::inet_pton(AF_INET6, url.host.c_str(), &address) != 1) {
      return std::nullopt;
    }
    const auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (!after.starts_with(':')) {
        return std::nullopt;
      }
      port = after.substr(1);
      if (port.empty()) {
        return std::nullopt;
      }
    }
  } else {
    const auto colon = authority.find(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) {
        return std::nullopt;
      }
    }
    const bool host_ok = !url.host.empty() && std::all_of(url.host.begin(), url.host.end(), [](char c) {
      return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.'
             || c == '-' || c == '_';
    });
    if (!host_ok) {
      return std::nullopt;
    }
  }
  if (!port.empty()) {
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    unsigned value = 0;
    for (const char c : port) {
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) {
      return std::nullopt;
    }
    url.port = static_cast<std::uint16_t>(value);
  }
  return url;
}

std::optional<HttpListen> parse_http_listen(std::string_view text)
{
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5
      || !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  const int port = std::stoi(std::string(port_text));
  if (port > 65535) {
    return std::nullopt;
  }
  const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  const std::string address(bracketed ? host.substr(1, host.size() - 2) : host);
  if (bracketed) {
    in6_addr v6{};
    if (::inet_pton(AF_INET6, address.c_str(), &v6) != 1 || !IN6_IS_ADDR_LOOPBACK(&v6)) {
      return std::nullopt;
    }
    return HttpListen{"::1", static_cast<std::uint16_t>(port)};
  }
  in_addr v4{};
  if (::inet_pton(AF_INET, address.c_str(), &v4) != 1 || (ntohl(v4.s_addr) >> 24) != 127) {
    return std::nullopt;
  }
  return HttpListen{address, static_cast<std::uint16_t>(port)};
}

bool is_loopback_host(std::string_view host)
{
  if (host.starts_with('[') && host.ends_with(']') && host.size() >= 2) {
    host = host.substr(1, host.size() - 2);
  }
  if (host.size() == 9) {
    std::string lower(host);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) {
      return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    });
    if (lower == "localhost") {
      return true;
    }
  }
  const std::string text(host);
  if (in_addr v4{}; ::inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  if (in6_addr v6{}; ::inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) {
      return true;
    }
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

std::string to_string(const HttpListen& listen)
{
  return listen.address.find(':') != std::string::npos ? fmt::format("[{}]:{}", listen.address, listen.port)
                                                         : fmt::format("{}:{}", listen.address, listen.port);
}

} // namespace iamtok::config
