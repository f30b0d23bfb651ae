#pragma once

// iamtoken-sim's command line (docs/simulator.md), parsed without I/O.

#include "sim/simulator.hpp"

#include <tl/expected.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace iamtok::sim {

struct Options
{
  std::string listen_host = "127.0.0.1"; // a loopback IPv4 or IPv6 literal
  std::uint16_t listen_port = 0;
  std::string port_file;                 // empty: none
  SimConfig sim;                         // profiles, lifetimes, latency, seed
  bool seed_given = false;
  bool quiet = false;
  bool help = false;
  bool version = false;
};

// The options in `args` (without the program name), or a one-line message
// for the first problem: unknown option, missing or bad value, a listen
// address that is not loopback, duplicate profile ids/names/crns.
tl::expected<Options, std::string> parse_options(std::span<const std::string_view> args);

// Splits "ID[:NAME[:CRN]]" on its first two colons (a CRN holds colons); an
// omitted or empty CRN becomes profile_crn(ID). Nullopt for an empty ID.
std::optional<Profile> parse_profile(std::string_view spec);

// The --help text.
std::string usage();

} // namespace iamtok::sim
