// End-to-end tests of the iamtoken-sim binary over real HTTP (libcurl):
// the token chain, every fault mode as a client sees it, counters with
// keep-alive, concurrency under latency, limits and signals. Tokens are
// never printed: assertions on them are booleans.

#include "tests/e2e/sim_process.hpp"

#include <catch2/catch.hpp>
#include <curl/curl.h>
#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using iamtok::test::Process;
using iamtok::test::ProcessOptions;
using iamtok::test::SimProcess;
using iamtok::test::TempDir;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view k_reader_id = "Profile-00000000-0000-4000-8000-000000000001";
constexpr std::string_view k_grant = "urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Acr-token";

struct CurlGlobal
{
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  ~CurlGlobal() { curl_global_cleanup(); }
};
const CurlGlobal k_curl_global;

struct Reply
{
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers; // names lower-cased
  std::chrono::milliseconds elapsed{0};
};

struct Call
{
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;
  std::string body;
  long timeout_ms = 10000;
};

std::size_t write_body(char* data, std::size_t size, std::size_t count, void* user)
{
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

std::size_t write_header(char* data, std::size_t size, std::size_t count, void* user)
{
  std::string_view line(data, size * count);
  const auto colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string name(line.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    auto value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') {
      value.remove_prefix(1);
    }
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
      value.remove_suffix(1);
    }
    (*static_cast<std::map<std::string, std::string>*>(user))[name] = std::string(value);
  }
  return size * count;
}

// One libcurl easy handle: requests on one Client reuse its connection.
class Client
{
public:
  Client() : m_easy(curl_easy_init()) {}
  ~Client()
  {
    curl_slist_free_all(m_headers);
    curl_easy_cleanup(m_easy);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sets the handle up for `call`, writing into `reply` (also for curl multi).
  CURL* prepare(const Call& call, Reply& reply)
  {
    curl_easy_reset(m_easy);
    curl_slist_free_all(m_headers);
    m_headers = nullptr;
    for (const auto& h : call.headers) {
      m_headers = curl_slist_append(m_headers, h.c_str());
    }
    m_body = call.body;
    curl_easy_setopt(m_easy, CURLOPT_URL, call.url.c_str());
    curl_easy_setopt(m_easy, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(m_easy, CURLOPT_TIMEOUT_MS, call.timeout_ms);
    curl_easy_setopt(m_easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(m_easy, CURLOPT_HTTPHEADER, m_headers);
    curl_easy_setopt(m_easy, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(m_easy, CURLOPT_WRITEDATA, &reply.body);
    curl_easy_setopt(m_easy, CURLOPT_HEADERFUNCTION, write_header);
    curl_easy_setopt(m_easy, CURLOPT_HEADERDATA, &reply.headers);
    if (call.method != "GET") {
      curl_easy_setopt(m_easy, CURLOPT_POSTFIELDS, m_body.c_str());
      curl_easy_setopt(m_easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(m_body.size()));
      curl_easy_setopt(m_easy, CURLOPT_CUSTOMREQUEST, call.method.c_str());
    }
    return m_easy;
  }

  CURL* handle() const { return m_easy; }

  Reply perform(const Call& call)
  {
    Reply reply;
    prepare(call, reply);
    const auto start = std::chrono::steady_clock::now();
    reply.code = curl_easy_perform(m_easy);
    reply.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    curl_easy_getinfo(m_easy, CURLINFO_RESPONSE_CODE, &reply.status);
    return reply;
  }

private:
  CURL* m_easy;
  curl_slist* m_headers = nullptr;
  std::string m_body;
};

// The requests IBM's SDKs send (docs/upstream.md).
Call imds_token_call(const SimProcess& sim, std::string_view path = "/identity/v1/token",
                     std::string_view version = "2025-08-26")
{
  return {"PUT",
          fmt::format("{}{}?version={}", sim.url(), path, version),
          {"Metadata-Flavor: ibm", "Accept: application/json", "Content-Type: application/json"},
          R"({"expires_in": 300})"};
}

Call imds_iam_call(const SimProcess& sim, const std::string& identity_token, std::string body)
{
  return {"POST",
          sim.url() + "/identity/v1/iam_tokens?version=2025-08-26",
          {"Authorization: Bearer " + identity_token, "Metadata-Flavor: ibm", "Accept: application/json",
           "Content-Type: application/json"},
          std::move(body)};
}

Call iam_call(const SimProcess& sim, const std::string& cr_token, std::string_view profile_params)
{
  return {"POST",
          sim.url() + "/identity/token",
          {"Content-Type: application/x-www-form-urlencoded", "Accept: application/json"},
          fmt::format("grant_type={}&cr_token={}&{}", k_grant, cr_token, profile_params)};
}

Call control_call(const SimProcess& sim, std::string method, std::string path, std::string body = {})
{
  return {std::move(method), sim.url() + path, {"Content-Type: application/json"}, std::move(body)};
}

// A string member of a JSON reply ("" if absent or not JSON).
std::string json_string(const std::string& body, const char* pointer)
{
  simdjson::dom::parser parser;
  std::string_view value;
  if (parser.parse(body).at_pointer(pointer).get(value) != simdjson::SUCCESS) {
    return {};
  }
  return std::string(value);
}

std::int64_t json_int(const std::string& body, const char* pointer)
{
  simdjson::dom::parser parser;
  std::int64_t value = -1;
  if (parser.parse(body).at_pointer(pointer).get(value) != simdjson::SUCCESS) {
    return -1;
  }
  return value;
}

std::string identity_token(Client& client, const SimProcess& sim)
{
  const auto reply = client.perform(imds_token_call(sim));
  REQUIRE(reply.code == CURLE_OK);
  REQUIRE(reply.status == 200);
  const auto token = json_string(reply.body, "/access_token");
  REQUIRE_FALSE(token.empty());
  return token;
}

void post_fault(Client& client, const SimProcess& sim, const std::string& rule)
{
  const auto reply = client.perform(control_call(sim, "POST", "/sim/faults", rule));
  REQUIRE(reply.code == CURLE_OK);
  REQUIRE(reply.status == 204);
}

std::string stats(Client& client, const SimProcess& sim)
{
  const auto reply = client.perform(control_call(sim, "GET", "/sim/stats"));
  REQUIRE(reply.status == 200);
  return reply.body;
}

} // namespace

TEST_CASE("the simulator listens on an ephemeral loopback port and says so", "[sim][e2e]")
{
  SimProcess sim;
  CHECK(sim.port() != 0);
  CHECK(sim.process().wait_for_output(fmt::format("listening on 127.0.0.1:{}\n", sim.port()), Process::Stream::out));
  CHECK(sim.process().stop() == 0);
}

TEST_CASE("a stop at once after the simulator says it listens is a clean stop, every time", "[sim][e2e][signals]")
{
  // Its two announcements: the port file (written first) and the line on
  // stdout. The test watches for each without sleeping between looks and
  // sends SIGTERM the moment it appears; a simulator that announced before
  // its handlers were in place would die of the signal (143).
  constexpr int k_rounds = 20;
  for (int round = 0; round < k_rounds; ++round) {
    INFO("round " << round);
    TempDir dir;
    const auto port_file = dir / "port";
    ProcessOptions options;
    options.binary = IAMTOK_SIM_BINARY;
    options.args = {"--listen", "127.0.0.1:0", "--port-file", port_file.string(), "--quiet"};
    Process sim(options);
    const bool by_line = round % 2 == 1;
    const auto announced = [&] {
      return by_line ? sim.stdout_text().find("listening on 127.0.0.1:") != std::string::npos
                     : std::filesystem::exists(port_file);
    };
    const auto deadline = std::chrono::steady_clock::now() + iamtok::test::k_start_limit;
    while (!announced() && sim.running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    REQUIRE(announced());
    sim.signal(SIGTERM);
    CHECK(sim.wait(iamtok::test::k_stop_limit) == 0);
  }
}

TEST_CASE("a SIGTERM that arrives while the simulator prints its port is a clean stop", "[sim][e2e][signals]")
{
  // The race made certain: stdout is a full pipe, so the simulator blocks
  // inside its write of "listening on ..." (after the port file). SIGTERM
  // arrives there; the simulator must already handle it.
  iamtok::test::FullPipe out;
  TempDir dir;
  const auto port_file = dir / "port";
  ProcessOptions options;
  options.binary = IAMTOK_SIM_BINARY;
  options.args = {"--listen", "127.0.0.1:0", "--port-file", port_file.string(), "--quiet"};
  options.stdout_fd = out.write_end();
  Process sim(options);
  out.close_write_end();

  std::optional<bool> blocked;
  const auto deadline = std::chrono::steady_clock::now() + iamtok::test::k_start_limit;
  while (!(blocked = iamtok::test::blocked_in_syscall(sim.pid(), SYS_write, 1)).value_or(true) && sim.running() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  if (!blocked) {
    INFO(sim.stderr_text());
    REQUIRE(sim.running());
    WARN("cannot read /proc/PID/syscall; not checked");
    return;
  }
  REQUIRE(*blocked);
  CHECK(std::filesystem::exists(port_file));
  sim.signal(SIGTERM);
  // Let it go on, and see how it ends.
  const auto stop_deadline = std::chrono::steady_clock::now() + iamtok::test::k_stop_limit;
  while (sim.running() && std::chrono::steady_clock::now() < stop_deadline) {
    out.release(4096);
    std::this_thread::sleep_for(1ms);
  }
  CHECK(sim.wait(0ms) == 0);
}

TEST_CASE("an identity token from IMDS buys access tokens at IMDS and IAM", "[sim][e2e]")
{
  SimProcess sim({"--iam-lifetime", "30"});
  Client client;
  const auto token = identity_token(client, sim);

  const auto via_imds = client.perform(imds_iam_call(sim, token, R"({"trusted_profile": {"name": "reader"}})"));
  REQUIRE(via_imds.status == 200);
  CHECK_FALSE(json_string(via_imds.body, "/access_token").empty());
  CHECK(json_int(via_imds.body, "/expires_in") == 30);

  // The pod source: the CR token travels through a file, as kubelet projects it.
  TempDir dir;
  { std::ofstream(dir / "sa-token") << token; }
  const auto from_file = iamtok::test::read_file(dir / "sa-token");
  const auto via_iam = client.perform(iam_call(sim, from_file, fmt::format("profile_id={}", k_reader_id)));
  REQUIRE(via_iam.status == 200);
  CHECK(json_string(via_iam.body, "/token_type") == "Bearer");
  CHECK(json_int(via_iam.body, "/expires_in") == 30);
  CHECK(via_iam.headers.count("transaction-id") == 1);

  const auto old_generation = client.perform(imds_token_call(sim, "/instance_identity/v1/token", "2022-03-01"));
  CHECK(old_generation.status == 200);
  const auto removed = client.perform(imds_token_call(sim, "/instance_identity/v1/token", "2025-08-26"));
  CHECK(removed.status == 404);
  CHECK(json_string(removed.body, "/errors/0/code") == "not_found");

  const auto counters = stats(client, sim);
  CHECK(json_int(counters, "/imds_token") == 3);
  CHECK(json_int(counters, "/imds_iam_token") == 1);
  CHECK(json_int(counters, "/iam") == 1);
  CHECK(json_int(counters, "/by_profile/Profile-00000000-0000-4000-8000-000000000001") == 2);

  // No token reaches the simulator's log.
  sim.process().stop();
  const auto log = sim.process().stderr_text();
  CHECK(log.find("PUT /identity/v1/token 200") != std::string::npos);
  CHECK(log.find(token) == std::string::npos);
}

TEST_CASE("a status fault reaches the client with its error body and Retry-After", "[sim][e2e]")
{
  SimProcess sim;
  Client client;
  const auto token = identity_token(client, sim);
  post_fault(client, sim, R"({"target":"iam","mode":"status","status":503,"retry_after_s":2,"count":1})");
  auto faulted = client.perform(iam_call(sim, token, "profile_name=reader"));
  CHECK(faulted.code == CURLE_OK);
  CHECK(faulted.status == 503);
  CHECK(faulted.headers["retry-after"] == "2");
  CHECK(json_string(faulted.body, "/errorCode") == "BXNIM0503E");
  CHECK_FALSE(json_string(faulted.body, "/context/requestId").empty());
  CHECK(client.perform(iam_call(sim, token, "profile_name=reader")).status == 200);

  post_fault(client, sim, R"({"target":"imds_token","mode":"status","status":500})");
  const auto imds = client.perform(imds_token_call(sim));
  CHECK(imds.status == 500);
  CHECK(json_string(imds.body, "/errors/0/code") == "service_error");
  CHECK(imds.headers.count("retry-after") == 0);
}

TEST_CASE("a garbage fault answers 200 with a body that is not JSON", "[sim][e2e]")
{
  SimProcess sim;
  Client client;
  post_fault(client, sim, R"({"target":"imds_token","mode":"garbage","count":1})");
  const auto reply = client.perform(imds_token_call(sim));
  CHECK(reply.code == CURLE_OK);
  CHECK(reply.status == 200);
  simdjson::dom::parser parser;
  CHECK(parser.parse(reply.body).error() != simdjson::SUCCESS);
}

TEST_CASE("a reset fault ends the connection without an HTTP reply", "[sim][e2e]")
{
  SimProcess sim;
  Client client;
  post_fault(client, sim, R"({"target":"imds_token","mode":"reset","count":1})");
  // A fresh connection: libcurl silently retries a request whose reused
  // keep-alive connection dies before any reply byte.
  Client fresh;
  const auto reply = fresh.perform(imds_token_call(sim));
  CHECK(reply.code != CURLE_OK);
  CHECK(reply.code != CURLE_OPERATION_TIMEDOUT);
  CHECK(reply.status == 0);
  CHECK(client.perform(imds_token_call(sim)).status == 200);
}

TEST_CASE("a slow fault delays the normal answer", "[sim][e2e]")
{
  SimProcess sim;
  Client client;
  post_fault(client, sim, R"({"target":"imds_token","mode":"slow","delay_ms":300,"count":1})");
  const auto slow = client.perform(imds_token_call(sim));
  CHECK(slow.status == 200); // the normal answer, not a timeout
  CHECK(slow.elapsed >= 300ms);
}

TEST_CASE("a hang fault makes the client time out, and other requests still work", "[sim][e2e]")
{
  SimProcess sim;
  Client client;
  post_fault(client, sim, R"({"target":"imds_token","mode":"hang","count":1})");
  auto call = imds_token_call(sim);
  call.timeout_ms = 1000;
  const auto hung = client.perform(call);
  CHECK(hung.code == CURLE_OPERATION_TIMEDOUT); // no answer: the client's own timeout ended it
  CHECK(client.perform(imds_token_call(sim)).status == 200);
  CHECK(json_int(stats(client, sim), "/imds_token") == 2);
}

TEST_CASE("DELETE /sim/faults clears a fault that had no count", "[sim][e2e]")
{
  SimProcess sim;
  Client client;
  post_fault(client, sim, R"({"target":"all","mode":"status","status":502})");
  CHECK(client.perform(imds_token_call(sim)).status == 502);
  CHECK(client.perform(imds_token_call(sim)).status == 502);
  CHECK(client.perform(control_call(sim, "DELETE", "/sim/faults")).status == 204);
  CHECK(client.perform(imds_token_call(sim)).status == 200);
}

TEST_CASE("stats count TCP connections, so keep-alive is visible", "[sim][e2e]")
{
  SimProcess sim;
  Client control;
  REQUIRE(control.perform(control_call(sim, "POST", "/sim/reset")).status == 204);
  {
    Client keep_alive;
    CHECK(keep_alive.perform(imds_token_call(sim)).status == 200);
    CHECK(keep_alive.perform(imds_token_call(sim)).status == 200);
  }
  auto counters = stats(control, sim);
  CHECK(json_int(counters, "/connections") == 1);
  CHECK(json_int(counters, "/imds_token") == 2);
  {
    Client first;
    Client second;
    CHECK(first.perform(imds_token_call(sim)).status == 200);
    CHECK(second.perform(imds_token_call(sim)).status == 200);
  }
  counters = stats(control, sim);
  CHECK(json_int(counters, "/connections") == 3);
}

TEST_CASE("latency delays each request without holding up the others", "[sim][e2e]")
{
  constexpr int k_requests = 20;
  constexpr auto k_latency = 500ms;
  SimProcess sim({"--latency-ms", std::to_string(k_latency.count()), "--quiet"});
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<Reply> replies(k_requests);
  CURLM* multi = curl_multi_init();
  for (int i = 0; i < k_requests; ++i) {
    clients.push_back(std::make_unique<Client>());
    curl_multi_add_handle(multi, clients.back()->prepare(imds_token_call(sim), replies[static_cast<std::size_t>(i)]));
  }
  const auto start = std::chrono::steady_clock::now();
  int running = k_requests;
  for (int rounds = 0; running > 0 && rounds < 10000; ++rounds) {
    curl_multi_perform(multi, &running);
    if (running > 0) {
      curl_multi_poll(multi, nullptr, 0, 100, nullptr);
    }
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  int ok = 0;
  while (CURLMsg* message = [&] { int left = 0; return curl_multi_info_read(multi, &left); }()) {
    if (message->msg == CURLMSG_DONE && message->data.result == CURLE_OK) {
      long status = 0;
      curl_easy_getinfo(message->easy_handle, CURLINFO_RESPONSE_CODE, &status);
      ok += status == 200 ? 1 : 0;
    }
  }
  for (auto& c : clients) {
    curl_multi_remove_handle(multi, c->handle());
  }
  curl_multi_cleanup(multi);
  CHECK(ok == k_requests);
  CHECK(elapsed >= k_latency);
  // Served one after another they would take k_requests x k_latency (10 s):
  // less shows they overlapped, with 9.5 s to spare for a slow machine.
  CHECK(elapsed < k_requests * k_latency);
}

TEST_CASE("oversized request bodies get 413 and unparsable requests 400", "[sim][e2e]")
{
  SimProcess sim;
  Client client;
  auto big = iam_call(sim, "x", "profile_name=reader");
  big.body += "&pad=" + std::string(70 * 1024, 'a');
  big.headers.push_back("Expect:");
  auto reply = client.perform(big);
  CHECK(reply.status == 413);
  CHECK(reply.headers["connection"] == "close");

  auto bad = imds_token_call(sim);
  bad.method = "BREW";
  const auto bad_reply = client.perform(bad);
  CHECK(bad_reply.status == 400);
}

TEST_CASE("the simulator stops cleanly on SIGTERM and SIGINT", "[sim][e2e]")
{
  for (const int sig : {SIGTERM, SIGINT}) {
    SimProcess sim;
    Client client;
    post_fault(client, sim, R"({"target":"imds_token","mode":"hang"})");
    Client hanging;
    auto call = imds_token_call(sim);
    call.timeout_ms = 300;
    CHECK(hanging.perform(call).code == CURLE_OPERATION_TIMEDOUT);
    sim.process().signal(sig);
    CHECK(sim.process().wait(iamtok::test::k_stop_limit) == 0);
  }
}

TEST_CASE("the simulator refuses to listen on a non-loopback address", "[sim][e2e]")
{
  ProcessOptions options;
  options.binary = IAMTOK_SIM_BINARY;
  options.args = {"--listen", "0.0.0.0:0"};
  Process process(options);
  CHECK(process.wait(iamtok::test::k_start_limit) == 64);
  CHECK(process.stderr_text().find("loopback") != std::string::npos);
}
