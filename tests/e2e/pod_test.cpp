// End-to-end tests of what follows IBM's current services, with the real
// iamtokend against iamtoken-sim: the pod source recovering by itself when
// kubelet writes a good CR token (its `..data` symlink swap, an atomic
// rename, a plain write), token lifetimes bounded by the JWT, the instance's
// default trusted profile, and the deprecation warning of the IAM grant on a
// VSI. Tokens are never printed.

#include "tests/e2e/daemon_fixture.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

using namespace iamtok;
using namespace iamtok::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// The engine retries a rejected CR token at the backoff cap (60 s): a
// recovery well inside half of it came from the file watch, not the backoff.
constexpr auto k_backoff_cap = 60s;

// An instance identity token from the simulator's IMDS: a CR token its IAM accepts.
std::string identity_token(const std::string& sim_url)
{
  std::string body;
  CURL* curl = curl_easy_init();
  REQUIRE(curl != nullptr);
  curl_slist* headers = curl_slist_append(nullptr, "Metadata-Flavor: ibm");
  headers = curl_slist_append(headers, "Content-Type: application/json");
  const std::string url = sim_url + "/identity/v1/token?version=2025-08-26";
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PUT");
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, R"({"expires_in":3600})");
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t count, void* out) {
    static_cast<std::string*>(out)->append(data, size * count);
    return size * count;
  });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  const auto code = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  REQUIRE(code == CURLE_OK);
  const std::string key = R"("access_token":")";
  const auto at = body.find(key);
  REQUIRE(at != std::string::npos);
  const auto start = at + key.size();
  return body.substr(start, body.find('"', start) - start);
}

std::string pod_config(DaemonFixture& fixture, const std::string& token_path)
{
  return fmt::format(R"({{"socket":{{"path":"{}","mode":"0600"}},)"
                     R"("source":{{"type":"file","file":{{"path":"{}"}}}},)"
                     R"("iam":{{"endpoint":"{}"}},)"
                     R"("refresh":{{"timeout_s":10}},)"
                     R"("profiles":[{{"name":"reader","profile_id":"{}"}}]}})",
                     fixture.socket_path(), token_path, fixture.sim().url(), k_reader_id);
}

void write_file(const std::filesystem::path& path, const std::string& text)
{
  std::ofstream out(path, std::ios::trunc);
  out << text << "\n";
}

// Waits until the daemon has tried the bad token and is backing off on it.
void wait_for_rejection(const DaemonFixture& fixture)
{
  REQUIRE(eventually(
    [&] {
      const auto info = fixture.status();
      return info && !info->profiles.empty() && info->profiles[0].last_error
             && info->profiles[0].last_error->code == "BXNIM0407E";
    },
    20s));
  REQUIRE_FALSE(fixture.token("reader").is_token());
}

// The reply to a token request, retried while the daemon does not answer at
// all (its socket file exists a moment before it listens); any reply ends it.
proto::Reply first_reply(const DaemonFixture& fixture, const std::string& profile)
{
  proto::Reply reply;
  eventually(
    [&] {
      reply = fixture.token(profile, 0);
      return reply.ok || !reply.code.empty();
    },
    10s);
  return reply;
}

// Milliseconds from now until a token request succeeds (at most `limit`).
std::optional<std::chrono::milliseconds> time_to_token(const DaemonFixture& fixture, std::chrono::milliseconds limit)
{
  const auto started = Clock::now();
  if (!eventually([&] { return fixture.token("reader", 0).is_token(); }, limit)) {
    return std::nullopt;
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
}

} // namespace

TEST_CASE("a pod recovers as soon as kubelet swaps in a good token, and keeps short-lived tokens fresh",
          "[daemon][pod]")
{
  DaemonFixture fixture({"--iam-lifetime", "4"});
  const auto tokens = fixture.dir() / "tokens";
  std::filesystem::create_directories(tokens / "..2026_11_23_08_00_00.1");
  write_file(tokens / "..2026_11_23_08_00_00.1" / "sa-token", "not-a-valid-cr-token");
  std::filesystem::create_directory_symlink("..2026_11_23_08_00_00.1", tokens / "..data");
  std::filesystem::create_symlink("..data/sa-token", tokens / "sa-token");
  fixture.write_text(pod_config(fixture, (tokens / "sa-token").string()));
  fixture.launch();
  wait_for_rejection(fixture);
  const auto attempts_before = json_count(fixture.sim_stats(), "iam");

  // kubelet's atomic update: a new timestamped directory, a ..data_tmp
  // symlink to it, renamed over ..data. The file's own name never changes.
  std::filesystem::create_directories(tokens / "..2026_11_23_08_10_00.2");
  write_file(tokens / "..2026_11_23_08_10_00.2" / "sa-token", identity_token(fixture.sim().url()));
  std::filesystem::create_directory_symlink("..2026_11_23_08_10_00.2", tokens / "..data_tmp");
  std::filesystem::rename(tokens / "..data_tmp", tokens / "..data");
  const auto recovered = time_to_token(fixture, k_backoff_cap / 2);
  REQUIRE(recovered.has_value());
  WARN(fmt::format("recovery after the ..data swap: {} ms", recovered->count()));
  CHECK(fixture.daemon().stderr_text().find("the CR token file changed") != std::string::npos);
  CHECK(json_count(fixture.sim_stats(), "iam") > attempts_before);

  // 4 s tokens: refreshed ahead of expiry (at 0.8 of the lifetime, from
  // sending), so over three lifetimes every request finds a valid one.
  const auto until = Clock::now() + 12s;
  while (Clock::now() < until) {
    const auto reply = fixture.token("reader", 0);
    REQUIRE(reply.is_token());
    REQUIRE(reply.expires_in <= 4);
    std::this_thread::sleep_for(200ms);
  }
  CHECK(json_count(fixture.sim_stats(), k_reader_id) >= 3);
}

TEST_CASE("a pod also recovers on an atomic rename and on a plain write of the token file", "[daemon][pod]")
{
  const bool rename = GENERATE(true, false);
  INFO((rename ? "atomic rename" : "plain write"));
  DaemonFixture fixture;
  const auto path = fixture.dir() / "sa-token";
  write_file(path, "not-a-valid-cr-token");
  fixture.write_text(pod_config(fixture, path.string()));
  fixture.launch();
  wait_for_rejection(fixture);

  const auto good = identity_token(fixture.sim().url());
  if (rename) {
    write_file(fixture.dir() / ".sa-token.new", good);
    std::filesystem::rename(fixture.dir() / ".sa-token.new", path);
  } else {
    write_file(path, good);
  }
  const auto recovered = time_to_token(fixture, k_backoff_cap / 2);
  REQUIRE(recovered.has_value());
  WARN(fmt::format("recovery after a {}: {} ms", rename ? "rename" : "plain write", recovered->count()));
}

TEST_CASE("a token's JWT exp bounds its lifetime even when expires_in claims more", "[daemon][lifetime]")
{
  DaemonFixture fixture;
  REQUIRE(fixture.sim_fault(R"({"target":"imds_iam_token","mode":"short_jwt","jwt_lifetime_s":8,"count":1})").status
          == 204);
  DaemonConfig config;
  config.profiles = fmt::format(R"([{{"name":"reader","profile_id":"{}"}}])", k_reader_id);
  config.min_valid_s = 0;
  fixture.start(config);
  const auto reply = first_reply(fixture, "reader");
  REQUIRE(reply.is_token());
  CHECK(reply.expires_in <= 8); // not the 3600 s expires_in said
  CHECK(fixture.daemon().wait_for_output("shorter than expires_in", Process::Stream::err, 10s));
}

TEST_CASE("a profile without a selector gets the instance's default trusted profile from IMDS", "[daemon][imds]")
{
  DaemonFixture fixture({"--default-profile", std::string(k_deployer_id)});
  DaemonConfig config;
  config.profiles = R"([{"name":"default"}])";
  fixture.start(config);
  REQUIRE(first_reply(fixture, "default").is_token());
  const auto stats = fixture.sim_stats();
  CHECK(json_count(stats, k_deployer_id) == 1);
  CHECK(json_count(stats, "imds_iam_token") == 1);
  CHECK(json_count(stats, "iam") == 0);
}

TEST_CASE("exchange iam with an imds source works, with a deprecation warning at start and in --check-config",
          "[daemon][imds]")
{
  DaemonFixture fixture;
  auto text = fixture.config_json(DaemonConfig{});
  text.insert(1, R"("exchange":"iam",)");
  fixture.write_text(text);
  const auto check = run_program(IAMTOKEND_BINARY, {"--check-config", "--config", fixture.config_path()});
  CHECK(check.exit_code == 0);
  CHECK(check.err.find("warning: exchange:") != std::string::npos);
  CHECK(check.err.find("deprecates") != std::string::npos);

  fixture.launch();
  REQUIRE(first_reply(fixture, "reader").is_token());
  CHECK(json_count(fixture.sim_stats(), "iam") >= 1);
  CHECK(fixture.daemon().wait_for_output("deprecates", Process::Stream::err, 10s));
}
