// What the project's registries (meta/registry.h: learners; tasks/families.h: task families) share: a
// registry is a fixed vector of entries with a `name` member; these find an entry by name and list the
// names, so the lookups and the name lists of error messages and --help are written once.
#pragma once

#include <string>
#include <vector>

namespace metatape {

// The entry named `name`, or nullptr when there is none.
template <class Entry>
const Entry* find_named(const std::vector<Entry>& entries, const std::string& name) {
  for (const Entry& e : entries) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

// The names of the entries `keep` accepts (every entry when keep is null), in registry order.
template <class Entry>
std::vector<std::string> entry_names(const std::vector<Entry>& entries, bool (*keep)(const Entry&) = nullptr) {
  std::vector<std::string> names;
  for (const Entry& e : entries) {
    if (!keep || keep(e)) names.push_back(e.name);
  }
  return names;
}

// "a, b, c" with `separator`, and `last` before the final name ("a, b or c" with last " or ").
inline std::string join_names(const std::vector<std::string>& names, const std::string& separator = ", ",
                              const std::string& last = ", ") {
  std::string text;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) text += i + 1 == names.size() ? last : separator;
    text += names[i];
  }
  return text;
}

}  // namespace metatape
