#include "daemon/log/log.hpp"
#include "daemon/server/dispatch.hpp"
#include "tests/unit/engine_fakes.hpp"
#include "tests/support/dispatch_fixture.hpp"
#include "tests/support/log_capture.hpp"

#include <catch2/catch.hpp>

#include <optional>
#include <vector>

using namespace iamtok;
using namespace iamtok::engine::testing;
using server::Caller;
using server::Dispatcher;
using server::ReplyLine;

namespace {

using test::k_daemon_uid;

config::Config make_config()
{
  config::Config config;
  config.profiles = {test::profile("reader", "P1"),
                     test::profile("deployer", "P2", {}, {}, config::Allow{{1001}, {500}, {}, {}})};
  return config;
}

Caller caller(uid_t uid, gid_t gid = 100, std::vector<gid_t> groups = {})
{
  return Caller{uid, gid, 1, std::move(groups)};
}

struct Fixture : FakePorts, test::DispatchStack
{
  Fixture() : test::DispatchStack(ports(), make_config(), k_daemon_uid, [this] { return counters; }) {}

  server::Traffic counters{7, 2, 3};

  // Handles `line` and runs simulated time until it is answered (at most 60 s).
  std::optional<ReplyLine> ask(std::string_view line, const Caller& who)
  {
    std::optional<ReplyLine> reply;
    dispatcher.handle(line, who, [&](ReplyLine r) { reply = std::move(r); });
    for (int i = 0; i < 600 && !reply; ++i) {
      timers.advance(100ms);
    }
    return reply;
  }
};

proto::Reply parsed(const std::optional<ReplyLine>& reply)
{
  REQUIRE(reply);
  auto result = proto::parse_reply(reply->line);
  REQUIRE(result);
  return std::move(*result);
}

} // namespace

TEST_CASE("may_use allows root, the daemon's uid, listed uids, gids and supplementary groups")
{
  config::Profile open;
  open.name = "open";
  config::Profile closed;
  closed.name = "closed";
  closed.allow = config::Allow{{1001}, {500}, {}, {}};

  CHECK(server::may_use(open, caller(2000), k_daemon_uid));
  CHECK(server::may_use(closed, caller(0), k_daemon_uid));
  CHECK(server::may_use(closed, caller(k_daemon_uid), k_daemon_uid));
  CHECK(server::may_use(closed, caller(1001), k_daemon_uid));
  CHECK(server::may_use(closed, caller(2000, 500), k_daemon_uid));
  CHECK(server::may_use(closed, caller(2000, 100, {7, 500}), k_daemon_uid));
  CHECK_FALSE(server::may_use(closed, caller(2000, 100, {7, 8}), k_daemon_uid));
}

TEST_CASE("a ping is answered ok and echoes its id")
{
  Fixture f;
  auto reply = f.ask(R"({"op":"ping","id":"abc"})", caller(2000));
  const auto r = parsed(reply);
  CHECK(r.ok);
  CHECK(r.id == proto::RequestId(std::string("abc")));
  CHECK_FALSE(reply->error);
}

TEST_CASE("a token request is answered with the engine's token for its profile")
{
  Fixture f;
  f.upstream.answer_all(300s, 3600s);
  auto reply = f.ask(R"({"op":"token","profile":"reader","id":7,"min_valid_s":300})", caller(2000));
  const auto r = parsed(reply);
  REQUIRE(r.is_token());
  CHECK(r.id == proto::RequestId(std::int64_t{7}));
  CHECK(r.profile == "reader");
  CHECK(r.expires_in > 300);
  CHECK(f.upstream.last_exchange().target.id == "P1");
  const bool token_matches = r.access_token.expose().starts_with("P1-");
  CHECK(token_matches);
}

TEST_CASE("a token request for a profile that does not exist is unknown_profile")
{
  Fixture f;
  const auto r = parsed(f.ask(R"({"op":"token","profile":"nope","id":1})", caller(0)));
  CHECK(r.error_code() == proto::ErrorCode::unknown_profile);
  CHECK(r.id == proto::RequestId(std::int64_t{1}));
  CHECK(f.upstream.exchanges() == 0);
}

TEST_CASE("a token request from a caller the allow list excludes is forbidden")
{
  Fixture f;
  f.upstream.answer_all(300s, 3600s);
  const auto denied = parsed(f.ask(R"({"op":"token","profile":"deployer"})", caller(2000)));
  CHECK(denied.error_code() == proto::ErrorCode::forbidden);
  CHECK(f.upstream.exchanges() == 0);

  const auto by_group = parsed(f.ask(R"({"op":"token","profile":"deployer"})", caller(2000, 100, {500})));
  CHECK(by_group.is_token());
  const auto by_daemon_uid = parsed(f.ask(R"({"op":"token","profile":"deployer"})", caller(k_daemon_uid)));
  CHECK(by_daemon_uid.is_token());
}

TEST_CASE("an upstream failure becomes unavailable with retry_after_s and the upstream details")
{
  Fixture f;
  f.upstream.cr_responder = [] { return issued("cr", 300s); };
  f.upstream.exchange_responder = [](const engine::ProfileTarget&, const Secret&) {
    return failed(http_error(403, "BXNIM0514E"));
  };
  const auto r = parsed(f.ask(R"({"op":"token","profile":"reader","id":"x"})", caller(0)));
  CHECK(r.error_code() == proto::ErrorCode::unavailable);
  CHECK(r.id == proto::RequestId(std::string("x")));
  REQUIRE(r.retry_after_s);
  CHECK(*r.retry_after_s >= 1);
  CHECK(r.upstream.status == 403);
  CHECK(r.upstream.code == "BXNIM0514E");
  CHECK(r.upstream.request_id == "req-1");
}

TEST_CASE("to_error_info maps each engine error code")
{
  engine::TokenError unknown{engine::TokenError::Code::unknown_profile, "gone", 0, std::nullopt};
  CHECK(server::to_error_info(unknown).code == proto::ErrorCode::unknown_profile);
  CHECK_FALSE(server::to_error_info(unknown).retry_after_s);

  engine::UpstreamError upstream;
  upstream.http_status = 401;
  upstream.code = "BXNIM0407E";
  upstream.request_id = "r-9";
  engine::TokenError unavailable{engine::TokenError::Code::unavailable, "down", 12, upstream};
  const auto info = server::to_error_info(unavailable);
  CHECK(info.code == proto::ErrorCode::unavailable);
  CHECK(info.retry_after_s == 12);
  CHECK(info.upstream == proto::UpstreamInfo{401, "BXNIM0407E", "r-9"});
}

TEST_CASE("malformed requests get bad_request with the id when it could be read")
{
  Fixture f;
  const auto syntax = f.ask(R"({"op":"ping",)", caller(0));
  CHECK(parsed(syntax).error_code() == proto::ErrorCode::bad_request);
  CHECK(syntax->error);
  CHECK_FALSE(syntax->last);
  const auto unknown_op = parsed(f.ask(R"({"op":"dance","id":3})", caller(0)));
  CHECK(unknown_op.error_code() == proto::ErrorCode::bad_request);
  CHECK(unknown_op.id == proto::RequestId(std::int64_t{3}));
  const auto watch = parsed(f.ask(R"({"op":"watch","profile":"reader"})", caller(0)));
  CHECK(watch.error_code() == proto::ErrorCode::bad_request);
}

TEST_CASE("status lists only the profiles the caller may use, with engine and server counters")
{
  Fixture f;
  f.upstream.answer_all(300s, 3600s);
  f.engine.start();
  f.timers.advance(5s);

  auto stranger = proto::parse_status_reply(f.ask(R"({"op":"status","id":5})", caller(2000))->line);
  REQUIRE(stranger);
  REQUIRE(stranger->profiles.size() == 1);
  CHECK(stranger->profiles[0].name == "reader");
  CHECK(stranger->profiles[0].state == "fresh");
  CHECK(stranger->profiles[0].expires_at);
  CHECK(stranger->source.type == "imds");
  CHECK(stranger->source.state == "ok");
  CHECK(stranger->counters.requests == 7);
  CHECK(stranger->counters.errors == 2);
  CHECK(stranger->counters.connections == 3);
  CHECK(stranger->counters.upstream_calls == f.upstream.history.size());

  auto root = proto::parse_status_reply(f.ask(R"({"op":"status"})", caller(0))->line);
  REQUIRE(root);
  REQUIRE(root->profiles.size() == 2);
  CHECK(root->profiles[1].name == "deployer");
}

TEST_CASE("status reports a profile's last upstream error")
{
  Fixture f;
  f.upstream.cr_responder = [] { return issued("cr", 300s); };
  f.upstream.exchange_responder = [](const engine::ProfileTarget&, const Secret&) {
    return failed(http_error(403, "BXNIM0514E"));
  };
  f.engine.start();
  f.timers.advance(5s);
  auto status = proto::parse_status_reply(f.ask(R"({"op":"status"})", caller(0))->line);
  REQUIRE(status);
  REQUIRE(status->profiles.size() == 2);
  CHECK(status->profiles[0].state == "failed");
  REQUIRE(status->profiles[0].last_error);
  CHECK(status->profiles[0].last_error->status == 403);
  CHECK(status->profiles[0].last_error->code == "BXNIM0514E");
}

TEST_CASE("a watch gets the current token, then each renewal, until it is dropped")
{
  Fixture f;
  f.upstream.answer_all(300s, 100s);
  std::vector<ReplyLine> replies;
  auto request = proto::parse_request(R"({"op":"watch","profile":"reader","id":9})");
  REQUIRE(request);
  std::optional<server::Watch> watch =
    f.dispatcher.watch(*request, caller(2000), [&](ReplyLine r) { replies.push_back(std::move(r)); });
  f.timers.advance(1s);
  REQUIRE(replies.size() == 1);
  const auto first = parsed(replies[0]);
  CHECK(first.is_token());
  CHECK(first.id == proto::RequestId(std::int64_t{9}));

  f.timers.advance(100s); // renewed at 80% of the lifetime
  REQUIRE(replies.size() == 2);
  const auto second = parsed(replies[1]);
  CHECK(second.is_token());
  CHECK_FALSE(second.access_token == first.access_token);
  CHECK_FALSE(replies[1].last);

  watch.reset();
  f.timers.advance(300s);
  CHECK(replies.size() == 2);
}

TEST_CASE("a watch of a forbidden or unknown profile is one last error reply")
{
  Fixture f;
  std::vector<ReplyLine> replies;
  auto forbidden = proto::parse_request(R"({"op":"watch","profile":"deployer"})");
  auto unknown = proto::parse_request(R"({"op":"watch","profile":"nope"})");
  auto w1 = f.dispatcher.watch(*forbidden, caller(2000), [&](ReplyLine r) { replies.push_back(std::move(r)); });
  auto w2 = f.dispatcher.watch(*unknown, caller(0), [&](ReplyLine r) { replies.push_back(std::move(r)); });
  REQUIRE(replies.size() == 2);
  CHECK(parsed(replies[0]).error_code() == proto::ErrorCode::forbidden);
  CHECK(replies[0].last);
  CHECK(parsed(replies[1]).error_code() == proto::ErrorCode::unknown_profile);
  CHECK(replies[1].last);
}

TEST_CASE("a watch whose profile a reload removes gets one last unknown_profile reply")
{
  Fixture f;
  f.upstream.answer_all(300s, 100s);
  std::vector<ReplyLine> replies;
  auto request = proto::parse_request(R"({"op":"watch","profile":"reader"})");
  auto watch = f.dispatcher.watch(*request, caller(0), [&](ReplyLine r) { replies.push_back(std::move(r)); });
  f.timers.advance(1s);
  REQUIRE(replies.size() == 1);
  f.engine.reconfigure(engine::Settings{}, {{"deployer", {"P2", "", ""}}});
  REQUIRE(replies.size() == 2);
  CHECK(parsed(replies[1]).error_code() == proto::ErrorCode::unknown_profile);
  CHECK(replies[1].last);
}

TEST_CASE("the metrics op answers the text of the metrics source, to any caller")
{
  Fixture f;
  const auto before = parsed(f.ask(R"({"op":"metrics","id":3})", caller(2000)));
  CHECK(before.error_code() == proto::ErrorCode::internal); // no source set

  f.dispatcher.set_metrics([] { return std::string("iamtokend_build_info{version=\"x\"} 1\n"); });
  const auto reply = f.ask(R"({"op":"metrics","id":3})", caller(2000));
  REQUIRE(reply);
  CHECK_FALSE(reply->error);
  const auto text = proto::parse_metrics_reply(reply->line);
  REQUIRE(text);
  CHECK(*text == "iamtokend_build_info{version=\"x\"} 1\n");
}

TEST_CASE("error replies carry their code for the request counters")
{
  Fixture f;
  CHECK(f.ask(R"({"op":"token","profile":"deployer"})", caller(2000))->code == proto::ErrorCode::forbidden);
  CHECK(f.ask(R"({"op":"token","profile":"nope"})", caller(2000))->code == proto::ErrorCode::unknown_profile);
  CHECK(f.ask(R"({"op":)", caller(2000))->code == proto::ErrorCode::bad_request);
}

TEST_CASE("denials and first grants reach the audit trail, tokens never")
{
  test::LogCapture capture(log::Level::info);
  Fixture f;
  f.upstream.answer_all(300s, 100s);
  const auto denied = parsed(f.ask(R"({"op":"token","profile":"deployer"})", Caller{2000, 100, 77, {}}));
  CHECK(denied.error_code() == proto::ErrorCode::forbidden);
  const auto first = parsed(f.ask(R"({"op":"token","profile":"reader"})", Caller{2000, 100, 78, {}}));
  const auto second = parsed(f.ask(R"({"op":"token","profile":"reader"})", Caller{2000, 100, 79, {}}));
  REQUIRE(first.is_token());
  CHECK(second.access_token == first.access_token);
  f.timers.advance(100s); // renewed
  const auto renewed = parsed(f.ask(R"({"op":"token","profile":"reader"})", Caller{2000, 100, 80, {}}));
  REQUIRE(renewed.is_token());
  CHECK_FALSE(renewed.access_token == first.access_token);

  std::vector<std::string> audit;
  for (const auto& line : capture.lines()) {
    if (line.find("denied:") != std::string::npos || line.find("granted:") != std::string::npos) {
      audit.push_back(line);
    }
    CHECK(line.find(first.access_token.expose()) == std::string::npos);
    CHECK(line.find(renewed.access_token.expose()) == std::string::npos);
  }
  REQUIRE(audit.size() == 3);
  CHECK(audit[0] == "WARN denied: uid 2000 pid 77 via socket profile deployer: forbidden (caller may not use this profile)");
  CHECK(audit[1].starts_with("INFO granted: uid 2000 pid 78 via socket profile reader: token generation "));
  CHECK(audit[2].starts_with("INFO granted: uid 2000 pid 80 via socket profile reader: token generation "));
}
