#include "dist/launch.h"

#include <cstdlib>
#include <string>

#include "dist/communicator.h"
#include "dist/mpi_backend.h"
#include "kernels/error.h"

namespace metatape::dist {
namespace {

// The process count an MPI launcher announced; 0 when not launched by one.
int launcher_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"}) {
    if (const char* v = std::getenv(name)) return std::atoi(v);
  }
  return std::getenv("PMIX_RANK") != nullptr ? 1 : 0;
}

}  // namespace

void init(int* argc, char*** argv) {
  const int launched = launcher_size();
  if (launched == 0) return;
  if (!mpi_compiled()) {
    if (launched > 1) {
      fail("metatape was started by an MPI launcher with " + std::to_string(launched) +
           " processes, but this build has no MPI: every process would run the whole job and write the same "
           "files. Install OpenMPI (apt-get install libopenmpi-dev openmpi-bin) and rebuild with "
           "-DMETATAPE_MPI=ON, or run without mpirun");
    }
    return;
  }
  set_world(start_mpi(argc, argv));
}

void finalize(int exit_code) {
  // The MPI communicator (and its NCCL communicator) goes first, while MPI and CUDA are still up.
  set_world(nullptr);
  if (mpi_compiled()) stop_mpi(exit_code);
}

#ifndef METATAPE_WITH_MPI
std::shared_ptr<const Communicator> start_mpi(int*, char***) {
  fail("metatape: this build has no MPI (rebuild with -DMETATAPE_MPI=ON)");
}
void stop_mpi(int) {}
#endif

bool mpi_compiled() {
#ifdef METATAPE_WITH_MPI
  return true;
#else
  return false;
#endif
}

bool nccl_compiled() {
#ifdef METATAPE_WITH_NCCL
  return true;
#else
  return false;
#endif
}

}  // namespace metatape::dist
