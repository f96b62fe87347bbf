// Internal to dist/ (and its tests): the MPI communicator (dist/mpi_backend.cpp, built with
// METATAPE_WITH_MPI) and the NCCL gather it uses for CUDA tensors (dist/nccl_gather.cpp, built with
// METATAPE_WITH_NCCL, which needs no MPI: a one-rank NcclRows broadcasts nothing).
#pragma once

#include <cstdint>
#include <memory>

#include "dist/communicator.h"

namespace metatape::dist {

// MPI_Init (or MPI_Init_thread with MPI_THREAD_FUNNELED), the world communicator, and with NCCL the
// GPU of this rank (local rank mod device count). Throws when MPI cannot start.
std::shared_ptr<const Communicator> start_mpi(int* argc, char*** argv);
// MPI_Finalize, or MPI_Abort with exit_code when it is not 0 and the job has more than one process.
void stop_mpi(int exit_code);

#ifdef METATAPE_WITH_NCCL
// The NCCL side of an MPI job: a communicator over the same ranks, made on first use (its unique id
// broadcast over MPI by `broadcast_id`).
class NcclRows {
 public:
  using Broadcast = void (*)(void* bytes, std::size_t count);
  NcclRows(int rank, int size, Broadcast broadcast_id);
  ~NcclRows();
  NcclRows(const NcclRows&) = delete;
  NcclRows& operator=(const NcclRows&) = delete;
  // all_gather_rows for a CUDA tensor whose shares are known to agree (rows per rank from share_of):
  // ncclAllGather of equal padded blocks on the current stream, then the padding is cut out on the device.
  Tensor all_gather(const Tensor& local, std::int64_t n) const;

 private:
  int rank_, size_;
  Broadcast broadcast_id_;
  mutable void* comm_ = nullptr;  // ncclComm_t, made on first use
};
// Binds this process to GPU (local_rank mod device count); no-op without a GPU.
void select_rank_device(int local_rank);
#endif

}  // namespace metatape::dist
