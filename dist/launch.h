// Starting and ending a job's processes (the CLI's main; see dist/communicator.h).
#pragma once

namespace metatape::dist {

// Starts MPI and installs its communicator as world() when this process was launched by an MPI
// launcher (mpirun/mpiexec set OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_SIZE) and the build has MPI.
// Throws, naming the fix, when a launcher started more than one process but the build has no MPI
// (each process would run the whole job and write the same files). Call once, first thing in main.
void init(int* argc, char*** argv);
// Ends MPI when init started it. exit_code != 0 on a job of several processes aborts all of them
// (MPI_Abort), so an error on one rank cannot leave the others waiting in a collective.
void finalize(int exit_code);
// Whether this build has MPI, and NCCL for CUDA tensors.
bool mpi_compiled();
bool nccl_compiled();

}  // namespace metatape::dist
