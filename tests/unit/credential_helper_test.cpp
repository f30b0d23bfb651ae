// docker-credential-iamtoken's pure parts: which server URLs are IBM Cloud
// Container Registry hosts, and the `get` answer. The protocol against the
// real daemon is covered by tests/e2e/credential_helper_test.cpp.

#include "client/credential_helper.hpp"

#include <catch2/catch.hpp>

#include <simdjson.h>

using namespace iamtok;
using namespace iamtok::client;

TEST_CASE("registry_host takes the host out of the server URL forms Docker passes", "[client][docker]")
{
  CHECK(registry_host("icr.io") == "icr.io");
  CHECK(registry_host("https://us.icr.io") == "us.icr.io");
  CHECK(registry_host("https://us.icr.io/v2/") == "us.icr.io");
  CHECK(registry_host("http://de.icr.io/v1/?x#y") == "de.icr.io");
  CHECK(registry_host("  private.us.icr.io\n") == "private.us.icr.io");
  CHECK(registry_host("HTTPS://US.ICR.IO") == "us.icr.io");
  CHECK(registry_host("us.icr.io:443") == "us.icr.io");
  CHECK(registry_host("https://jp2.icr.io:5000/v2/") == "jp2.icr.io");
  CHECK(registry_host("docker.io") == "docker.io");

  for (const auto* bad : {"", "   ", "ftp://icr.io", "oci://icr.io", "https://user@icr.io", "user:pw@icr.io",
                          "icr.io:", "icr.io:0", "icr.io:65536", "icr.io:44x", "icr.io:-1", "icr io", "icr.io\\x",
                          "[::1]:5000", "https:///v2/", "icr.io%2f"}) {
    INFO(bad);
    CHECK_FALSE(registry_host(bad));
  }
}

TEST_CASE("is_icr_host: icr.io and its subdomains by exact suffix, no lookalikes", "[client][docker]")
{
  for (const auto* host :
       {"icr.io", "us.icr.io", "uk.icr.io", "de.icr.io", "au.icr.io", "jp.icr.io", "jp2.icr.io", "br.icr.io",
        "ca.icr.io", "fr2.icr.io", "es.icr.io", "private.icr.io", "private.us.icr.io", "private.jp2.icr.io"}) {
    INFO(host);
    CHECK(is_icr_host(host));
  }
  for (const auto* host : {"icr.io.example.com", "evilicr.io", "icr.iox", "xicr.io", "icr.io.", ".icr.io", "a..icr.io",
                           "-a.icr.io", "a-.icr.io", "us_x.icr.io", "io", "", "cr.io", "us.icr.io.evil.com"}) {
    INFO(host);
    CHECK_FALSE(is_icr_host(host));
  }
  // A label is at most 63 characters.
  CHECK(is_icr_host(std::string(63, 'a') + ".icr.io"));
  CHECK_FALSE(is_icr_host(std::string(64, 'a') + ".icr.io"));
  // Through registry_host, as the helper uses it.
  for (const auto* url : {"https://icr.io.example.com/v2/", "https://evilicr.io", "icr.io.example.com"}) {
    INFO(url);
    const auto host = registry_host(url);
    CHECK_FALSE((host && is_icr_host(*host)));
  }
}

TEST_CASE("the get answer is Docker's credentials object, with the URL as given", "[client][docker]")
{
  const auto text = credentials_json("https://us.icr.io/v2/", "abc.def.ghi");
  REQUIRE(text.back() == '\n');
  simdjson::dom::parser parser;
  simdjson::dom::element object;
  REQUIRE(parser.parse(text).get(object) == simdjson::SUCCESS);
  std::string_view value;
  REQUIRE(object["ServerURL"].get(value) == simdjson::SUCCESS);
  CHECK(value == "https://us.icr.io/v2/");
  REQUIRE(object["Username"].get(value) == simdjson::SUCCESS);
  CHECK(value == "iambearer");
  REQUIRE(object["Secret"].get(value) == simdjson::SUCCESS);
  CHECK(value == "abc.def.ghi");
  CHECK(object.get_object().size() == 3);
  // A URL with a quote stays one JSON string.
  CHECK(credentials_json("a\"b", "t").find(R"("ServerURL":"a\"b")") != std::string::npos);
}

TEST_CASE("trim_server_url drops surrounding blanks and line ends only", "[client][docker]")
{
  CHECK(trim_server_url(" \t https://icr.io \r\n") == "https://icr.io");
  CHECK(trim_server_url("icr.io") == "icr.io");
  CHECK(trim_server_url("\n\n").empty());
  CHECK(trim_server_url("a b") == "a b");
}
