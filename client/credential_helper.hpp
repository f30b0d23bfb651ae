#pragma once

// docker-credential-iamtoken: Docker's credential-helper protocol for IBM
// Cloud Container Registry, answered with an access token from iamtokend.
// See docker-credential-iamtoken(1).

#include "client/client.hpp"

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace iamtok::client {

// Docker matches this text on stdout (exit 1) as "no credentials here".
inline constexpr std::string_view k_credentials_not_found = "credentials not found in native keychain";
// ... and this one (exit 1) as "the helper was given no server URL".
inline constexpr std::string_view k_missing_server_url = "no credentials server URL";
inline constexpr std::string_view k_registry_username = "iambearer";
inline constexpr std::string_view k_default_registry_profile = "registry";
inline constexpr int k_exit_helper_refused = 1;

// The host of a server URL as Docker passes it ("icr.io", "https://us.icr.io",
// "https://us.icr.io/v2/", "us.icr.io:443"): surrounding whitespace trimmed,
// an http:// or https:// scheme, a port and a path dropped, lower-cased.
// nullopt when it is not that shape (another scheme, user info, characters a
// host name cannot hold, an empty host, a bad port).
std::optional<std::string> registry_host(std::string_view server_url);

// True for IBM Cloud Container Registry hosts: "icr.io" and any name ending
// in ".icr.io" whose labels before it are well-formed ("us.icr.io",
// "private.us.icr.io"). False for lookalikes ("icr.io.example.com",
// "evilicr.io", ".icr.io", "a..icr.io").
bool is_icr_host(std::string_view host);

// The trimmed server URL (surrounding spaces, tabs and line ends removed).
std::string_view trim_server_url(std::string_view text);

// The `get` answer: {"ServerURL":...,"Username":"iambearer","Secret":...}
// and a newline. Holds the token: wipe it once written.
std::string credentials_json(std::string_view server_url, std::string_view token);

// Where the helper gets its settings from (getenv values, may be null).
struct HelperEnvironment
{
  const char* registry_profile = nullptr; // IAMTOKEN_REGISTRY_PROFILE
  const char* socket = nullptr;           // IAMTOKEN_SOCKET
};

// The help text of docker-credential-iamtoken.
std::string credential_helper_help_text();

// Runs the helper for the arguments after argv[0], reading stdin and writing
// stdout/stderr. Returns the exit code: 0 answered, 1 credentials not found
// (or store/erase, which are refused), 64 usage, and iamtoken-get's codes
// (69, 70, 75, 77, 78) when the daemon gives no token.
int run_credential_helper(std::span<const char* const> args, const HelperEnvironment& environment);

} // namespace iamtok::client
