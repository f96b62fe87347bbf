#include <cstdio>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "dist/communicator.h"
#include "dist/launch.h"
#include "kernels/error.h"

int main(int argc, char** argv) {
  try {
    metatape::dist::init(&argc, &argv);  // MPI under mpirun (dist/launch.h)
  } catch (const metatape::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  // The processes of a data-parallel job compute the same results; rank 0 prints them.
  if (metatape::dist::world().rank() > 0) (void)std::freopen("/dev/null", "w", stdout);
  std::vector<std::string> args(argv + 1, argv + argc);
  const int code = metatape::apps::run_cli(args);
  metatape::dist::finalize(code);
  return code;
}
