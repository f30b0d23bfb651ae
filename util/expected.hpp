#pragma once

// Propagating tl::expected errors without a ladder of ifs (ccache's TRY,
// without GNU statement expressions, which -Wpedantic refuses).
//
//   IAMTOK_TRY(check(x));               // returns the error of a failed check
//   IAMTOK_TRY_ASSIGN(fd, open_read(p)); // `fd` holds the value, or returns the error

#include <tl/expected.hpp>

#include <utility>

#define IAMTOK_CONCAT_(a, b) a##b
#define IAMTOK_CONCAT(a, b) IAMTOK_CONCAT_(a, b)

#define IAMTOK_TRY(expr)                                                                           \
  do {                                                                                             \
    if (auto&& iamtok_try_result = (expr); !iamtok_try_result) {                                   \
      return tl::unexpected(std::move(iamtok_try_result).error());                                 \
    }                                                                                              \
  } while (false)

#define IAMTOK_TRY_ASSIGN(var, expr)                                                               \
  auto&& IAMTOK_CONCAT(iamtok_try_, var) = (expr);                                                 \
  if (!IAMTOK_CONCAT(iamtok_try_, var)) {                                                          \
    return tl::unexpected(std::move(IAMTOK_CONCAT(iamtok_try_, var)).error());                     \
  }                                                                                                \
  auto var = std::move(*IAMTOK_CONCAT(iamtok_try_, var))
