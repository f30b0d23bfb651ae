#include "sim/options.hpp"

#include "util/expected.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <charconv>
#include <set>

namespace iamtok::sim {

namespace {

template<typename T>
std::optional<T> parse_number(std::string_view text, T lo, T hi)
{
  T value{};
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc{} || ptr != end || value < lo || value > hi) {
    return std::nullopt;
  }
  return value;
}

// True if `host` is a loopback IPv4 (127.0.0.0/8) or IPv6 (::1) literal.
bool is_loopback_literal(const std::string& host)
{
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

tl::expected<void, std::string> parse_listen(std::string_view text, Options& options)
{
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return tl::unexpected(std::string("--listen: expected HOST:PORT"));
  }
  std::string host(text.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost") {
    host = "127.0.0.1";
  }
  const auto port = parse_number<std::uint16_t>(text.substr(colon + 1), 0, 65535);
  if (!port) {
    return tl::unexpected(std::string("--listen: the port must be a number from 0 to 65535"));
  }
  if (!is_loopback_literal(host)) {
    return tl::unexpected(std::string("--listen: only a loopback address (127.0.0.0/8, ::1) is allowed"));
  }
  options.listen_host = host;
  options.listen_port = *port;
  return {};
}

} // namespace

std::optional<Profile> parse_profile(std::string_view spec)
{
  Profile profile;
  const auto first = spec.find(':');
  profile.id = std::string(spec.substr(0, first));
  if (first != std::string_view::npos) {
    const auto rest = spec.substr(first + 1);
    const auto second = rest.find(':');
    profile.name = std::string(rest.substr(0, second));
    if (second != std::string_view::npos) {
      profile.crn = std::string(rest.substr(second + 1));
    }
  }
  if (profile.id.empty()) {
    return std::nullopt;
  }
  if (profile.crn.empty()) {
    profile.crn = profile_crn(profile.id);
  }
  return profile;
}

tl::expected<Options, std::string> parse_options(std::span<const std::string_view> args)
{
  Options options;
  std::vector<Profile> profiles;
  std::optional<std::string> default_profile;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    const auto value = [&]() -> std::optional<std::string_view> {
      if (i + 1 >= args.size()) {
        return std::nullopt;
      }
      return args[++i];
    };
    const auto missing = [&] { return tl::unexpected(fmt::format("{}: missing value", arg)); };
    // The option's value as a number in [lo, hi], or the message "<option>: <what>".
    const auto number = [&]<typename T>(T lo, T hi, std::string_view what) -> tl::expected<T, std::string> {
      const auto v = value();
      const auto n = v ? parse_number<T>(*v, lo, hi) : std::nullopt;
      if (!n) {
        return tl::unexpected(fmt::format("{}: {}", arg, what));
      }
      return *n;
    };

    if (arg == "--help" || arg == "-h") {
      options.help = true;
    } else if (arg == "--version") {
      options.version = true;
    } else if (arg == "--quiet" || arg == "-q") {
      options.quiet = true;
    } else if (arg == "--listen") {
      const auto v = value();
      if (!v) {
        return missing();
      }
      if (auto ok = parse_listen(*v, options); !ok) {
        return tl::unexpected(ok.error());
      }
    } else if (arg == "--port-file") {
      const auto v = value();
      if (!v || v->empty()) {
        return missing();
      }
      options.port_file = std::string(*v);
    } else if (arg == "--profile") {
      const auto v = value();
      if (!v) {
        return missing();
      }
      auto profile = parse_profile(*v);
      if (!profile) {
        return tl::unexpected(std::string("--profile: expected ID[:NAME[:CRN]] with a non-empty ID"));
      }
      profiles.push_back(std::move(*profile));
    } else if (arg == "--default-profile") {
      const auto v = value();
      if (!v || v->empty()) {
        return missing();
      }
      default_profile = std::string(*v);
    } else if (arg == "--iam-lifetime") {
      IAMTOK_TRY_ASSIGN(seconds, number(std::int64_t{1}, std::int64_t{86400}, "seconds from 1 to 86400"));
      options.sim.iam_lifetime = std::chrono::seconds(seconds);
    } else if (arg == "--latency-ms") {
      IAMTOK_TRY_ASSIGN(ms, number(std::int64_t{0}, std::int64_t{600000}, "milliseconds from 0 to 600000"));
      options.sim.latency = std::chrono::milliseconds(ms);
    } else if (arg == "--seed") {
      IAMTOK_TRY_ASSIGN(seed, number(std::uint64_t{0}, UINT64_MAX, "a non-negative integer"));
      options.sim.seed = seed;
      options.seed_given = true;
    } else {
      return tl::unexpected(fmt::format("unknown option {}", arg.substr(0, 64)));
    }
  }

  if (!profiles.empty()) {
    options.sim.profiles = std::move(profiles);
  }
  std::set<std::string> ids, names, crns;
  for (const auto& p : options.sim.profiles) {
    if (!ids.insert(p.id).second) {
      return tl::unexpected(fmt::format("--profile: duplicate id {}", p.id));
    }
    if (!p.name.empty() && !names.insert(p.name).second) {
      return tl::unexpected(fmt::format("--profile: duplicate name {}", p.name));
    }
    if (!crns.insert(p.crn).second) {
      return tl::unexpected(fmt::format("--profile: duplicate crn {}", p.crn));
    }
  }
  if (default_profile) {
    const auto& all = options.sim.profiles;
    const auto it = std::find_if(all.begin(), all.end(), [&](const Profile& p) {
      return p.id == *default_profile || (!p.name.empty() && p.name == *default_profile);
    });
    if (it == all.end()) {
      return tl::unexpected(std::string("--default-profile: no such profile id or name"));
    }
    options.sim.default_profile_id = it->id;
  }
  return options;
}

std::string usage()
{
  const auto defaults = default_profiles();
  return fmt::format(
    R"(Usage: iamtoken-sim [OPTIONS]

Emulates IBM Cloud's VPC instance metadata service (IMDS) and IAM's CR-token
grant on one loopback HTTP/1.1 listener, with fault injection and counters.

Options:
  --listen HOST:PORT        loopback address to listen on (default 127.0.0.1:0)
  --port-file PATH          write the bound port to PATH once listening
  --profile ID[:NAME[:CRN]] a trusted profile linked to the instance (repeatable;
                            split on the first two colons; default CRN derived
                            from ID). Replaces the demo profiles.
  --default-profile ID|NAME the instance's default trusted profile: the one
                            IMDS uses when an iam_token request names none
                            (default: none; such requests get 400 missing_field)
  --iam-lifetime SECONDS    access-token lifetime (default 3600)
  --latency-ms N            delay every IMDS/IAM reply by N ms (default 0)
  --seed N                  seed for token ids and request ids (default random)
  --quiet, -q               do not log requests to stderr
  --version                 print the version
  --help, -h                print this help

Demo profiles (when no --profile is given):
  {}  {}
      {}
  {}  {}
      {}

Endpoints: PUT /identity/v1/token, POST /identity/v1/iam_tokens (and the
2022-03-01 /instance_identity/v1/... paths), POST /identity/token (IAM),
POST/DELETE /sim/faults, GET /sim/stats, POST /sim/reset. See docs/simulator.md.

Like the real services: IMDS takes a JSON body whatever its Content-Type,
answers a version before 2022-03-01 with invalid_version_range, and sends the
request id as X-Request-Id; IAM sends it as Transaction-Id and explains
errors in errorDetails.

Fault modes (POST /sim/faults {{"target":...,"mode":...}}): status, hang, reset,
garbage (a 200 that is not JSON), slow (delay_ms), redirect (a 3xx with
"location"), html (an HTML error page, default 502), short_jwt (a token whose
JWT exp - iat is "jwt_lifetime_s", default 5, shorter than expires_in says).
)",
    defaults[0].id, defaults[0].name, defaults[0].crn, defaults[1].id, defaults[1].name, defaults[1].crn);
}

} // namespace iamtok::sim
