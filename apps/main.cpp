#include <string>
#include <vector>

#include "apps/commands.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return metatape::apps::run_cli(args);
}
