# INTERFACE targets carrying warnings and sanitizer options; every first-party
# target links both PRIVATE (as ccache's StandardSettings/StandardWarnings do),
# so neither leaks into what a consumer compiles. Headers are included from
# the project root ("daemon/engine/engine.hpp"): see include_directories() in
# the top-level CMakeLists.txt.

add_library(iamtok_warnings INTERFACE)
target_compile_options(iamtok_warnings INTERFACE -Wall -Wextra -Wpedantic
  -Wshadow -Wnon-virtual-dtor -Wcast-align -Woverloaded-virtual -Wformat=2
  $<$<BOOL:${IAMTOK_WERROR}>:-Werror>)

add_library(iamtok_settings INTERFACE)
target_compile_definitions(iamtok_settings INTERFACE
  $<$<CONFIG:Debug>:_GLIBCXX_ASSERTIONS>)

if(IAMTOK_SANITIZE)
  target_compile_options(iamtok_settings INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(iamtok_settings INTERFACE -fsanitize=address,undefined)
endif()
if(IAMTOK_TSAN)
  target_compile_options(iamtok_settings INTERFACE -fsanitize=thread -fno-omit-frame-pointer)
  target_link_options(iamtok_settings INTERFACE -fsanitize=thread)
endif()
if(IAMTOK_FUZZ)
  # Instrument everything for coverage; the fuzz targets add -fsanitize=fuzzer.
  target_compile_options(iamtok_settings INTERFACE
    -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all)
  target_link_options(iamtok_settings INTERFACE -fsanitize=address,undefined)
endif()
