// iamtoken-get --check (a readiness probe) and --metrics.

#include "client/client.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace iamtok::client {

namespace {

// "failed (HTTP 400 BXNIM0415E: message)", or just the state.
std::string describe(const proto::ProfileInfo& profile)
{
  if (!profile.last_error) {
    return profile.state;
  }
  const proto::LastError& error = *profile.last_error;
  std::string detail;
  if (error.status != 0) {
    detail += fmt::format("HTTP {} ", error.status);
  }
  if (!error.code.empty()) {
    detail += error.code + " ";
  }
  if (!detail.empty()) {
    detail.back() = ':';
    detail += ' ';
  }
  return fmt::format("{} (last error: {}{})", profile.state, detail, error.message);
}

bool holds_valid_token(const proto::ProfileInfo& profile, std::int64_t now)
{
  const bool usable_state = profile.state == "fresh" || profile.state == "refreshing" || profile.state == "stale";
  return usable_state && profile.expires_at && *profile.expires_at > now;
}

// Asks the daemon why `profile` is not in the status: a token request, which
// it refuses at once for an unknown or forbidden profile.
CheckProblem ask_why(const Options& options, const std::string& profile)
{
  proto::Request request;
  request.op = proto::Op::token;
  request.profile = profile;
  auto line = request_line(options.socket_path, proto::format_request(request), options.timeout);
  if (!line) {
    return CheckProblem{profile, line.error().exit_code, line.error().code, line.error().message};
  }
  const auto reply = proto::parse_reply(*line);
  wipe_string(*line);
  if (!reply) {
    return CheckProblem{profile, k_exit_software, "protocol", "unreadable reply from iamtokend: " + reply.error()};
  }
  if (reply->ok) {
    return CheckProblem{profile, k_exit_ok, "ok", ""}; // allowed after all (a reload in between)
  }
  const Failure failure = failure_of(*reply);
  return CheckProblem{profile, failure.exit_code, failure.code, failure.message};
}

} // namespace

std::optional<std::string> probe_args(Options& options, Options::Action action)
{
  const bool check = action == Options::Action::check;
  if (options.min_valid_s || options.format_given) {
    return std::string(check ? "--check" : "--metrics") + " takes no --min-valid or --format";
  }
  if (!check && !options.profiles.empty()) {
    return std::string("--metrics takes no --profile");
  }
  options.action = action;
  return std::nullopt;
}

std::vector<CheckProblem> check_profiles(const proto::StatusInfo& status, const std::vector<std::string>& wanted,
                                         std::int64_t now)
{
  std::vector<CheckProblem> problems;
  const auto check_one = [&](const proto::ProfileInfo& profile) {
    if (!holds_valid_token(profile, now)) {
      problems.push_back(CheckProblem{profile.name, k_exit_temporary, "not_ready",
                                      fmt::format("profile {}: no valid token: {}", profile.name, describe(profile))});
    }
  };
  if (wanted.empty()) {
    for (const auto& profile : status.profiles) {
      check_one(profile);
    }
    return problems;
  }
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    const std::string& name = wanted[i];
    if (std::find(wanted.begin(), wanted.begin() + static_cast<std::ptrdiff_t>(i), name) !=
        wanted.begin() + static_cast<std::ptrdiff_t>(i)) {
      continue; // named twice: reported once
    }
    const auto it = std::find_if(status.profiles.begin(), status.profiles.end(),
                                 [&](const proto::ProfileInfo& p) { return p.name == name; });
    if (it == status.profiles.end()) {
      problems.push_back(CheckProblem{name, k_exit_ok, "missing", ""});
    } else {
      check_one(*it);
    }
  }
  return problems;
}

int check_exit_code(const std::vector<CheckProblem>& problems)
{
  int code = k_exit_ok;
  const auto rank = [](int exit_code) {
    return exit_code == k_exit_unknown_profile ? 4
           : exit_code == k_exit_forbidden     ? 3
           : exit_code == k_exit_temporary     ? 1
           : exit_code == k_exit_ok            ? 0
                                               : 2; // 69/70: the daemon could not be asked
  };
  for (const auto& problem : problems) {
    if (rank(problem.exit_code) > rank(code)) {
      code = problem.exit_code;
    }
  }
  return code;
}

int run_check(const Options& options)
{
  const auto reply = fetch_status(options);
  if (!reply) {
    return report(options, reply.error());
  }
  std::vector<CheckProblem> problems = check_profiles(reply->status, options.profiles, std::time(nullptr));
  for (auto& problem : problems) {
    if (problem.code == "missing") {
      problem = ask_why(options, problem.profile);
    }
  }
  std::erase_if(problems, [](const CheckProblem& p) { return p.exit_code == k_exit_ok; });
  for (const auto& problem : problems) {
    const bool named = problem.message.find(problem.profile) != std::string::npos;
    report(options, {problem.exit_code, problem.code,
                     named ? problem.message : fmt::format("profile {}: {}", problem.profile, problem.message)});
  }
  return check_exit_code(problems);
}

int run_metrics(const Options& options)
{
  auto line = ok_reply_line(options, proto::Request{proto::Op::metrics, {}, {}, {}});
  if (!line) {
    return report(options, line.error());
  }
  const auto text = proto::parse_metrics_reply(*line);
  if (!text) {
    return report(options, {k_exit_software, "protocol", "unreadable metrics from iamtokend: " + text.error()});
  }
  return print_or_report(options, *text);
}

} // namespace iamtok::client
