// The test cases that read ../shared/data are named "real data: ..." and have their own CTest entry,
// tasks_real_data (tests/CMakeLists.txt), which runs only them and sets METATAPE_REAL_DATA_ENTRY=1;
// the main `tasks` entry leaves them out. When a needed file is absent, have_shared_data() makes that
// entry report "skipped" to CTest (it prints why and exits 77, its SKIP_RETURN_CODE) rather than pass;
// run by hand (no variable), it says SKIPPED and returns false so the rest of the binary runs on.
#pragma once

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace metatape::test {

inline bool have_shared_data(const std::filesystem::path& needed) {
  if (std::filesystem::exists(needed)) return true;
  const char* entry = std::getenv("METATAPE_REAL_DATA_ENTRY");
  if (entry != nullptr && std::string(entry) == "1") {
    std::printf("skipped: real data not found (%s is missing)\n", needed.string().c_str());
    std::fflush(stdout);
    std::exit(77);
  }
  MESSAGE("SKIPPED: real data not found: " << needed.string());
  return false;
}

}  // namespace metatape::test
