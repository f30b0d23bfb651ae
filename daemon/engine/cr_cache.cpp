#include "daemon/engine/cr_cache.hpp"

#include <algorithm>
#include <utility>

namespace iamtok::engine {

namespace {

using namespace std::chrono_literals;

// The shared CR token is reused while more than min(60 s, half its lifetime)
// is left.
constexpr Duration k_cr_margin_cap = 60s;

} // namespace

const Held* CrCache::usable(TimePoint at) const
{
  if (!m_token) {
    return nullptr;
  }
  const Duration margin = std::min(k_cr_margin_cap, m_token->lifetime / 2);
  return m_token->expiry - at > margin ? &*m_token : nullptr;
}

void CrCache::fetch_sent(TimePoint sent_at, std::int64_t unix_sent)
{
  m_fetching = true;
  m_sent_at = sent_at;
  m_unix_sent = unix_sent;
}

tl::expected<CrCache::Fetched, UpstreamError> CrCache::fetched(UpstreamResult result, TimePoint at)
{
  m_fetching = false;
  result = checked(std::move(result), "CR token", m_sent_at, at);
  record(result);
  m_token.reset();
  tl::expected<Fetched, UpstreamError> out = tl::unexpected(UpstreamError{});
  if (result) {
    m_token = hold(std::move(*result), m_sent_at, m_unix_sent);
    ++m_generation;
    out = Fetched{m_token->token, m_generation};
  } else {
    out = tl::unexpected(result.error());
  }
  if (std::exchange(m_discard_fetch, false)) {
    m_token.reset(); // from the source of before a reload: used once, not kept
  }
  return out;
}

void CrCache::record(const UpstreamResult& result)
{
  if (result) {
    m_state = SourceState::ok;
    m_last_error.reset();
  } else {
    m_state = SourceState::failed;
    m_last_error = result.error();
  }
}

void CrCache::rejected(std::uint64_t generation)
{
  if (m_token && m_generation == generation) {
    m_token.reset();
  }
}

void CrCache::forget()
{
  m_token.reset();
  ++m_generation;
  m_discard_fetch = m_fetching;
  m_state = SourceState::pending;
  m_last_error.reset();
}

void CrCache::changed()
{
  m_token.reset(); // a cached one (never kept for a file source anyway)
  ++m_generation;
}

void CrCache::stop()
{
  m_fetching = false;
  m_discard_fetch = false;
}

SourceStatus CrCache::status() const
{
  SourceStatus status;
  status.state = m_state;
  status.last_error = m_last_error;
  if (m_token) {
    status.expires_at = m_token->unix_expiry;
  }
  return status;
}

} // namespace iamtok::engine
