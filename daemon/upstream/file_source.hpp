#pragma once

// The pod CR-token source (docs/upstream.md): a projected service-account
// token file that kubelet rotates in place, so it is read anew every time.

#include "daemon/engine/ports.hpp"
#include "proto/secret.hpp"

#include <tl/expected.hpp>

#include <span>
#include <string>
#include <string_view>

namespace iamtok::upstream {

// The IBM SDKs' default token paths, in the order they are tried.
std::span<const std::string_view> default_cr_token_paths() noexcept;

// The token in `path`, read now, trailing whitespace stripped. When `path` is
// empty, the first of `candidates` that can be read and is not empty is used
// instead (an unreadable one does not hide a good one). Otherwise
// Failure::source (definitive = false: the file may appear or be rotated)
// with a message naming the path: missing, unreadable, empty, or larger than
// 64 KiB. The message never holds file content.
tl::expected<Secret, engine::UpstreamError>
read_cr_token_file(const std::string& path,
                   std::span<const std::string_view> candidates = default_cr_token_paths());

} // namespace iamtok::upstream
