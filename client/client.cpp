#include "client/client.hpp"

#include "version.hpp"
#include "util/error.hpp"
#include "util/fd.hpp"

#include <fmt/format.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <thread>
#include <utility>

namespace iamtok::client {
namespace {

constexpr std::size_t k_max_reply_bytes = 1U << 20U;

using Clock = std::chrono::steady_clock;

std::optional<Format> parse_format(std::string_view text)
{
  if (text == "raw") {
    return Format::raw;
  }
  if (text == "json") {
    return Format::json;
  }
  if (text == "header") {
    return Format::header;
  }
  if (text == "env") {
    return Format::env;
  }
  return std::nullopt;
}

Failure unreachable(const std::string& path, int error)
{
  return {k_exit_unreachable, "unreachable", fmt::format("cannot connect to {}: {}", path, util::errno_text(error))};
}

Failure timed_out()
{
  return {k_exit_temporary, "timeout", "no reply from iamtokend in time"};
}

int remaining_ms(Clock::time_point deadline)
{
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<std::int64_t>(left, 1'000'000));
}

// Waits for `events` on `fd` until the deadline. False on timeout.
bool wait_for(int fd, short events, Clock::time_point deadline)
{
  for (;;) {
    pollfd entry{fd, events, 0};
    const int rc = ::poll(&entry, 1, remaining_ms(deadline));
    if (rc > 0) {
      return true;
    }
    if (rc == 0) {
      return false;
    }
    if (errno != EINTR) {
      return true; // let the following call report the error
    }
  }
}

// "5m 12s", "2h 3m", "40s", "-3s" (already past).
std::string duration_text(std::int64_t seconds)
{
  if (seconds < 0) {
    return fmt::format("-{}", duration_text(-seconds));
  }
  if (seconds < 60) {
    return fmt::format("{}s", seconds);
  }
  if (seconds < 3600) {
    return fmt::format("{}m {}s", seconds / 60, seconds % 60);
  }
  if (seconds < 86'400) {
    return fmt::format("{}h {}m", seconds / 3600, seconds % 3600 / 60);
  }
  return fmt::format("{}d {}h", seconds / 86'400, seconds % 86'400 / 3600);
}

} // namespace

int report(const Options& options, const Failure& failure)
{
  if (!options.quiet) {
    print_failure("iamtoken-get", failure);
  }
  return failure.exit_code;
}

tl::expected<StatusReply, Failure> fetch_status(const Options& options)
{
  auto line = ok_reply_line(options, proto::Request{proto::Op::status, {}, {}, {}});
  if (!line) {
    return tl::unexpected(std::move(line.error()));
  }
  auto status = proto::parse_status_reply(*line);
  if (!status) {
    return tl::unexpected(Failure{k_exit_software, "protocol", "unreadable status from iamtokend: " + status.error()});
  }
  return StatusReply{std::move(*line), std::move(*status)};
}

int print_or_report(const Options& options, std::string_view text)
{
  if (!write_stdout(text)) {
    return report(options, {k_exit_software, "output", "cannot write to stdout: " + util::errno_text(errno)});
  }
  return k_exit_ok;
}

tl::expected<std::string, Failure> ok_reply_line(const Options& options, const proto::Request& request)
{
  auto line = request_line(options.socket_path, proto::format_request(request), options.timeout);
  if (!line) {
    return tl::unexpected(line.error());
  }
  const auto reply = proto::parse_reply(*line);
  if (!reply) {
    return tl::unexpected(Failure{k_exit_software, "protocol", "unreadable reply from iamtokend: " + reply.error()});
  }
  if (!reply->ok) {
    return tl::unexpected(failure_of(*reply));
  }
  return line;
}

namespace {

int run_token(const Options& options)
{
  const auto reply = fetch_token(options.socket_path, options.profile, options.min_valid_s, options.timeout);
  if (!reply) {
    return report(options, reply.error());
  }
  std::string output = token_output(*reply, options.format);
  const int code = print_or_report(options, output);
  wipe_string(output);
  return code;
}

int run_status(const Options& options)
{
  const auto reply = fetch_status(options);
  if (!reply) {
    return report(options, reply.error());
  }
  return print_or_report(options, options.format == Format::json ? reply->line + "\n"
                                                                 : status_table(reply->status, std::time(nullptr)));
}

} // namespace

std::optional<std::int64_t> parse_integer(std::string_view text)
{
  std::int64_t value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) {
    return std::nullopt;
  }
  return value;
}

// A positive number of seconds with up to three decimals ("15", "0.5").
std::optional<std::chrono::milliseconds> parse_seconds(std::string_view text)
{
  const auto dot = text.find('.');
  const auto whole = parse_integer(text.substr(0, dot));
  if (!whole || *whole < 0 || *whole > 86'400) {
    return std::nullopt;
  }
  std::int64_t millis = *whole * 1000;
  if (dot != std::string_view::npos) {
    const auto fraction = text.substr(dot + 1);
    if (fraction.empty() || fraction.size() > 3) {
      return std::nullopt;
    }
    std::int64_t scale = 100;
    for (const char c : fraction) {
      if (c < '0' || c > '9') {
        return std::nullopt;
      }
      millis += (c - '0') * scale;
      scale /= 10;
    }
  }
  if (millis <= 0) {
    return std::nullopt;
  }
  return std::chrono::milliseconds(millis);
}

// Writes all of `text` to stdout. False if stdout is closed or broken.
bool write_stdout(std::string_view text)
{
  while (!text.empty()) {
    const auto written = ::write(STDOUT_FILENO, text.data(), text.size());
    if (written < 0) {
      if (errno == EINTR) {
        continue;
      }
      return false;
    }
    text.remove_prefix(static_cast<std::size_t>(written));
  }
  return true;
}

tl::expected<proto::Reply, Failure> fetch_token(const std::string& socket_path, const std::string& profile,
                                                std::optional<std::int64_t> min_valid_s,
                                                std::chrono::milliseconds timeout)
{
  proto::Request request;
  request.op = proto::Op::token;
  request.profile = profile;
  request.min_valid_s = min_valid_s;
  auto line = request_line(socket_path, proto::format_request(request), timeout);
  if (!line) {
    return tl::make_unexpected(line.error());
  }
  auto reply = proto::parse_reply(*line);
  wipe_string(*line);
  if (!reply) {
    return tl::make_unexpected(
      Failure{k_exit_software, "protocol", "unreadable reply from iamtokend: " + reply.error()});
  }
  if (!reply->ok) {
    return tl::make_unexpected(failure_of(*reply));
  }
  if (!reply->is_token()) {
    return tl::make_unexpected(Failure{k_exit_software, "protocol", "the reply holds no token"});
  }
  return std::move(*reply);
}

void print_failure(std::string_view program, const Failure& failure)
{
  // One line: never a newline from the daemon's message.
  std::string line = fmt::format("{}: {}: {}", program, failure.code, failure.message);
  for (char& c : line) {
    if (c == '\n' || c == '\r') {
      c = ' ';
    }
  }
  line += '\n';
  [[maybe_unused]] const auto ignored = ::write(STDERR_FILENO, line.data(), line.size());
}

tl::expected<Options, std::string> parse_args(std::span<const char* const> args, const char* env_socket)
{
  Options options;
  options.socket_path = env_socket != nullptr && *env_socket != '\0' ? env_socket : std::string(k_default_socket);
  bool status = false;
  bool check = false;
  bool metrics = false;
  bool version = false;
  bool help = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    std::optional<std::string_view> inline_value;
    if (arg.starts_with("--")) {
      const auto equals = arg.find('=');
      if (equals != std::string_view::npos) {
        inline_value = arg.substr(equals + 1);
        arg = arg.substr(0, equals);
      }
    } else if (arg.starts_with("-p") && arg.size() > 2) {
      inline_value = arg.substr(2);
      arg = "-p";
    }
    const auto value = [&]() -> tl::expected<std::string_view, std::string> {
      if (inline_value) {
        return *inline_value;
      }
      if (i + 1 >= args.size()) {
        return tl::make_unexpected(fmt::format("option {} needs a value", arg));
      }
      return std::string_view(args[++i]);
    };
    const auto flag = [&]() -> tl::expected<void, std::string> {
      if (inline_value) {
        return tl::make_unexpected(fmt::format("option {} takes no value", arg));
      }
      return {};
    };
    if (arg == "--profile" || arg == "-p") {
      const auto v = value();
      if (!v) {
        return tl::make_unexpected(v.error());
      }
      if (v->empty()) {
        return tl::make_unexpected("--profile must not be empty");
      }
      options.profile = *v;
      options.profiles.emplace_back(*v);
    } else if (arg == "--format") {
      const auto v = value();
      if (!v) {
        return tl::make_unexpected(v.error());
      }
      const auto format = parse_format(*v);
      if (!format) {
        return tl::make_unexpected("--format must be raw, json, header or env");
      }
      options.format = *format;
      options.format_given = true;
    } else if (arg == "--min-valid") {
      const auto v = value();
      if (!v) {
        return tl::make_unexpected(v.error());
      }
      const auto seconds = parse_integer(*v);
      if (!seconds || *seconds < 0 || *seconds > proto::k_max_min_valid_s) {
        return tl::make_unexpected(fmt::format("--min-valid must be an integer from 0 to {}", proto::k_max_min_valid_s));
      }
      options.min_valid_s = *seconds;
    } else if (arg == "--socket") {
      const auto v = value();
      if (!v) {
        return tl::make_unexpected(v.error());
      }
      if (v->empty()) {
        return tl::make_unexpected("--socket must not be empty");
      }
      options.socket_path = *v;
    } else if (arg == "--timeout") {
      const auto v = value();
      if (!v) {
        return tl::make_unexpected(v.error());
      }
      const auto timeout = parse_seconds(*v);
      if (!timeout) {
        return tl::make_unexpected("--timeout must be a positive number of seconds");
      }
      options.timeout = *timeout;
    } else if (arg == "--check" || arg == "--metrics") {
      if (const auto ok = flag(); !ok) {
        return tl::make_unexpected(ok.error());
      }
      (arg == "--check" ? check : metrics) = true;
    } else if (arg == "--quiet" || arg == "--status" || arg == "--version" || arg == "--help" || arg == "-h") {
      if (const auto ok = flag(); !ok) {
        return tl::make_unexpected(ok.error());
      }
      (arg == "--quiet" ? options.quiet : arg == "--status" ? status : arg == "--version" ? version : help) = true;
    } else if (arg.starts_with("-")) {
      return tl::make_unexpected(fmt::format("unknown option {}", arg));
    } else {
      return tl::make_unexpected("unexpected argument (use --profile NAME)");
    }
  }
  if (help) {
    options.action = Options::Action::help;
  } else if (version) {
    options.action = Options::Action::version;
  } else if (int(status) + int(check) + int(metrics) > 1) {
    return tl::make_unexpected("--status, --check and --metrics exclude each other");
  } else if (check || metrics) {
    if (auto problem = probe_args(options, check ? Options::Action::check : Options::Action::metrics)) {
      return tl::make_unexpected(std::move(*problem));
    }
  } else if (status) {
    if (!options.profile.empty() || options.min_valid_s) {
      return tl::make_unexpected("--status takes no --profile or --min-valid");
    }
    if (options.format_given && options.format != Format::json) {
      return tl::make_unexpected("--status prints a table or, with --format json, JSON");
    }
    options.action = Options::Action::status;
  } else if (options.profile.empty()) {
    return tl::make_unexpected("--profile NAME is required");
  }
  return options;
}

std::string help_text()
{
  return "Usage: iamtoken-get --profile NAME [--format raw|json|header|env] [--min-valid SECONDS]\n"
         "                    [--socket PATH] [--timeout SECONDS] [--quiet]\n"
         "       iamtoken-get --status [--format json] [--socket PATH]\n"
         "       iamtoken-get exec --profile NAME [--min-valid SECONDS] [--env VAR]...\n"
         "                    [--sdk-env SERVICE]... -- COMMAND [ARG...]\n"
         "       iamtoken-get --check [--profile NAME]... [--socket PATH] [--quiet]\n"
         "       iamtoken-get --metrics [--socket PATH]\n"
         "       iamtoken-get --version | --help\n"
         "\n"
         "Prints an IBM Cloud IAM access token of a trusted profile, as served by iamtokend.\n"
         "\n"
         "  -p, --profile NAME     the profile's local name in iamtokend's configuration\n"
         "      --format FORMAT    raw (the token, default), json (the daemon's reply),\n"
         "                         header (Authorization: Bearer ...), env (IAM_ACCESS_TOKEN=...\n"
         "                         and IAM_TOKEN_EXPIRES_AT=...)\n"
         "      --min-valid SECS   the token must stay valid this long (0-1800; capped at half\n"
         "                         its lifetime; default: the daemon's refresh.min_valid_s)\n"
         "      --socket PATH      default: $IAMTOKEN_SOCKET, else /run/iamtokend/iamtokend.sock\n"
         "      --timeout SECS     give up after this long (default 15)\n"
         "      --quiet            no error line on stderr (the exit code still tells)\n"
         "      --status           the daemon's state and each profile's, as a table\n"
         "                         (exit 0 whenever the daemon answers: a liveness probe)\n"
         "      --check            exit 0 when each named profile (default: every profile\n"
         "                         this user may use) holds a valid token, else 75 with one\n"
         "                         line per such profile: a readiness probe\n"
         "      --metrics          the daemon's Prometheus metrics (text exposition)\n"
         "      --version, --help\n"
         "\n"
         "exec runs COMMAND in place of iamtoken-get (same process) with the token in\n"
         "IAM_ACCESS_TOKEN (expiry in IAM_TOKEN_EXPIRES_AT), in each --env VAR (e.g.\n"
         "IC_IAM_TOKEN for Terraform) and, per --sdk-env SERVICE, in the IBM SDK variables\n"
         "SERVICE_AUTH_TYPE=bearerToken and SERVICE_BEARER_TOKEN; --min-valid defaults to\n"
         "600 there. No token: COMMAND is not run. The token is not renewed inside\n"
         "COMMAND: a process that outlives it should call iamtoken-get again or use the\n"
         "socket's watch op. More: iamtoken-get exec --help.\n"
         "\n"
         "Exit codes: 0 ok, 64 usage, 69 daemon not reachable, 70 other error,\n"
         "75 temporarily unavailable (unavailable, busy, timeout), 77 forbidden,\n"
         "78 unknown profile.\n";
}

int exit_code_for(std::string_view error_code)
{
  const auto code = proto::parse_error_code(error_code);
  if (!code) {
    return k_exit_software;
  }
  switch (*code) {
  case proto::ErrorCode::unavailable:
  case proto::ErrorCode::busy: return k_exit_temporary;
  case proto::ErrorCode::forbidden: return k_exit_forbidden;
  case proto::ErrorCode::unknown_profile: return k_exit_unknown_profile;
  case proto::ErrorCode::bad_request:
  case proto::ErrorCode::request_too_large:
  case proto::ErrorCode::internal: return k_exit_software;
  }
  return k_exit_software;
}

tl::expected<std::string, Failure> request_line(const std::string& socket_path, std::string_view request,
                                                std::chrono::milliseconds timeout)
{
  const auto deadline = Clock::now() + timeout;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(address.sun_path)) {
    return tl::make_unexpected(Failure{k_exit_unreachable, "unreachable", "socket path too long: " + socket_path});
  }
  std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size() + 1);

  const util::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) {
    return tl::make_unexpected(Failure{k_exit_software, "internal", "socket: " + util::errno_text(errno)});
  }
  // A full backlog answers EAGAIN: retry until the deadline.
  for (;;) {
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0) {
      break;
    }
    const int error = errno;
    if (error == EINTR) {
      continue;
    }
    if (error != EAGAIN) {
      return tl::make_unexpected(unreachable(socket_path, error));
    }
    if (remaining_ms(deadline) == 0) {
      return tl::make_unexpected(timed_out());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(10, remaining_ms(deadline))));
  }

  while (!request.empty()) {
    if (!wait_for(fd.get(), POLLOUT, deadline)) {
      return tl::make_unexpected(timed_out());
    }
    const auto sent = ::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        continue;
      }
      return tl::make_unexpected(Failure{k_exit_software, "protocol", "cannot send the request: " + util::errno_text(errno)});
    }
    request.remove_prefix(static_cast<std::size_t>(sent));
  }

  std::string reply;
  char buffer[4096];
  for (;;) {
    if (!wait_for(fd.get(), POLLIN, deadline)) {
      wipe_string(reply);
      return tl::make_unexpected(timed_out());
    }
    const auto got = ::recv(fd.get(), buffer, sizeof(buffer), 0);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) {
      continue;
    }
    if (got <= 0) {
      const int error = got < 0 ? errno : 0;
      wipe_string(reply);
      return tl::make_unexpected(Failure{k_exit_software, "protocol",
                                         got == 0 ? std::string("iamtokend closed the connection without a reply")
                                                  : "cannot read the reply: " + util::errno_text(error)});
    }
    const std::string_view chunk(buffer, static_cast<std::size_t>(got));
    const auto newline = chunk.find('\n');
    reply.append(chunk.substr(0, newline));
    const bool complete = newline != std::string_view::npos;
    std::memset(buffer, 0, sizeof(buffer));
    if (complete) {
      if (!reply.empty() && reply.back() == '\r') {
        reply.pop_back();
      }
      return reply;
    }
    if (reply.size() > k_max_reply_bytes) {
      wipe_string(reply);
      return tl::make_unexpected(Failure{k_exit_software, "protocol", "the reply is too long"});
    }
  }
}

Failure failure_of(const proto::Reply& reply)
{
  std::string message = reply.message;
  if (reply.retry_after_s) {
    message += fmt::format(" (retry after {} s)", *reply.retry_after_s);
  }
  if (!reply.upstream.empty()) {
    std::string upstream;
    if (reply.upstream.status != 0) {
      upstream += fmt::format(" HTTP {}", reply.upstream.status);
    }
    if (!reply.upstream.code.empty()) {
      upstream += " " + reply.upstream.code;
    }
    if (!reply.upstream.request_id.empty()) {
      upstream += " request_id " + reply.upstream.request_id;
    }
    message += " [upstream:" + upstream + "]";
  }
  return {exit_code_for(reply.code), reply.code, std::move(message)};
}

std::string token_output(const proto::Reply& reply, Format format)
{
  const auto token = reply.access_token.expose();
  std::string out;
  switch (format) {
  case Format::raw:
    out.reserve(token.size() + 1);
    out.append(token).append("\n");
    break;
  case Format::json:
    out.reserve(reply.raw.size() + 1);
    out.append(reply.raw.expose()).append("\n");
    break;
  case Format::header:
    out.reserve(token.size() + 32);
    out.append("Authorization: Bearer ").append(token).append("\n");
    break;
  case Format::env:
    out.reserve(token.size() + 64);
    out.append("IAM_ACCESS_TOKEN=").append(token).append("\n");
    out.append(fmt::format("IAM_TOKEN_EXPIRES_AT={}\n", reply.expires_at));
    break;
  }
  return out;
}

std::string status_table(const proto::StatusInfo& status, std::int64_t now)
{
  std::string out = fmt::format("iamtokend {}, up {}, source {} ({}", status.version, duration_text(status.uptime_s),
                                status.source.type, status.source.state);
  if (status.source.expires_at) {
    out += fmt::format(", CR token expires in {}", duration_text(*status.source.expires_at - now));
  }
  out += ")\n";
  out += fmt::format("{:<20} {:<10} {:>10} {:>10} {:>9} {:>8}  {}\n", "PROFILE", "STATE", "EXPIRES IN",
                     "REFRESH IN", "REFRESHES", "FAILURES", "LAST ERROR");
  for (const auto& profile : status.profiles) {
    std::string last_error = "-";
    if (profile.last_error) {
      const auto& error = *profile.last_error;
      last_error = !error.code.empty()        ? error.code
                   : error.status != 0        ? fmt::format("HTTP {}", error.status)
                   : !error.message.empty()   ? error.message
                                              : std::string("error");
    }
    out += fmt::format("{:<20} {:<10} {:>10} {:>10} {:>9} {:>8}  {}\n", profile.name, profile.state,
                       profile.expires_at ? duration_text(*profile.expires_at - now) : "-",
                       profile.refresh_at ? duration_text(*profile.refresh_at - now) : "-", profile.refreshes,
                       profile.failures, last_error);
  }
  out += fmt::format("requests {}, errors {}, upstream calls {}, connections {}\n", status.counters.requests,
                     status.counters.errors, status.counters.upstream_calls, status.counters.connections);
  return out;
}

int run(const Options& options)
{
  switch (options.action) {
  case Options::Action::help: return write_stdout(help_text()) ? k_exit_ok : k_exit_software;
  case Options::Action::version:
    return write_stdout(fmt::format("iamtoken-get {}\n", k_version)) ? k_exit_ok : k_exit_software;
  case Options::Action::status: return run_status(options);
  case Options::Action::check: return run_check(options);
  case Options::Action::metrics: return run_metrics(options);
  case Options::Action::token: return run_token(options);
  }
  return k_exit_software;
}

} // namespace iamtok::client
