#pragma once

// The pieces config.cpp builds iamtokend.json(5) from: generic readers for
// one JSON value each, and tables that tie a section's keys to them. A
// section is a table of {key, reader} entries (the shape of Kea's
// SimpleParser::checkKeywords, systemd-timesyncd's gperf table and ccache's
// k_config_key_table); read_fields() runs the reader of each key present and
// rejects every key that is not in the table, at its JSON path.
//
// A reader is any callable `std::optional<T>(Reader&, element, const
// std::string& path)`: the value, or nullopt after it recorded a problem at
// `path` (a list or a section records its entries' problems at their own
// paths below it). Pure: the only lookups are user and group names, through
// the Reader's NameResolver.

#include "daemon/config/config.hpp"

#include <simdjson.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace iamtok::config::read {

using simdjson::dom::element;

// What reading one document has found: its problems, in the order found, and
// the JSON paths of the keys that were present.
class Reader
{
public:
  explicit Reader(const NameResolver& names) : m_names(names) {}

  const NameResolver& names() const { return m_names; }

  void add(std::string path, std::string message);
  // "unknown key" at `path`, the key itself quoted when the path cannot show it.
  void unknown_key(const std::string& path, std::string_view key);

  // Notes that the document has a value at `path`: a key of a section read
  // through a table (whatever its value), or an object read as a section.
  void saw(std::string path);
  // True if saw(`path`) was called; checks across sections use it.
  bool has(std::string_view path) const;

  const std::vector<Problem>& problems() const { return m_problems; }
  std::vector<Problem> take_problems() { return std::move(m_problems); }

private:
  const NameResolver& m_names;
  std::vector<Problem> m_problems;
  std::set<std::string, std::less<>> m_seen;
};

// A config value echoed in a message: JSON-quoted (so control characters
// cannot break the line) and cut at 80 bytes.
std::string quote(std::string_view value);

// `path` with ".key" (or "key" at the top), and with "[index]".
std::string child(const std::string& path, std::string_view key);
std::string item(const std::string& path, std::size_t index);

// --- Generic readers ---------------------------------------------------------

// "must be an object".
std::optional<simdjson::dom::object> object(Reader& reader, element value, const std::string& path);
// "must be a string".
std::optional<std::string_view> string(Reader& reader, element value, const std::string& path);
// "must be a string", "must not be empty".
std::optional<std::string_view> nonempty_string(Reader& reader, element value, const std::string& path);
// "must be an absolute path (is ...)": starts with '/', has no NUL.
std::optional<std::string> absolute_path(Reader& reader, element value, const std::string& path);
// A permission mode as a string of up to four octal digits no larger than "0777".
std::optional<mode_t> file_mode(Reader& reader, element value, const std::string& path);
// A non-empty user or group name and the id the NameResolver gives it;
// "unknown user ...", "unknown group ...".
std::optional<NamedId> user_name(Reader& reader, element value, const std::string& path);
std::optional<NamedId> group_name(Reader& reader, element value, const std::string& path);

// An integer in [min, max] as a T (an integer type or std::chrono::seconds):
// "must be an integer", "must be between MIN and MAX (is N)".
std::optional<std::int64_t> integer(Reader& reader, element value, const std::string& path, std::int64_t min,
                                    std::int64_t max);
template<typename T = std::int64_t>
struct Integer
{
  std::int64_t min = 0;
  std::int64_t max = 0;
  std::optional<T> operator()(Reader& reader, element value, const std::string& path) const
  {
    const auto n = integer(reader, value, path, min, max);
    return n ? std::optional<T>(static_cast<T>(*n)) : std::nullopt;
  }
};

// Any JSON number in [min, max]: "must be a number", "must be between ...".
struct Number
{
  double min = 0;
  double max = 0;
  std::optional<double> operator()(Reader& reader, element value, const std::string& path) const;
};

// One of a few strings, each standing for a value.
template<typename T>
struct Choice
{
  std::string_view name;
  T value;
};
// `must be "a", "b" or "c" (is ...)`: the names quoted, in table order.
std::string one_of_message(std::span<const std::string_view> names, std::string_view got);
// The index of the string `value` among the `count` names `name(i)` gives,
// or nullopt after "must be a string" or one_of_message().
std::optional<std::size_t> one_of(Reader& reader, element value, const std::string& path, std::size_t count,
                                  const std::function<std::string_view(std::size_t)>& name);
template<typename T>
struct OneOf
{
  std::span<const Choice<T>> choices;
  std::optional<T> operator()(Reader& reader, element value, const std::string& path) const
  {
    const auto index = one_of(reader, value, path, choices.size(), [&](std::size_t i) { return choices[i].name; });
    return index ? std::optional<T>(choices[*index].value) : std::nullopt;
  }
};

// Which schemes an endpoint URL may use.
enum class Schemes {
  http_or_https,
  https_unless_loopback, // http:// only with a loopback host (is_loopback_host)
};
// A parse_url() URL under its scheme rule, trailing slashes removed.
struct Endpoint
{
  Schemes schemes = Schemes::http_or_https;
  std::optional<std::string> operator()(Reader& reader, element value, const std::string& path) const;
};

// Calls `each(entry, path[i])` for every entry of the array `value`; false
// (one problem) if it is not an array ("must be an array") or, with a
// non-empty `if_empty`, has no entry (then that is the problem).
bool for_each_item(Reader& reader, element value, const std::string& path, std::string_view if_empty,
                   const std::function<void(element entry, const std::string& path)>& each);

// An array whose entries `Read` reads; an entry with a problem is left out.
template<typename Read>
struct ListOf
{
  Read read;
  using Value = typename std::invoke_result_t<const Read&, Reader&, element, const std::string&>::value_type;
  std::optional<std::vector<Value>> operator()(Reader& reader, element value, const std::string& path) const
  {
    std::vector<Value> out;
    const bool is_list = for_each_item(reader, value, path, {}, [&](element entry, const std::string& at) {
      if (auto got = read(reader, entry, at)) {
        out.push_back(std::move(*got));
      }
    });
    return is_list ? std::optional(std::move(out)) : std::nullopt;
  }
};
template<typename Read>
ListOf(Read) -> ListOf<Read>;

// --- Tables --------------------------------------------------------------------

// One key of a section: its name, what reads its value into an `Out`, and,
// when it is required, the problem its absence is (at the key's path).
template<typename Out>
struct Key
{
  std::string_view name;
  std::function<void(Reader&, element, const std::string& path, Out&)> read;
  std::string_view required = {};
};

// The usual entry: `read` the value and, when it is good, store it in `member`.
// key("max_connections", &SocketConfig::max_connections, Integer<std::uint32_t>{1, 65536})
template<typename Out, typename Member, typename Read>
Key<Out> key(std::string_view name, Member Out::*member, Read read, std::string_view required = {})
{
  return {name,
          [member, read](Reader& reader, element value, const std::string& path, Out& out) {
            if (auto got = read(reader, value, path)) {
              out.*member = std::move(*got);
            }
          },
          required};
}

// Reads each member of `fields` (the object at `path`) with the entry its key
// has in `table`, in document order; a key not in the table is "unknown key"
// at its path. Then each required key that was absent is a problem, in table
// order.
template<typename Out>
void read_fields(Reader& reader, simdjson::dom::object fields, const std::string& path,
                 std::span<const Key<std::type_identity_t<Out>>> table, Out& out)
{
  std::vector<bool> present(table.size(), false);
  for (const auto field : fields) {
    const std::string at = child(path, field.key);
    std::size_t index = 0;
    while (index < table.size() && table[index].name != field.key) {
      ++index;
    }
    if (index == table.size()) {
      reader.unknown_key(at, field.key);
      continue;
    }
    present[index] = true;
    reader.saw(at);
    table[index].read(reader, field.value, at, out);
  }
  for (std::size_t index = 0; index < table.size(); ++index) {
    if (!present[index] && !table[index].required.empty()) {
      reader.add(child(path, table[index].name), std::string(table[index].required));
    }
  }
}

// A section: `value` must be an object ("must be an object"), read into a
// default `T` through `table`. The T is returned even when some of its values
// had problems (the problems are what count then).
template<typename T>
struct Section
{
  std::span<const Key<T>> table;
  std::optional<T> operator()(Reader& reader, element value, const std::string& path) const
  {
    const auto fields = object(reader, value, path);
    if (!fields) {
      return std::nullopt;
    }
    reader.saw(path);
    T out{};
    read_fields<T>(reader, *fields, path, table, out);
    return out;
  }
};

} // namespace iamtok::config::read
