// The simulator's own control endpoints under /sim/ (docs/simulator.md):
// fault rules, counters and their reset, for loopback clients only.

#include "sim/simulator.hpp"

#include "proto/json.hpp"
#include "sim/context.hpp"
#include "util/expected.hpp"

#include <fmt/format.h>
#include <tl/expected.hpp>

#include <array>
#include <utility>

namespace iamtok::sim {

namespace {

using namespace std::chrono_literals;

constexpr std::array<std::pair<std::string_view, std::optional<Target>>, 4> k_targets{{
  {"imds_token", Target::imds_token},
  {"imds_iam_token", Target::imds_iam_token},
  {"iam", Target::iam},
  {"all", std::nullopt},
}};

constexpr std::array<std::pair<std::string_view, FaultMode>, 8> k_modes{{
  {"status", FaultMode::status},
  {"hang", FaultMode::hang},
  {"reset", FaultMode::reset},
  {"garbage", FaultMode::garbage},
  {"slow", FaultMode::slow},
  {"redirect", FaultMode::redirect},
  {"html", FaultMode::html},
  {"short_jwt", FaultMode::short_jwt},
}};

// The value `name` stands for in `table`, or nullopt.
template<typename T, std::size_t N>
std::optional<T> lookup(const std::array<std::pair<std::string_view, T>, N>& table, std::string_view name)
{
  for (const auto& [key, value] : table) {
    if (key == name) {
      return value;
    }
  }
  return std::nullopt;
}

Response control_error(int status, std::string_view message)
{
  return json_response(status, json::ObjectWriter().string("error", message).finish());
}

// A POST /sim/faults body: the rule, and its target (nullopt: all).
struct FaultRequest
{
  std::optional<Target> target;
  FaultRule rule;
};

// The member's value if it is a JSON integer in [lo, hi]; else the message
// "<key>: an integer from <lo> to <hi>".
tl::expected<std::int64_t, std::string> integer_in(const simdjson::dom::key_value_pair& field, std::int64_t lo,
                                                   std::int64_t hi)
{
  std::int64_t value = 0;
  if (field.value.get(value) != simdjson::SUCCESS || value < lo || value > hi) {
    return tl::unexpected(fmt::format("{}: an integer from {} to {}", field.key, lo, hi));
  }
  return value;
}

// The fault a POST /sim/faults body sets, or the message for its first problem.
tl::expected<FaultRequest, std::string> parse_fault(std::string_view body)
{
  simdjson::dom::parser parser;
  IAMTOK_TRY_ASSIGN(doc, json::parse_document(parser, body));
  simdjson::dom::object object;
  if (doc.get(object) != simdjson::SUCCESS) {
    return tl::unexpected(std::string("the body must be a JSON object"));
  }
  FaultRequest fault;
  FaultRule& rule = fault.rule;
  bool have_target = false;
  std::optional<FaultMode> mode;
  bool status_given = false;
  for (const auto field : object) {
    std::string_view text;
    const bool is_text = field.value.get(text) == simdjson::SUCCESS;
    if (field.key == "target") {
      const auto target = is_text ? lookup(k_targets, text) : std::nullopt;
      if (!target) {
        return tl::unexpected(std::string("target: one of imds_token, imds_iam_token, iam, all"));
      }
      fault.target = *target;
      have_target = true;
    } else if (field.key == "mode") {
      mode = is_text ? lookup(k_modes, text) : std::nullopt;
      if (!mode) {
        return tl::unexpected(
          std::string("mode: one of status, hang, reset, garbage, slow, redirect, html, short_jwt"));
      }
    } else if (field.key == "status") {
      IAMTOK_TRY_ASSIGN(status, integer_in(field, 300, 599));
      rule.status = static_cast<int>(status);
      status_given = true;
    } else if (field.key == "location") {
      if (!is_text || text.empty() || text.size() > 512) {
        return tl::unexpected(std::string("location: a non-empty string of at most 512 characters"));
      }
      rule.location = std::string(text);
    } else if (field.key == "jwt_lifetime_s") {
      IAMTOK_TRY_ASSIGN(seconds, integer_in(field, 1, 86400));
      rule.jwt_lifetime = std::chrono::seconds(seconds);
    } else if (field.key == "retry_after_s") {
      IAMTOK_TRY_ASSIGN(seconds, integer_in(field, 0, 86400));
      rule.retry_after_s = static_cast<int>(seconds);
    } else if (field.key == "delay_ms") {
      IAMTOK_TRY_ASSIGN(ms, integer_in(field, 0, 600000));
      rule.delay = std::chrono::milliseconds(ms);
    } else if (field.key == "count") {
      IAMTOK_TRY_ASSIGN(count, integer_in(field, 1, 1'000'000'000));
      rule.remaining = count;
    } else {
      std::string name;
      json::append_path_key(name, field.key);
      return tl::unexpected(fmt::format("unknown field {}", name));
    }
  }
  if (!have_target || !mode) {
    return tl::unexpected(std::string("target and mode are required"));
  }
  if (*mode == FaultMode::redirect) {
    if (!status_given) {
      rule.status = 302;
    } else if (rule.status >= 400) {
      return tl::unexpected(std::string("status: a redirect takes a status from 300 to 399"));
    }
  } else if (!status_given && *mode == FaultMode::html) {
    rule.status = 502;
  } else if (status_given && rule.status < 400) {
    return tl::unexpected(std::string("status: from 400 to 599 (300 to 399 only with mode redirect)"));
  }
  rule.mode = *mode;
  return fault;
}

} // namespace

Action Simulator::handle_control(const Request& request)
{
  const auto respond = [](Response r) { return Action{Action::Kind::respond, 0ms, std::move(r)}; };
  if (!request.from_loopback) {
    return respond(control_error(403, "control endpoints answer loopback clients only"));
  }
  const auto no_content = [] {
    Response r;
    r.status = 204;
    return r;
  };
  if (request.path == "/sim/stats") {
    if (request.method != "GET") {
      return respond(method_not_allowed(control_error(405, "use GET"), "GET"));
    }
    json::ObjectWriter by_profile;
    for (const auto& [id, count] : m_stats.by_profile) {
      by_profile.integer(id, count);
    }
    json::ObjectWriter body;
    body.integer("imds_token", m_stats.imds_token)
      .integer("imds_iam_token", m_stats.imds_iam_token)
      .integer("iam", m_stats.iam)
      .raw("by_profile", by_profile.finish())
      .integer("connections", m_stats.connections);
    return respond(json_response(200, body.finish()));
  }
  if (request.path == "/sim/reset") {
    if (request.method != "POST") {
      return respond(method_not_allowed(control_error(405, "use POST"), "POST"));
    }
    reset_stats();
    return respond(no_content());
  }
  if (request.path != "/sim/faults") {
    return respond(control_error(404, "unknown control endpoint"));
  }
  if (request.method == "DELETE") {
    clear_faults();
    return respond(no_content());
  }
  if (request.method != "POST") {
    return respond(method_not_allowed(control_error(405, "use POST or DELETE"), "POST, DELETE"));
  }
  const auto fault = parse_fault(request.body);
  if (!fault) {
    return respond(control_error(400, fault.error()));
  }
  set_fault(fault->target, fault->rule);
  return respond(no_content());
}

} // namespace iamtok::sim
