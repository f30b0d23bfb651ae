// IBM's own SDK cores, unmodified, against the daemon's HTTP endpoint: the
// Node (npm ibm-cloud-sdk-core, tests/sdk/package-lock.json) and Python
// (Debian's python3-ibm-cloud-sdk-core) ContainerAuthenticator and
// VpcInstanceAuthenticator, built from environment variables alone as an
// unmodified program builds them (tests/sdk/*_auth.*). Each run must get the
// very token the Unix socket serves for the profile it selects, and cause no
// upstream call. Skips with a message when node, python3 or a package is
// missing (scripts/deps.sh test installs them).

#include "tests/e2e/daemon_fixture.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <openssl/evp.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

using namespace iamtok;
using namespace iamtok::test;

namespace {

const std::string k_sdk_dir = IAMTOK_SOURCE_DIR "/tests/sdk";
// The placeholder the package installs for the SDKs' CR_TOKEN_FILENAME.
const std::string k_cr_token_file = IAMTOK_SOURCE_DIR "/systemd/sdk-cr-token";
const std::string k_debian_python = "/usr/bin/python3";
constexpr std::string_view k_service = "IAMTOK_SDK"; // the SDKs' service name: IAMTOK_SDK_AUTH_TYPE, ...

// The lower-case hex SHA-256 of `text` (tokens are compared by hash only).
std::string sha256_hex(std::string_view text)
{
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  if (EVP_Digest(text.data(), text.size(), digest.data(), &size, EVP_sha256(), nullptr) != 1) {
    return {};
  }
  std::string hex;
  for (unsigned int i = 0; i < size; ++i) {
    hex += fmt::format("{:02x}", digest[i]);
  }
  return hex;
}

// The first executable `name` on PATH, or "" if there is none.
std::string on_path(const std::string& name)
{
  const char* path = std::getenv("PATH");
  std::string_view rest = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  while (!rest.empty()) {
    const auto colon = rest.find(':');
    const auto dir = rest.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    const auto candidate = std::filesystem::path(dir.empty() ? "." : std::string(dir)) / name;
    if (::access(candidate.c_str(), X_OK) == 0) {
      return candidate.string();
    }
  }
  return {};
}

// An unused loopback TCP port (the kernel's pick, released again): the
// daemon's config needs a number. Another process may take it in between; the
// harness then sees the daemon fail to bind (exit 3) and tries another.
int free_port()
{
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  int port = 0;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0
      && ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  if (fd >= 0) {
    ::close(fd);
  }
  return port;
}

// The upstream calls the simulator has counted.
struct UpstreamCalls
{
  long imds_token = 0;
  long imds_iam_token = 0;
  long iam = 0;
  bool operator==(const UpstreamCalls&) const = default;
};

// The real daemon with an "http" listener on loopback, in front of the
// simulator's demo profiles: "reader" (profile_id) and "deployer"
// (profile_name), both fetched before any SDK runs.
class SdkHarness
{
public:
  SdkHarness()
  {
    for (int attempt = 0; attempt < 5 && m_port == 0; ++attempt) {
      const int port = free_port();
      REQUIRE(port > 0);
      if (try_start(port)) {
        m_port = port;
      }
    }
    REQUIRE(m_port != 0);
    const auto reader = m_fixture.token("reader");
    const auto deployer = m_fixture.token("deployer");
    REQUIRE(reader.is_token());
    REQUIRE(deployer.is_token());
    m_reader_hash = sha256_hex(reader.access_token.expose());
    m_deployer_hash = sha256_hex(deployer.access_token.expose());
    REQUIRE(m_reader_hash != m_deployer_hash);
  }

  std::string url() const { return fmt::format("http://127.0.0.1:{}", m_port); }
  const std::string& reader_hash() const { return m_reader_hash; }
  const std::string& deployer_hash() const { return m_deployer_hash; }

  UpstreamCalls upstream_calls()
  {
    const auto stats = m_fixture.sim_stats();
    return {json_count(stats, "imds_token"), json_count(stats, "imds_iam_token"), json_count(stats, "iam")};
  }

  // Runs `program args...` with only `variables` (IAMTOK_SDK_* without the
  // prefix: "AUTH_TYPE=vpc") and a bare PATH/HOME in its environment, from an
  // empty directory (the SDKs also read an ibm-credentials.env there and in
  // HOME: none may interfere).
  ClientResult run_sdk(const std::string& program, const std::string& script,
                       const std::vector<std::string>& variables) const
  {
    TempDir home;
    std::vector<std::string> args{"-i", "-C", home.path().string(), "PATH=/usr/local/bin:/usr/bin:/bin",
                                  "HOME=" + home.path().string()};
    for (const auto& variable : variables) {
      args.push_back(fmt::format("{}_{}", k_service, variable));
    }
    args.insert(args.end(), {program, script, std::string(k_service)});
    return run_program("/usr/bin/env", args);
  }

private:
  // Starts the daemon with its HTTP endpoint on `port`; false if the port
  // was taken meanwhile (exit 3), throws on any other failure.
  bool try_start(int port)
  {
    const std::string base = m_fixture.config_json(DaemonConfig{});
    REQUIRE(base.front() == '{');
    m_fixture.write_text(
        fmt::format(R"({{"http":{{"listen":["127.0.0.1:{}"],"max_connections":16}},{})", port, base.substr(1)));
    try {
      m_fixture.launch();
    } catch (const std::runtime_error&) {
      if (m_fixture.daemon().wait(k_stop_limit) == 3) {
        return false;
      }
      throw;
    }
    const auto healthz = fmt::format("http://127.0.0.1:{}/healthz", port);
    REQUIRE(eventually([&] { return !m_fixture.daemon().running() || http("GET", healthz).status == 200; },
                       k_start_limit));
    if (!m_fixture.daemon().running()) {
      REQUIRE(m_fixture.daemon().poll() == 3);
      return false;
    }
    return true;
  }

  DaemonFixture m_fixture;
  int m_port = 0;
  std::string m_reader_hash;
  std::string m_deployer_hash;
};

// Why the Node SDK cannot run here ("" if it can).
std::string node_problem()
{
  if (on_path("node").empty()) {
    return "node is not installed (scripts/deps.sh test)";
  }
  if (!std::filesystem::exists(k_sdk_dir + "/node_modules/ibm-cloud-sdk-core/package.json")) {
    return "ibm-cloud-sdk-core is not installed in tests/sdk/node_modules (scripts/deps.sh test)";
  }
  return {};
}

// Why Debian's Python SDK cannot run here ("" if it can).
std::string python_problem()
{
  if (::access(k_debian_python.c_str(), X_OK) != 0) {
    return k_debian_python + " is missing";
  }
  if (run_program(k_debian_python, {"-c", "import ibm_cloud_sdk_core"}).exit_code != 0) {
    return "python3-ibm-cloud-sdk-core is not installed (scripts/deps.sh test)";
  }
  return {};
}

std::string node_script() { return k_sdk_dir + "/node_auth.js"; }
std::string python_script() { return k_sdk_dir + "/python_auth.py"; }

std::string reader_crn()
{
  return fmt::format("crn:v1:bluemix:public:iam-identity::a/0123456789abcdef0123456789abcdef::profile:{}", k_reader_id);
}

// `common` followed by `extra`: one run's variables.
std::vector<std::string> with(std::vector<std::string> common, const std::vector<std::string>& extra)
{
  common.insert(common.end(), extra.begin(), extra.end());
  return common;
}

struct Case
{
  std::string what;
  std::vector<std::string> variables;
  std::string expected; // the hash the socket's token has
};

// Runs every case through `program script` and checks its token's hash; then
// that the simulator saw no upstream call meanwhile.
void check_cases(SdkHarness& harness, const std::string& program, const std::string& script,
                 const std::vector<Case>& cases)
{
  const auto before = harness.upstream_calls();
  for (const auto& c : cases) {
    INFO(c.what);
    const auto result = harness.run_sdk(program, script, c.variables);
    INFO("stderr: " << result.err); // the scripts never print a token
    CHECK(result.exit_code == 0);
    CHECK(result.out == c.expected + "\n");
  }
  CHECK(harness.upstream_calls() == before);
}

} // namespace

TEST_CASE("Node's ContainerAuthenticator gets the daemon's cached token, by profile id and by name")
{
  if (const auto problem = node_problem(); !problem.empty()) {
    WARN(problem << "; skipped");
    return;
  }
  SdkHarness harness;
  const std::vector<std::string> common{"AUTH_TYPE=container", "CR_TOKEN_FILENAME=" + k_cr_token_file};
  check_cases(harness, on_path("node"), node_script(),
              {{"id", with(common, {"AUTH_URL=" + harness.url(), fmt::format("IAM_PROFILE_ID={}", k_reader_id)}),
                harness.reader_hash()},
               {"id, AUTH_URL ending in /identity/token",
                with(common, {"AUTH_URL=" + harness.url() + "/identity/token", fmt::format("IAM_PROFILE_ID={}", k_reader_id)}),
                harness.reader_hash()},
               {"trusted profile name", with(common, {"AUTH_URL=" + harness.url(), "IAM_PROFILE_NAME=deployer"}),
                harness.deployer_hash()},
               {"local profile name", with(common, {"AUTH_URL=" + harness.url(), "IAM_PROFILE_NAME=reader"}),
                harness.reader_hash()}});

  // A profile the daemon does not serve: the SDK fails, and gets no token.
  const auto unknown = harness.run_sdk(on_path("node"), node_script(),
                                       with(common, {"AUTH_URL=" + harness.url(), "IAM_PROFILE_NAME=nonexistent"}));
  CHECK(unknown.exit_code == 1);
  CHECK(unknown.out.empty());
}

TEST_CASE("Node's VpcInstanceAuthenticator gets the daemon's cached token over both IMDS API generations")
{
  if (const auto problem = node_problem(); !problem.empty()) {
    WARN(problem << "; skipped");
    return;
  }
  SdkHarness harness;
  std::vector<Case> cases;
  // The SDK's default 2022-03-01 uses /instance_identity/v1/..., 2025-08-26 /identity/v1/....
  for (const std::string version : {"", "2025-08-26"}) {
    std::vector<std::string> common{"AUTH_TYPE=vpc", "AUTH_URL=" + harness.url()};
    if (!version.empty()) {
      common.push_back("SERVICE_VERSION=" + version);
    }
    const std::string at = version.empty() ? "default version" : version;
    cases.push_back({at + ", id", with(common, {fmt::format("IAM_PROFILE_ID={}", k_reader_id)}), harness.reader_hash()});
    cases.push_back({at + ", crn", with(common, {"IAM_PROFILE_CRN=" + reader_crn()}), harness.reader_hash()});
    cases.push_back({at + ", name", with(common, {"IAM_PROFILE_NAME=deployer"}), harness.deployer_hash()});
  }
  check_cases(harness, on_path("node"), node_script(), cases);
}

TEST_CASE("Python's ContainerAuthenticator gets the daemon's cached token, by profile id and by name")
{
  if (const auto problem = python_problem(); !problem.empty()) {
    WARN(problem << "; skipped");
    return;
  }
  SdkHarness harness;
  const std::vector<std::string> common{"AUTH_TYPE=container", "AUTH_URL=" + harness.url(),
                                        "CR_TOKEN_FILENAME=" + k_cr_token_file};
  check_cases(harness, k_debian_python, python_script(),
              {{"id", with(common, {fmt::format("IAM_PROFILE_ID={}", k_reader_id)}), harness.reader_hash()},
               {"name", with(common, {"IAM_PROFILE_NAME=deployer"}), harness.deployer_hash()}});
}

TEST_CASE("Python's VpcInstanceAuthenticator (IMDS API 2021-09-20) gets the daemon's cached token")
{
  if (const auto problem = python_problem(); !problem.empty()) {
    WARN(problem << "; skipped");
    return;
  }
  SdkHarness harness;
  // Debian's 3.16 knows no profile name for this authenticator: id and crn.
  const std::vector<std::string> common{"AUTH_TYPE=vpc", "AUTH_URL=" + harness.url()};
  check_cases(harness, k_debian_python, python_script(),
              {{"id", with(common, {fmt::format("IAM_PROFILE_ID={}", k_reader_id)}), harness.reader_hash()},
               {"crn", with(common, {"IAM_PROFILE_CRN=" + reader_crn()}), harness.reader_hash()}});
}
