#include "proto/codec.hpp"

#include "proto/json.hpp"

#include <fmt/format.h>

#include <array>
#include <utility>

namespace iamtok::proto {

namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

constexpr std::array<std::string_view, 7> k_error_names = {
  "bad_request", "request_too_large", "unknown_profile", "forbidden", "busy", "unavailable", "internal"};
constexpr std::array<std::string_view, 5> k_op_names = {"token", "status", "ping", "watch", "metrics"};

// One parser per thread, reused: parsing a request line then allocates
// nothing but the padded copy. Every caller copies what it needs out of the
// DOM before returning.
simdjson::dom::parser& thread_parser()
{
  thread_local simdjson::dom::parser parser;
  return parser;
}

std::optional<element> find(object obj, std::string_view key)
{
  element value;
  if (obj.at_key(key).get(value) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  return value;
}

using json::WipeOnExit;

// ---- output --------------------------------------------------------------

void append_int(std::string& out, std::int64_t value)
{
  const fmt::format_int text(value);
  out.append(text.data(), text.size());
}

void append_uint(std::string& out, std::uint64_t value)
{
  const fmt::format_int text(value);
  out.append(text.data(), text.size());
}

void append_int_or_null(std::string& out, const std::optional<std::int64_t>& value)
{
  if (value) {
    append_int(out, *value);
  } else {
    out.append("null");
  }
}

// Appends ,"name": (the caller appends the value).
void append_key(std::string& out, std::string_view name)
{
  out.push_back(',');
  json::append_quoted(out, name);
  out.push_back(':');
}

// Appends ,"id":<id> when the request had an id.
void append_id(std::string& out, const RequestId& id)
{
  if (const auto* number = std::get_if<std::int64_t>(&id)) {
    out.append(",\"id\":");
    append_int(out, *number);
  } else if (const auto* text = std::get_if<std::string>(&id)) {
    out.append(",\"id\":");
    json::append_quoted(out, *text);
  }
}

void append_upstream_members(std::string& out, int status, std::string_view code, std::string_view request_id)
{
  if (status != 0) {
    append_key(out, "status");
    append_int(out, status);
  }
  if (!code.empty()) {
    append_key(out, "code");
    json::append_quoted(out, code);
  }
  if (!request_id.empty()) {
    append_key(out, "request_id");
    json::append_quoted(out, request_id);
  }
}

// ---- input ---------------------------------------------------------------

// Reads the members of one object, remembering the first problem as a
// message naming the member by its path ("profiles[1].state must be a string").
class ObjectReader
{
public:
  ObjectReader(object obj, std::string path, std::string& error)
    : m_object(obj), m_path(std::move(path)), m_error(error)
  {
  }

  std::string path(std::string_view key) const
  {
    std::string result = m_path;
    json::append_path_key(result, key);
    return result;
  }

  // A required member; nullopt (and an error) if absent.
  std::optional<element> required(std::string_view key)
  {
    auto value = find(m_object, key);
    if (!value) {
      fail(fmt::format("missing {}", path(key)));
    }
    return value;
  }

  // An optional member; nullopt if absent or null.
  std::optional<element> optional(std::string_view key)
  {
    auto value = find(m_object, key);
    if (value && value->is_null()) {
      return std::nullopt;
    }
    return value;
  }

  void string(std::string_view key, std::string& out)
  {
    if (auto value = required(key)) {
      convert_string(key, *value, out);
    }
  }

  void int64(std::string_view key, std::int64_t& out)
  {
    if (auto value = required(key)) {
      convert_int64(key, *value, out);
    }
  }

  void uint64(std::string_view key, std::uint64_t& out)
  {
    if (auto value = required(key)) {
      if (value->get_uint64().get(out) != simdjson::SUCCESS) {
        fail(fmt::format("{} must be a non-negative integer", path(key)));
      }
    }
  }

  // Present and null, or absent: nullopt.
  void nullable_int64(std::string_view key, std::optional<std::int64_t>& out)
  {
    if (auto value = optional(key)) {
      std::int64_t number = 0;
      if (convert_int64(key, *value, number)) {
        out = number;
      }
    }
  }

  void optional_string(std::string_view key, std::string& out)
  {
    if (auto value = optional(key)) {
      convert_string(key, *value, out);
    }
  }

  void optional_http_status(std::string_view key, int& out)
  {
    if (auto value = optional(key)) {
      std::int64_t number = 0;
      if (value->get_int64().get(number) != simdjson::SUCCESS || number < 0 || number > 999) {
        fail(fmt::format("{} must be an HTTP status", path(key)));
      } else {
        out = static_cast<int>(number);
      }
    }
  }

  std::optional<object> child_object(std::string_view key, bool nullable)
  {
    auto value = nullable ? optional(key) : required(key);
    object result;
    if (!value) {
      return std::nullopt;
    }
    if (value->get_object().get(result) != simdjson::SUCCESS) {
      fail(fmt::format("{} must be an object", path(key)));
      return std::nullopt;
    }
    return result;
  }

  void fail(std::string message)
  {
    if (m_error.empty()) {
      m_error = std::move(message);
    }
  }

private:
  bool convert_string(std::string_view key, element value, std::string& out)
  {
    std::string_view text;
    if (value.get_string().get(text) != simdjson::SUCCESS) {
      fail(fmt::format("{} must be a string", path(key)));
      return false;
    }
    out.assign(text);
    return true;
  }

  bool convert_int64(std::string_view key, element value, std::int64_t& out)
  {
    if (value.get_int64().get(out) != simdjson::SUCCESS) {
      fail(fmt::format("{} must be an integer", path(key)));
      return false;
    }
    return true;
  }

  object m_object;
  std::string m_path;
  std::string& m_error;
};

// Reads an "id" member: absent, a string or a 64-bit integer.
tl::expected<RequestId, std::string> read_id(object obj)
{
  const auto value = find(obj, "id");
  if (!value) {
    return RequestId{};
  }
  switch (value->type()) {
  case element_type::INT64: return RequestId{value->get_int64().value_unsafe()};
  case element_type::STRING: return RequestId{std::string(value->get_string().value_unsafe())};
  default: return tl::unexpected(std::string("id must be a string or a 64-bit integer"));
  }
}

std::string_view strip_line_end(std::string_view line)
{
  if (!line.empty() && line.back() == '\n') {
    line.remove_suffix(1);
  }
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  return line;
}

// The line as one JSON object, or a message.
tl::expected<object, std::string> parse_object(simdjson::dom::parser& parser, std::string_view line,
                                               std::string_view not_object)
{
  auto root = json::parse_document(parser, line);
  if (!root) {
    return tl::unexpected(std::move(root.error()));
  }
  object obj;
  if (root->get_object().get(obj) != simdjson::SUCCESS) {
    return tl::unexpected(std::string(not_object));
  }
  return obj;
}

// Reads what every reply has (ok, id) and the members of token and error
// replies into `reply`; the first problem goes to `error`. parse_reply and
// parse_status_reply share it, so a line is a status reply only if it is
// also an ok reply.
void read_reply(object obj, Reply& reply, std::string& error)
{
  ObjectReader top(obj, "", error);
  if (auto ok = top.required("ok")) {
    if (ok->get_bool().get(reply.ok) != simdjson::SUCCESS) {
      top.fail("ok must be a boolean");
    }
  }
  if (auto id = read_id(obj)) {
    reply.id = std::move(*id);
  } else {
    top.fail(std::move(id.error()));
  }
  if (!error.empty()) {
    return;
  }

  if (reply.ok) {
    if (find(obj, "access_token")) {
      std::string token;
      std::string token_type;
      top.string("profile", reply.profile);
      top.string("access_token", token);
      top.string("token_type", token_type);
      top.int64("expires_at", reply.expires_at);
      top.int64("expires_in", reply.expires_in);
      reply.access_token = Secret(std::move(token));
      wipe_string(token); // a short token stays in the moved-from small buffer
      if (error.empty() && reply.access_token.empty()) {
        top.fail("access_token is empty");
      }
      if (error.empty() && token_type != "Bearer") {
        top.fail("token_type must be Bearer");
      }
    }
  } else if (auto error_obj = top.child_object("error", false)) {
    ObjectReader reader(*error_obj, "error", error);
    reader.string("code", reply.code);
    reader.string("message", reply.message);
    std::optional<std::int64_t> retry_after;
    reader.nullable_int64("retry_after_s", retry_after);
    reply.retry_after_s = retry_after;
    if (auto upstream = reader.child_object("upstream", true)) {
      ObjectReader up(*upstream, "error.upstream", error);
      up.optional_http_status("status", reply.upstream.status);
      up.optional_string("code", reply.upstream.code);
      up.optional_string("request_id", reply.upstream.request_id);
    }
  }
}

// The enumerator whose name (in `names`, indexed by value) is `name`.
template <typename Enum, std::size_t N>
std::optional<Enum> from_name(const std::array<std::string_view, N>& names, std::string_view name) noexcept
{
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == name) {
      return static_cast<Enum>(i);
    }
  }
  return std::nullopt;
}

} // namespace

std::string_view to_string(ErrorCode code) noexcept
{
  return k_error_names[static_cast<std::size_t>(code)];
}

std::optional<ErrorCode> parse_error_code(std::string_view name) noexcept
{
  return from_name<ErrorCode>(k_error_names, name);
}

std::string_view to_string(Op op) noexcept
{
  return k_op_names[static_cast<std::size_t>(op)];
}

std::optional<Op> parse_op(std::string_view name) noexcept
{
  return from_name<Op>(k_op_names, name);
}

tl::expected<Request, RequestError> parse_request(std::string_view line)
{
  const auto fail = [](std::string message, RequestId id = {}) {
    return tl::unexpected(RequestError{ErrorCode::bad_request, std::move(message), std::move(id)});
  };

  auto obj = parse_object(thread_parser(), line, "request must be a JSON object");
  if (!obj) {
    return fail(std::move(obj.error()));
  }

  Request request;
  auto id = read_id(*obj);
  if (!id) {
    return fail(std::move(id.error()));
  }
  request.id = std::move(*id);

  std::string_view op_name;
  const auto op_value = find(*obj, "op");
  if (!op_value) {
    return fail("missing op", std::move(request.id));
  }
  if (op_value->get_string().get(op_name) != simdjson::SUCCESS) {
    return fail("op must be a string", std::move(request.id));
  }
  const auto op = parse_op(op_name);
  if (!op) {
    return fail("unknown op (expected token, status, ping, watch or metrics)", std::move(request.id));
  }
  request.op = *op;
  if (request.op == Op::status || request.op == Op::ping || request.op == Op::metrics) {
    return request;
  }

  const auto profile = find(*obj, "profile");
  std::string_view profile_name;
  if (!profile) {
    return fail(fmt::format("missing profile (required for {})", op_name), std::move(request.id));
  }
  if (profile->get_string().get(profile_name) != simdjson::SUCCESS) {
    return fail("profile must be a string", std::move(request.id));
  }
  if (profile_name.empty()) {
    return fail("profile must not be empty", std::move(request.id));
  }
  request.profile.assign(profile_name);

  if (const auto min_valid = find(*obj, "min_valid_s")) {
    std::int64_t seconds = 0;
    if (min_valid->type() != element_type::INT64 && min_valid->type() != element_type::UINT64) {
      return fail("min_valid_s must be an integer", std::move(request.id));
    }
    if (min_valid->get_int64().get(seconds) != simdjson::SUCCESS || seconds < 0 || seconds > k_max_min_valid_s) {
      return fail(fmt::format("min_valid_s must be between 0 and {}", k_max_min_valid_s), std::move(request.id));
    }
    request.min_valid_s = seconds;
  }
  return request;
}

std::string format_request(const Request& request)
{
  std::string out = "{\"op\":";
  json::append_quoted(out, to_string(request.op));
  append_id(out, request.id);
  if (request.op == Op::token || request.op == Op::watch) {
    append_key(out, "profile");
    json::append_quoted(out, request.profile);
    if (request.min_valid_s) {
      append_key(out, "min_valid_s");
      append_int(out, *request.min_valid_s);
    }
  }
  out.append("}\n");
  return out;
}

std::string format_token_reply(const RequestId& id, std::string_view profile, const Secret& access_token,
                               std::int64_t expires_at, std::int64_t expires_in)
{
  std::string out;
  out.reserve(160 + profile.size() + access_token.size());
  out.append("{\"ok\":true");
  append_id(out, id);
  append_key(out, "profile");
  json::append_quoted(out, profile);
  append_key(out, "access_token");
  json::append_quoted(out, access_token.expose());
  out.append(",\"token_type\":\"Bearer\"");
  append_key(out, "expires_at");
  append_int(out, expires_at);
  append_key(out, "expires_in");
  append_int(out, expires_in);
  out.append("}\n");
  return out;
}

std::string format_ok_reply(const RequestId& id)
{
  std::string out = "{\"ok\":true";
  append_id(out, id);
  out.append("}\n");
  return out;
}

std::string format_metrics_reply(const RequestId& id, std::string_view text)
{
  std::string out;
  out.reserve(text.size() + text.size() / 8 + 32);
  out.append("{\"ok\":true");
  append_id(out, id);
  append_key(out, "text");
  json::append_quoted(out, text);
  out.append("}\n");
  return out;
}

std::string format_error_reply(const RequestId& id, const ErrorInfo& error)
{
  std::string out = "{\"ok\":false";
  append_id(out, id);
  out.append(",\"error\":{\"code\":");
  json::append_quoted(out, to_string(error.code));
  append_key(out, "message");
  json::append_quoted(out, error.message);
  if (error.retry_after_s) {
    append_key(out, "retry_after_s");
    append_int(out, *error.retry_after_s);
  }
  if (!error.upstream.empty()) {
    append_key(out, "upstream");
    const std::size_t open = out.size();
    out.push_back('{');
    append_upstream_members(out, error.upstream.status, error.upstream.code, error.upstream.request_id);
    out.erase(open + 1, 1); // the leading comma of the first member
    out.push_back('}');
  }
  out.append("}}\n");
  return out;
}

std::string format_error_reply(const RequestId& id, ErrorCode code, std::string_view message)
{
  return format_error_reply(id, ErrorInfo{code, std::string(message), std::nullopt, {}});
}

std::string format_status_reply(const RequestId& id, const StatusInfo& status)
{
  std::string out = "{\"ok\":true";
  append_id(out, id);
  append_key(out, "version");
  json::append_quoted(out, status.version);
  append_key(out, "uptime_s");
  append_int(out, status.uptime_s);

  out.append(",\"source\":{\"type\":");
  json::append_quoted(out, status.source.type);
  append_key(out, "state");
  json::append_quoted(out, status.source.state);
  append_key(out, "expires_at");
  append_int_or_null(out, status.source.expires_at);
  out.append("},\"profiles\":[");

  bool first = true;
  for (const auto& profile : status.profiles) {
    out.append(first ? "{\"name\":" : ",{\"name\":");
    first = false;
    json::append_quoted(out, profile.name);
    append_key(out, "state");
    json::append_quoted(out, profile.state);
    append_key(out, "expires_at");
    append_int_or_null(out, profile.expires_at);
    append_key(out, "refresh_at");
    append_int_or_null(out, profile.refresh_at);
    append_key(out, "refreshes");
    append_uint(out, profile.refreshes);
    append_key(out, "failures");
    append_uint(out, profile.failures);
    append_key(out, "last_error");
    if (const auto& last = profile.last_error) {
      out.append("{\"message\":");
      json::append_quoted(out, last->message);
      append_upstream_members(out, last->status, last->code, last->request_id);
      out.push_back('}');
    } else {
      out.append("null");
    }
    out.push_back('}');
  }

  out.append("],\"counters\":{\"requests\":");
  append_uint(out, status.counters.requests);
  append_key(out, "errors");
  append_uint(out, status.counters.errors);
  append_key(out, "upstream_calls");
  append_uint(out, status.counters.upstream_calls);
  append_key(out, "connections");
  append_uint(out, status.counters.connections);
  out.append("}}\n");
  return out;
}

std::optional<ErrorCode> Reply::error_code() const noexcept
{
  return ok ? std::nullopt : parse_error_code(code);
}

tl::expected<Reply, std::string> parse_reply(std::string_view line)
{
  line = strip_line_end(line);
  // A parser of our own, wiped on the way out: a token reply puts the token
  // in its string buffer.
  simdjson::dom::parser parser;
  const WipeOnExit wipe{parser};
  auto obj = parse_object(parser, line, "reply is not a JSON object");
  if (!obj) {
    return tl::unexpected(std::move(obj.error()));
  }
  Reply reply;
  std::string error;
  read_reply(*obj, reply, error);
  if (!error.empty()) {
    return tl::unexpected(std::move(error));
  }
  reply.raw = Secret(std::string(line));
  return reply;
}

namespace {

// The object of an ok reply `line` parsed with `parser`, or a message when
// parse_reply would not accept it as an ok reply.
tl::expected<object, std::string> ok_reply_object(simdjson::dom::parser& parser, std::string_view line)
{
  auto obj = parse_object(parser, strip_line_end(line), "reply is not a JSON object");
  if (!obj) {
    return tl::unexpected(std::move(obj.error()));
  }
  std::string error;
  Reply reply;
  read_reply(*obj, reply, error);
  if (!error.empty()) {
    return tl::unexpected(std::move(error));
  }
  if (!reply.ok) {
    return tl::unexpected(std::string("not an ok reply"));
  }
  return *obj;
}

// Parses `line` as an ok reply with a parser of its own (status replies can
// be big: many profiles), wiped like parse_reply's in case the line carries
// a token, and reads its object with `read`.
template<typename T>
tl::expected<T, std::string> read_ok_reply(std::string_view line, tl::expected<T, std::string> (*read)(object))
{
  simdjson::dom::parser parser;
  const WipeOnExit wipe{parser};
  auto obj = ok_reply_object(parser, line);
  if (!obj) {
    return tl::unexpected(std::move(obj.error()));
  }
  return read(*obj);
}

tl::expected<std::string, std::string> read_metrics(object obj)
{
  std::string error;
  std::string text;
  ObjectReader top(obj, "", error);
  top.string("text", text);
  if (!error.empty()) {
    return tl::unexpected(std::move(error));
  }
  return text;
}

tl::expected<StatusInfo, std::string> read_status(object obj)
{
  std::string error;
  StatusInfo status;
  ObjectReader top(obj, "", error);
  top.string("version", status.version);
  top.int64("uptime_s", status.uptime_s);
  if (auto source = top.child_object("source", false)) {
    ObjectReader reader(*source, "source", error);
    reader.string("type", status.source.type);
    reader.string("state", status.source.state);
    reader.nullable_int64("expires_at", status.source.expires_at);
  }
  if (auto profiles = top.required("profiles")) {
    array list; // iterating a default-constructed array is undefined: check first
    if (profiles->get_array().get(list) != simdjson::SUCCESS) {
      top.fail("profiles must be an array");
      return tl::unexpected(std::move(error));
    }
    std::size_t index = 0;
    for (const auto item : list) {
      std::string path = "profiles";
      json::append_path_index(path, index++);
      object profile_obj;
      if (item.get_object().get(profile_obj) != simdjson::SUCCESS) {
        top.fail(path + " must be an object");
        break;
      }
      ProfileInfo& profile = status.profiles.emplace_back();
      ObjectReader reader(profile_obj, path, error);
      reader.string("name", profile.name);
      reader.string("state", profile.state);
      reader.nullable_int64("expires_at", profile.expires_at);
      reader.nullable_int64("refresh_at", profile.refresh_at);
      reader.uint64("refreshes", profile.refreshes);
      reader.uint64("failures", profile.failures);
      if (auto last = reader.child_object("last_error", true)) {
        LastError& last_error = profile.last_error.emplace();
        ObjectReader last_reader(*last, reader.path("last_error"), error);
        last_reader.string("message", last_error.message);
        last_reader.optional_http_status("status", last_error.status);
        last_reader.optional_string("code", last_error.code);
        last_reader.optional_string("request_id", last_error.request_id);
      }
      if (!error.empty()) {
        break;
      }
    }
  }
  if (auto counters = top.child_object("counters", false)) {
    ObjectReader reader(*counters, "counters", error);
    reader.uint64("requests", status.counters.requests);
    reader.uint64("errors", status.counters.errors);
    reader.uint64("upstream_calls", status.counters.upstream_calls);
    reader.uint64("connections", status.counters.connections);
  }
  if (!error.empty()) {
    return tl::unexpected(std::move(error));
  }
  return status;
}

} // namespace

tl::expected<std::string, std::string> parse_metrics_reply(std::string_view line)
{
  return read_ok_reply(line, read_metrics);
}

tl::expected<StatusInfo, std::string> parse_status_reply(std::string_view line)
{
  return read_ok_reply(line, read_status);
}

} // namespace iamtok::proto
