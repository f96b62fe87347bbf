// The one exception type of metatape. Messages start with "metatape: <op>: " and say what to do.
#pragma once

#include <stdexcept>
#include <string>

namespace metatape {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws Error("metatape: " + message).
[[noreturn]] void fail(const std::string& message);

}  // namespace metatape
