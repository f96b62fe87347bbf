// `metatape serve` option checks through run_cli: an option outside its range exits 2 before the
// checkpoint is read, naming the flag, the value and the limit.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "apps/commands.h"

namespace {

// Runs the CLI with stderr sent to a file; returns the exit code and fills `err`.
int cli_stderr(std::vector<std::string> args, std::string& err) {
  const std::string path = "/tmp/metatape_serve_cli_" + std::to_string(::getpid()) + ".err";
  std::fflush(stderr);
  const int saved = ::dup(2);
  FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f);
  ::dup2(::fileno(f), 2);
  const int code = metatape::apps::run_cli(args);
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::fclose(f);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  err = text.str();
  std::remove(path.c_str());
  return code;
}

}  // namespace

TEST_CASE("cli: serve refuses options outside their ranges with exit 2, naming flag, value and limit") {
  std::string err;
  if (cli_stderr({"serve", "--help"}, err) != 0) {
    MESSAGE("metatape serve is not built (no cpp-httplib): skipped");
    return;
  }
  // Any existing file passes --checkpoint's check; the options are refused before it is read.
  const std::string file = std::string(METATAPE_SOURCE_DIR) + "/README.md";
  CHECK(cli_stderr({"serve", "--checkpoint", file, "--threads", "1024"}, err) == 2);
  CHECK(err.find("--threads 1024 is outside [0, 256]") != std::string::npos);
  CHECK(cli_stderr({"serve", "--checkpoint", file, "--threads", "-3"}, err) == 2);
  CHECK(err.find("--threads -3 is outside [0, 256]") != std::string::npos);
  CHECK(cli_stderr({"serve", "--checkpoint", file, "--max-connections", "100000"}, err) == 2);
  CHECK(err.find("--max-connections 100000 is outside [1, 1000]") != std::string::npos);
  CHECK(cli_stderr({"serve", "--checkpoint", file, "--head-timeout-s", "0"}, err) == 2);
  CHECK(err.find("--head-timeout-s 0 is outside (0, 86400] seconds") != std::string::npos);
  CHECK(cli_stderr({"serve", "--checkpoint", file, "--port", "70000"}, err) == 2);
  CHECK(err.find("--port 70000 is outside [0, 65535]") != std::string::npos);
  // In range, the checkpoint is read next: README.md is not one (exit 3).
  CHECK(cli_stderr({"serve", "--checkpoint", file, "--threads", "256"}, err) == 3);
}
