// Runs the real iamtokend and iamtoken-get against iamtoken-sim: formats and
// exit codes, renewal, an outage, single flight under load, reload, stop and
// socket activation. Tokens are compared, never printed.

#include "tests/e2e/daemon_fixture.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <algorithm>
#include <cstdlib>
#include <set>
#include <sys/syscall.h>
#include <thread>

using namespace iamtok;
using namespace iamtok::test;
using namespace std::chrono_literals;

namespace {

// True if `text` contains any of `tokens` or the start of a JWT.
bool leaks(const std::string& text, const std::vector<std::string>& tokens)
{
  for (const auto& token : tokens) {
    if (!token.empty() && text.find(token) != std::string::npos) {
      return true;
    }
  }
  return text.find("eyJ") != std::string::npos;
}

std::string first_line(const std::string& text)
{
  return text.substr(0, text.find('\n'));
}

// A Unix socket the test itself listens on (for replies iamtokend never sends).
class FakeDaemon
{
public:
  explicit FakeDaemon(std::string path, std::optional<std::string> reply)
    : m_path(std::move(path))
  {
    m_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, m_path.c_str(), sizeof(address.sun_path) - 1);
    REQUIRE(::bind(m_fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0);
    REQUIRE(::listen(m_fd, 8) == 0);
    if (reply) {
      m_thread = std::thread([this, text = *reply] {
        pollfd entry{m_fd, POLLIN, 0};
        // The client is a process still starting.
        if (::poll(&entry, 1, static_cast<int>(k_start_limit.count())) == 1) {
          const int client = ::accept(m_fd, nullptr, nullptr);
          (void)read_line(client, k_react_limit);
          write_all(client, text);
          ::close(client);
        }
      });
    }
  }
  ~FakeDaemon()
  {
    if (m_thread.joinable()) {
      m_thread.join();
    }
    ::close(m_fd);
    ::unlink(m_path.c_str());
  }
  FakeDaemon(const FakeDaemon&) = delete;
  FakeDaemon& operator=(const FakeDaemon&) = delete;

private:
  std::string m_path;
  int m_fd = -1;
  std::thread m_thread;
};

// A datagram socket standing in for systemd's NOTIFY_SOCKET.
class NotifySocket
{
public:
  explicit NotifySocket(std::string path) : m_path(std::move(path))
  {
    m_fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(m_path.size() < sizeof(address.sun_path));
    std::strncpy(address.sun_path, m_path.c_str(), sizeof(address.sun_path) - 1);
    REQUIRE(::bind(m_fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0);
  }
  ~NotifySocket()
  {
    ::close(m_fd);
    ::unlink(m_path.c_str());
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::string& path() const { return m_path; }

  // True if a datagram that has arrived (and not been read yet) holds the
  // line `line`; does not wait.
  bool received(std::string_view line)
  {
    bool found = false;
    char buffer[4096];
    for (ssize_t n; (n = ::recv(m_fd, buffer, sizeof(buffer), 0)) > 0;) {
      std::string_view text(buffer, static_cast<std::size_t>(n));
      while (!text.empty()) {
        const auto end = std::min(text.find('\n'), text.size());
        found = found || text.substr(0, end) == line;
        text.remove_prefix(std::min(end + 1, text.size()));
      }
    }
    return found;
  }

  // Discards every datagram that has arrived.
  void drain() { (void)received("\n"); }

  // Fills the socket's queue with empty datagrams, so that a sender blocks
  // until drain(); returns the sending socket, to close after the drain.
  int fill() const
  {
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, m_path.c_str(), sizeof(address.sun_path) - 1);
    REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0);
    const char byte = 0;
    for (int i = 0; i < 1'000'000 && ::send(fd, &byte, 1, MSG_DONTWAIT) == 1; ++i) {
    }
    REQUIRE((errno == EAGAIN || errno == EWOULDBLOCK));
    return fd;
  }

private:
  std::string m_path;
  int m_fd = -1;
};

} // namespace

TEST_CASE("iamtokend serves several profiles and iamtoken-get prints each format", "[daemon]")
{
  DaemonFixture fixture;
  DaemonConfig config;
  config.profiles = fmt::format(R"([{{"name":"reader","profile_id":"{}"}},{{"name":"deployer","profile_name":"deployer"}},)"
                                R"({{"name":"deployer-by-crn","profile_crn":"crn:v1:bluemix:public:iam-identity::a/0123456789abcdef0123456789abcdef::profile:{}"}}])",
                                k_reader_id, k_deployer_id);
  fixture.start(config);

  std::vector<std::string> tokens;
  for (const std::string profile : {"reader", "deployer", "deployer-by-crn"}) {
    const auto raw = fixture.get({"-p", profile});
    REQUIRE(raw.exit_code == 0);
    REQUIRE(raw.err.empty());
    REQUIRE(raw.out.size() > 20);
    REQUIRE(raw.out.back() == '\n');
    const std::string token = raw.out.substr(0, raw.out.size() - 1);
    REQUIRE(token.find('\n') == std::string::npos);
    tokens.push_back(token);

    const auto json = fixture.get({"--profile", profile, "--format", "json"});
    REQUIRE(json.exit_code == 0);
    const auto reply = proto::parse_reply(json.out);
    REQUIRE(reply.has_value());
    REQUIRE(reply->is_token());
    CHECK(reply->profile == profile);
    CHECK(reply->expires_in > 3000);
    const bool json_token_matches = reply->access_token.expose() == token;
    CHECK(json_token_matches);

    const auto header = fixture.get({"-p", profile, "--format", "header"});
    REQUIRE(header.exit_code == 0);
    const bool header_matches = header.out == "Authorization: Bearer " + token + "\n";
    CHECK(header_matches);

    const auto env = fixture.get({"-p", profile, "--format", "env", "--min-valid", "30"});
    REQUIRE(env.exit_code == 0);
    // expires_at is derived from the boot clock per request: it may move by a second.
    const std::string token_line = "IAM_ACCESS_TOKEN=" + token + "\n";
    const bool env_token_matches = env.out.starts_with(token_line);
    CHECK(env_token_matches);
    const std::string expiry_line = env.out.substr(std::min(env.out.size(), token_line.size()));
    REQUIRE(expiry_line.starts_with("IAM_TOKEN_EXPIRES_AT="));
    REQUIRE(expiry_line.back() == '\n');
    const auto expires_at = std::stoll(expiry_line.substr(std::string_view("IAM_TOKEN_EXPIRES_AT=").size()));
    CHECK(std::abs(expires_at - reply->expires_at) <= 1);
  }
  // Different trusted profiles get different tokens.
  CHECK(tokens[0] != tokens[1]);

  // IAMTOKEN_SOCKET stands in for --socket.
  const auto from_env = run_program(IAMTOKEN_GET_BINARY, {"-p", "reader"}, std::nullopt,
                                    {"IAMTOKEN_SOCKET=" + fixture.socket_path()});
  CHECK(from_env.exit_code == 0);
  const bool same_token = from_env.out == tokens[0] + "\n";
  CHECK(same_token);

  const auto table = fixture.get({"--status"});
  REQUIRE(table.exit_code == 0);
  CHECK(table.out.find("iamtokend ") == 0);
  CHECK(table.out.find("deployer-by-crn") != std::string::npos);
  CHECK(table.out.find("fresh") != std::string::npos);
  const auto status_json = fixture.get({"--status", "--format", "json"});
  REQUIRE(status_json.exit_code == 0);
  const auto status = proto::parse_status_reply(status_json.out);
  REQUIRE(status.has_value());
  REQUIRE(status->profiles.size() == 3);
  CHECK(leaks(table.out + status_json.out, tokens) == false);

  CHECK(leaks(fixture.daemon().stderr_text(), tokens) == false);
  CHECK(fixture.daemon().stderr_text().find("first token") != std::string::npos);
}

TEST_CASE("iamtoken-get exits with the code of each error class", "[daemon][client]")
{
  DaemonFixture fixture;
  fixture.start();

  SECTION("64 for a usage error, with nothing on stdout")
  {
    for (const auto& args : std::vector<std::vector<std::string>>{
           {}, {"--format", "xml", "-p", "reader"}, {"-p", "reader", "--min-valid", "1801"}, {"--bogus"},
           {"-p", "reader", "extra"}, {"--status", "--format", "header"}, {"-p", "reader", "--timeout", "0"}}) {
      const auto result = fixture.get(args);
      CHECK(result.exit_code == 64);
      CHECK(result.out.empty());
      CHECK(result.err.find("iamtoken-get: usage: ") == 0);
    }
  }
  SECTION("69 when the socket does not exist")
  {
    const auto result =
      run_program(IAMTOKEN_GET_BINARY, {"-p", "reader", "--socket", (fixture.dir() / "missing.sock").string()});
    CHECK(result.exit_code == 69);
    CHECK(result.out.empty());
    CHECK(first_line(result.err).find("iamtoken-get: unreachable: ") == 0);
    CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
  }
  SECTION("78 for an unknown profile, and --quiet keeps stderr empty")
  {
    const auto result = fixture.get({"-p", "nobody"});
    CHECK(result.exit_code == 78);
    CHECK(result.out.empty());
    CHECK(result.err.find("iamtoken-get: unknown_profile: ") == 0);
    const auto quiet = fixture.get({"-p", "nobody", "--quiet"});
    CHECK(quiet.exit_code == 78);
    CHECK(quiet.err.empty());
  }
  SECTION("70 for a reply that is not the protocol, 75 when no reply comes in time")
  {
    const auto garbage_path = (fixture.dir() / "garbage.sock").string();
    FakeDaemon garbage(garbage_path, std::string("this is not json\n"));
    const auto result = run_program(IAMTOKEN_GET_BINARY, {"-p", "reader", "--socket", garbage_path});
    CHECK(result.exit_code == 70);
    CHECK(result.out.empty());
    CHECK(result.err.find("iamtoken-get: protocol: ") == 0);

    const auto silent_path = (fixture.dir() / "silent.sock").string();
    FakeDaemon silent(silent_path, std::nullopt);
    const auto start = std::chrono::steady_clock::now();
    const auto late = run_program(IAMTOKEN_GET_BINARY, {"-p", "reader", "--socket", silent_path, "--timeout", "0.5"});
    CHECK(late.exit_code == 75);
    CHECK(late.err.find("iamtoken-get: timeout: ") == 0);
    // --timeout took effect: the default would have waited 15 s.
    CHECK(std::chrono::steady_clock::now() - start < 15s);
  }
  SECTION("--version and --help print to stdout and exit 0")
  {
    CHECK(fixture.get({"--version"}).out.find("iamtoken-get ") == 0);
    const auto help = fixture.get({"--help"});
    CHECK(help.exit_code == 0);
    CHECK(help.out.find("--min-valid") != std::string::npos);
  }
}

TEST_CASE("a caller outside a profile's allow list gets exit code 77", "[daemon][client]")
{
  // iamtoken-get runs as uid 65534 from a copy that user may execute (the
  // build tree may be in a private directory), on a socket it may reach.
  DaemonFixture fixture;
  const ExecutableCopy client(IAMTOKEN_GET_BINARY);
  if (const auto problem = other_user_run_problem(client, {{fixture.dir().path().string(), X_OK}}); !problem.empty()) {
    WARN("cannot run iamtoken-get as another user (" << problem << "); skipped");
    return;
  }
  DaemonConfig config;
  config.socket_mode = "0666";
  config.profiles = fmt::format(R"([{{"name":"reader","profile_id":"{}","allow":{{"uids":[12345]}}}},)"
                                R"({{"name":"deployer","profile_name":"deployer"}}])",
                                k_reader_id);
  fixture.start(config);

  const auto forbidden = fixture.get_as(k_other_uid, client.path(), {"-p", "reader"});
  CHECK(forbidden.exit_code == 77);
  CHECK(forbidden.out.empty());
  CHECK(forbidden.err.find("iamtoken-get: forbidden: ") == 0);
  // The same user may use a profile without an allow list, and root may use both.
  CHECK(fixture.get_as(k_other_uid, client.path(), {"-p", "deployer"}).exit_code == 0);
  CHECK(fixture.get({"-p", "reader"}).exit_code == 0);
  // Its status lists only what it may use.
  const auto status = fixture.get_as(k_other_uid, client.path(), {"--status", "--format", "json"});
  REQUIRE(status.exit_code == 0);
  const auto info = proto::parse_status_reply(status.out);
  REQUIRE(info.has_value());
  REQUIRE(info->profiles.size() == 1);
  CHECK(info->profiles[0].name == "deployer");
}

TEST_CASE("iamtoken-get exits 75 when IAM refuses and no token exists", "[daemon][client]")
{
  DaemonFixture fixture;
  REQUIRE(fixture.sim_fault(R"({"target":"imds_iam_token","mode":"status","status":400})").status == 204);
  DaemonConfig config;
  config.timeout_s = 2;
  fixture.start(config);
  REQUIRE(eventually([&] { return fixture.state_of("reader") == "failed"; }, config.attempt_limit()));

  const auto result = fixture.get({"-p", "reader", "--timeout", "10"});
  CHECK(result.exit_code == 75);
  CHECK(result.out.empty());
  CHECK(result.err.find("iamtoken-get: unavailable: ") == 0);
  CHECK(result.err.find("invalid_request") != std::string::npos);

  const auto table = fixture.get({"--status"});
  CHECK(table.out.find("failed") != std::string::npos);
  CHECK(table.out.find("invalid_request") != std::string::npos);
  CHECK(fixture.daemon().stderr_text().find("invalid_request") != std::string::npos);
}

TEST_CASE("tokens are renewed ahead of expiry without a client ever seeing an error", "[daemon][renewal]")
{
  constexpr int k_lifetime_s = 4;
  DaemonFixture fixture({"--iam-lifetime", std::to_string(k_lifetime_s)});
  DaemonConfig config;
  config.at_fraction = 0.5;
  fixture.start(config);

  // Clients ask without pause until they have seen a renewed token: the
  // first token, then its refresh (due at at_fraction of the lifetime, +5 %
  // jitter), each within attempt_limit().
  const auto renewal_limit = 2 * config.attempt_limit() + std::chrono::milliseconds(
                                                             static_cast<int>(k_lifetime_s * 1000 * 0.5 * 1.05));
  std::set<std::string> seen;
  int errors = 0;
  std::uint64_t refreshes = 0;
  const auto end = std::chrono::steady_clock::now() + renewal_limit;
  for (int i = 0; i < 10'000 && std::chrono::steady_clock::now() < end && (seen.size() < 2 || refreshes < 2); ++i) {
    const auto result = fixture.get({"-p", "reader", "--min-valid", "0"});
    if (result.exit_code != 0) {
      ++errors;
    } else {
      seen.insert(result.out);
    }
    const auto reader = fixture.profile_status("reader");
    refreshes = reader ? reader->refreshes : 0;
    std::this_thread::sleep_for(100ms);
  }
  CHECK(errors == 0);
  CHECK(seen.size() >= 2);
  CHECK(refreshes >= 2);
  const std::vector<std::string> tokens(seen.begin(), seen.end());
  CHECK(leaks(fixture.daemon().stderr_text(), tokens) == false);
}

TEST_CASE("an IAM outage while tokens are valid is invisible to clients and heals", "[daemon][outage]")
{
  constexpr int k_lifetime_s = 8;
  DaemonFixture fixture({"--iam-lifetime", std::to_string(k_lifetime_s)});
  DaemonConfig config;
  config.at_fraction = 0.5;
  config.timeout_s = 2;
  fixture.start(config);
  const auto before = fixture.token("reader");
  REQUIRE(before.is_token());

  REQUIRE(fixture.sim_fault(R"({"target":"imds_iam_token","mode":"status","status":503})").status == 204);
  // The refresh is due at at_fraction of the lifetime (+5 % jitter) and
  // fails at once; the token stays valid to the end of its lifetime.
  const auto stale_limit =
    std::chrono::milliseconds(static_cast<int>(k_lifetime_s * 1000 * 0.5 * 1.05)) + config.attempt_limit();
  int errors = 0;
  const bool stale = eventually(
    [&] {
      errors += fixture.get({"-p", "reader", "--min-valid", "1"}).exit_code == 0 ? 0 : 1;
      return fixture.state_of("reader") == "stale";
    },
    stale_limit);
  REQUIRE(stale);
  const auto during = fixture.token("reader", 1);
  const bool still_valid = std::time(nullptr) + 1 < before.expires_at;
  if (still_valid) {
    // Only meaningful while the first token is valid: a machine slow
    // enough to reach here after its expiry has nothing left to show.
    CHECK(errors == 0);
    REQUIRE(during.is_token());
    CHECK(during.access_token == before.access_token);
  }

  REQUIRE(fixture.sim_clear_faults().status == 204);
  REQUIRE(fixture.fresh_by_schedule("reader", config));
  const auto after = fixture.token("reader");
  REQUIRE(after.is_token());
  CHECK_FALSE(after.access_token == before.access_token);
  CHECK(fixture.daemon().stderr_text().find("service_error") != std::string::npos);
}

TEST_CASE("100 concurrent cold requests cause one IAM exchange per profile", "[daemon][single-flight]")
{
  DaemonFixture fixture;
  REQUIRE(fixture.sim_fault(R"({"target":"imds_iam_token","mode":"slow","delay_ms":2000})").status == 204);
  fixture.start();

  std::vector<int> fds;
  for (int i = 0; i < 100; ++i) {
    const int fd = connect_unix(fixture.socket_path());
    REQUIRE(fd >= 0);
    fds.push_back(fd);
    const std::string profile = i % 2 == 0 ? "reader" : "deployer";
    REQUIRE(write_all(fd, fmt::format(R"({{"op":"token","profile":"{}","id":{}}})", profile, i) + "\n"));
  }
  // Each reply comes once the one exchange for its profile is done: within
  // attempt_limit() (the 2 s delay is well inside refresh.timeout_s).
  const DaemonConfig config;
  std::vector<proto::Reply> replies;
  for (const int fd : fds) {
    auto line = read_line(fd, config.attempt_limit());
    ::close(fd);
    REQUIRE(line.has_value());
    auto reply = proto::parse_reply(*line);
    REQUIRE(reply.has_value());
    REQUIRE(reply->is_token());
    replies.push_back(std::move(*reply));
  }
  for (std::size_t i = 2; i < replies.size(); ++i) {
    CHECK(replies[i].access_token == replies[i % 2].access_token);
  }
  const auto stats = fixture.sim_stats();
  CHECK(json_count(stats, "imds_iam_token") == 2); // the default exchange: IMDS iam_token
  CHECK(json_count(stats, k_reader_id) == 1);
  CHECK(json_count(stats, k_deployer_id) == 1);
}

TEST_CASE("SIGHUP reloads: unchanged profiles keep their tokens, new ones appear, a bad file is ignored",
          "[daemon][reload]")
{
  const std::string auditor_id = "Profile-00000000-0000-4000-8000-000000000003";
  DaemonFixture fixture({"--profile", std::string(k_reader_id) + ":reader", "--profile",
                         std::string(k_deployer_id) + ":deployer", "--profile", auditor_id + ":auditor"});
  DaemonConfig config;
  fixture.start(config);
  const auto reader = fixture.token("reader");
  const auto deployer = fixture.token("deployer");
  REQUIRE(reader.is_token());
  REQUIRE(deployer.is_token());
  CHECK(fixture.token("auditor").code == "unknown_profile");

  config.profiles = fmt::format(R"([{{"name":"reader","profile_id":"{}"}},{{"name":"deployer","profile_name":"deployer"}},)"
                                R"({{"name":"auditor","profile_name":"auditor"}}])",
                                k_reader_id);
  fixture.write_config(config);
  fixture.daemon().signal(SIGHUP);
  REQUIRE(eventually([&] { return fixture.token("auditor").is_token(); }, config.attempt_limit()));
  CHECK(fixture.token("reader").access_token == reader.access_token);
  CHECK(fixture.token("deployer").access_token == deployer.access_token);
  const auto stats = fixture.sim_stats();
  CHECK(json_count(stats, k_reader_id) == 1);
  CHECK(json_count(stats, k_deployer_id) == 1);
  CHECK(json_count(stats, auditor_id) == 1);

  fixture.write_text(R"({"exchange": "iam", "profiles": [ {"name": "reader"} ]})"); // no selector at IAM
  fixture.daemon().signal(SIGHUP);
  REQUIRE(fixture.daemon().wait_for_output("keeping the previous configuration", Process::Stream::err, k_react_limit));
  CHECK(fixture.daemon().running());
  CHECK(fixture.token("auditor").is_token());
  CHECK(fixture.token("reader").access_token == reader.access_token);

  fixture.write_text("{ not json");
  fixture.daemon().signal(SIGHUP);
  REQUIRE(eventually([&] {
    const auto text = fixture.daemon().stderr_text();
    std::size_t count = 0;
    for (auto at = text.find("keeping the previous configuration"); at != std::string::npos;
         at = text.find("keeping the previous configuration", at + 1)) {
      ++count;
    }
    return count == 2;
  }, k_react_limit));
  CHECK(fixture.token("deployer").access_token == deployer.access_token);
}

TEST_CASE("SIGHUP with new endpoints sends new calls there and keeps the tokens it has", "[daemon][reload]")
{
  const std::string auditor_id = "Profile-00000000-0000-4000-8000-000000000003";
  const std::vector<std::string> sim_args = {"--profile", std::string(k_reader_id) + ":reader", "--profile",
                                             std::string(k_deployer_id) + ":deployer", "--profile",
                                             auditor_id + ":auditor"};
  DaemonFixture fixture(sim_args);
  SimProcess second(sim_args);
  DaemonConfig config;
  fixture.start(config);
  const auto reader = fixture.token("reader");
  REQUIRE(reader.is_token());

  config.upstream_url = second.url();
  config.profiles = fmt::format(R"([{{"name":"reader","profile_id":"{}"}},{{"name":"deployer","profile_name":"deployer"}},)"
                                R"({{"name":"auditor","profile_id":"{}"}}])",
                                k_reader_id, auditor_id);
  fixture.write_config(config);
  fixture.daemon().signal(SIGHUP);
  REQUIRE(eventually([&] { return fixture.token("auditor").is_token(); }, config.attempt_limit()));
  CHECK(fixture.daemon().stderr_text().find("upstream settings changed") != std::string::npos);
  CHECK(fixture.token("reader").access_token == reader.access_token);

  // The new profile came from the second simulator, over a new CR token
  // from its IMDS; the first one saw nothing more.
  const auto first_stats = fixture.sim_stats();
  const auto second_stats = http("GET", second.url() + "/sim/stats").body;
  CHECK(json_count(first_stats, auditor_id) == 0);
  CHECK(json_count(first_stats, "imds_token") == 1);
  CHECK(json_count(second_stats, auditor_id) == 1);
  CHECK(json_count(second_stats, "imds_token") == 1);
  CHECK(json_count(second_stats, k_reader_id) == 0);

  // An endpoint nobody listens on: a new profile's first exchange fails
  // there (neither simulator is asked), cached tokens are still served.
  config.upstream_url = "http://127.0.0.1:9";
  config.timeout_s = 2; // a caller waits for retries due within this
  config.profiles.back() = ',';
  config.profiles += R"({"name":"extra","profile_name":"deployer"}])";
  fixture.write_config(config);
  fixture.daemon().signal(SIGHUP);
  REQUIRE(eventually([&] { return fixture.state_of("extra") == "failed"; }, config.attempt_limit()));
  CHECK(fixture.token("extra").code == "unavailable");
  CHECK(fixture.token("reader").access_token == reader.access_token);
  CHECK(fixture.token("auditor").is_token());
  CHECK(json_count(fixture.sim_stats(), "imds_token") == 1);
  CHECK(json_count(http("GET", second.url() + "/sim/stats").body, "imds_token") == 1);
  CHECK(json_count(http("GET", second.url() + "/sim/stats").body, "imds_iam_token") == 1);
}

TEST_CASE("SIGTERM stops iamtokend with exit code 0 and removes its socket", "[daemon]")
{
  DaemonFixture fixture;
  fixture.start();
  REQUIRE(fixture.token("reader").is_token());
  fixture.daemon().signal(SIGTERM);
  const auto code = fixture.daemon().wait(k_stop_limit);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK_FALSE(std::filesystem::exists(fixture.socket_path()));
  CHECK(fixture.daemon().stderr_text().find("stopping") != std::string::npos);
}

TEST_CASE("a stop at once after the socket appears or READY=1 is a clean stop, every time", "[daemon][signals]")
{
  // The two moments a supervisor or a client may act on: the socket exists,
  // and READY=1 was sent (systemctl start has returned). SIGTERM goes the
  // moment either is seen, with no sleep between looks; every stop must be
  // clean: exit code 0 and the socket file removed.
  DaemonFixture fixture;
  fixture.write_config({});
  NotifySocket notify((fixture.dir() / "notify.sock").string());
  constexpr int k_rounds = 20;
  for (int round = 0; round < k_rounds; ++round) {
    const bool on_ready = round % 2 == 1;
    INFO("round " << round << (on_ready ? ": SIGTERM after READY=1" : ": SIGTERM once the socket exists"));
    notify.drain(); // what the last round's daemon sent
    Process daemon(fixture.daemon_options(notify.path()));
    const auto seen = [&] {
      return on_ready ? notify.received("READY=1") : std::filesystem::exists(fixture.socket_path());
    };
    const auto deadline = std::chrono::steady_clock::now() + k_start_limit;
    bool ready = false;
    while (!(ready = seen()) && daemon.running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    REQUIRE(ready);
    daemon.signal(SIGTERM);
    const auto code = daemon.wait(k_stop_limit);
    REQUIRE(code.has_value());
    CHECK(*code == 0);
    CHECK_FALSE(std::filesystem::exists(fixture.socket_path()));
  }
}

TEST_CASE("the socket path appears only once it accepts connections with its final mode", "[daemon][socket]")
{
  // A client (or a test) that connects the moment the path exists must be
  // accepted: the daemon binds under a temporary name, sets group and mode,
  // listens, and only then renames the socket into place.
  DaemonFixture fixture;
  fixture.write_config({});
  constexpr int k_rounds = 20;
  for (int round = 0; round < k_rounds; ++round) {
    INFO("round " << round);
    Process daemon(fixture.daemon_options());
    const auto deadline = std::chrono::steady_clock::now() + k_start_limit;
    while (!std::filesystem::exists(fixture.socket_path()) && daemon.running()
           && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    struct stat info{};
    REQUIRE(::lstat(fixture.socket_path().c_str(), &info) == 0);
    CHECK((info.st_mode & 07777) == 0600); // DaemonConfig::socket_mode
    const int fd = connect_unix(fixture.socket_path());
    CHECK(fd >= 0);
    if (fd >= 0) {
      ::close(fd);
    }
    daemon.signal(SIGTERM);
    const auto code = daemon.wait(k_stop_limit);
    REQUIRE(code.has_value());
    CHECK(*code == 0);
  }
}

TEST_CASE("a SIGTERM that arrives while iamtokend sends READY=1 is a clean stop", "[daemon][signals]")
{
  // The race made certain: the notify socket's queue is full, so iamtokend
  // blocks inside sending READY=1 (sd_notify waits for room; with one
  // profile it is the first message). SIGTERM arrives there; it must
  // already be handled.
  DaemonFixture fixture;
  DaemonConfig config;
  config.profiles = fmt::format(R"([{{"name":"reader","profile_id":"{}"}}])", k_reader_id);
  fixture.write_config(config);
  NotifySocket notify((fixture.dir() / "notify.sock").string());
  const int filler = notify.fill();
  Process daemon(fixture.daemon_options(notify.path()));

  std::optional<bool> blocked;
  const auto deadline = std::chrono::steady_clock::now() + k_start_limit;
  while (!(blocked = blocked_in_syscall(daemon.pid(), SYS_sendmsg)).value_or(true) && daemon.running() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  if (!blocked) {
    INFO(daemon.stderr_text());
    REQUIRE(daemon.running());
    WARN("cannot read /proc/PID/syscall; not checked");
    ::close(filler);
    return;
  }
  INFO(daemon.stderr_text());
  REQUIRE(*blocked);
  CHECK(std::filesystem::exists(fixture.socket_path()));
  daemon.signal(SIGTERM);
  // Make room (it sends STOPPING=1 too), and see how it ends.
  const auto stop_deadline = std::chrono::steady_clock::now() + k_stop_limit;
  while (daemon.running() && std::chrono::steady_clock::now() < stop_deadline) {
    notify.drain();
    std::this_thread::sleep_for(1ms);
  }
  ::close(filler);
  CHECK(daemon.wait(0ms) == 0);
  CHECK_FALSE(std::filesystem::exists(fixture.socket_path()));
}

TEST_CASE("iamtokend uses a listening socket passed by systemd", "[daemon][systemd]")
{
  const std::string activate = "/usr/bin/systemd-socket-activate";
  if (!std::filesystem::exists(activate)) {
    WARN("systemd-socket-activate not installed; skipped");
    return;
  }
  DaemonFixture fixture;
  fixture.write_config({});
  ProcessOptions options;
  options.binary = activate;
  options.args = {"-l", fixture.socket_path(), IAMTOKEND_BINARY, "--config", fixture.config_path()};
  options.unset_env = {"JOURNAL_STREAM", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID"};
  Process daemon(std::move(options));
  REQUIRE(eventually([&] { return std::filesystem::exists(fixture.socket_path()); }, k_start_limit));

  const auto result = fixture.get({"-p", "reader", "--timeout", "10"});
  CHECK(result.exit_code == 0);
  REQUIRE(daemon.wait_for_output("listening on the socket passed by systemd", Process::Stream::err, k_react_limit));
  daemon.signal(SIGTERM);
  const auto code = daemon.wait(k_stop_limit);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
}
