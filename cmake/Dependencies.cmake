# Every dependency comes from a Debian package (scripts/deps.sh installs them).
find_package(PkgConfig REQUIRED)
find_package(fmt 9 REQUIRED)
find_package(simdjson REQUIRED)
find_package(tl-expected REQUIRED)

if(NOT IAMTOK_FUZZ)
  find_package(Threads REQUIRED)
  find_package(CURL REQUIRED)
  find_package(OpenSSL REQUIRED COMPONENTS Crypto)
  pkg_check_modules(SYSTEMD REQUIRED IMPORTED_TARGET libsystemd)
  # prometheus-cpp-dev: only prometheus-cpp::core (registry, text serializer) is used.
  find_package(prometheus-cpp CONFIG REQUIRED)

  # Asio ships no CMake or pkg-config file.
  find_path(ASIO_INCLUDE_DIR asio.hpp REQUIRED)
  add_library(asio INTERFACE)
  target_include_directories(asio SYSTEM INTERFACE "${ASIO_INCLUDE_DIR}")
  target_compile_definitions(asio INTERFACE ASIO_STANDALONE ASIO_NO_DEPRECATED)
  target_link_libraries(asio INTERFACE Threads::Threads)
endif()

# Node's http-parser (libhttp-parser-dev): no CMake file either.
find_path(HTTP_PARSER_INCLUDE_DIR http_parser.h REQUIRED)
find_library(HTTP_PARSER_LIBRARY http_parser REQUIRED)
add_library(http_parser INTERFACE)
target_include_directories(http_parser SYSTEM INTERFACE "${HTTP_PARSER_INCLUDE_DIR}")
target_link_libraries(http_parser INTERFACE "${HTTP_PARSER_LIBRARY}")

if(IAMTOK_TESTS AND NOT IAMTOK_FUZZ)
  find_package(Catch2 2 REQUIRED)
  include(Catch)
endif()
