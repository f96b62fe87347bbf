// Data parallelism: the processes of one job and the two collectives meta-training needs.
//
// A job is one process (the default) or N processes started by `mpirun -np N metatape ...` in a build
// with MPI (CMake option METATAPE_MPI). Every process runs the same program on the same data; the
// items of a batch (the tasks of a meta-batch, the episodes of an evaluation) are cut into contiguous
// shares in rank order (share_of), each process computes its share, and all_gather_rows hands every
// process all the items' results in item order. Each process then reduces them with the same code in
// the same order, so the reduction is bit-identical on every process and to a one-process run of the
// same batch: nothing is summed across processes, only copied. That costs N-1 times the bytes of a
// sum-reduction (all-gather moves items x width values, an all-reduce would move width) and is what
// makes the result independent of the process count; docs/scale.md has the numbers.
//
// Transports: one process: no copies at all. MPI (OpenMPI): host buffers (CUDA tensors are staged
// through the host). MPI + NCCL (CUDA builds with NCCL): CUDA tensors are gathered by ncclAllGather on
// the thread's current stream, with no host round trip, so a captured graph can hold it; MPI carries
// host values and NCCL's bootstrap. One GPU per process: rank r uses device (local rank mod devices).
//
// Failure: an error on one process (an exception reaching main) aborts the whole job (MPI_Abort) after
// printing it with the rank; a process that dies is reported by mpirun, which then ends the others.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "autograd/tensor.h"

namespace metatape::dist {

// [begin, end) of the items a rank computes.
struct Share {
  std::int64_t begin = 0, end = 0;
  std::int64_t size() const { return end - begin; }
};
// Rank r of `size` gets [n*r/size, n*(r+1)/size): contiguous, in rank order, sizes differing by at
// most one, some empty when n < size.
Share share_of(std::int64_t n, int rank, int size);

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "local", "mpi" or "mpi+nccl".
  virtual std::string backend() const = 0;

  Share share(std::int64_t n) const { return share_of(n, rank(), size()); }
  // Whether this process writes the job's files (checkpoints, logs, reports): rank 0.
  bool writes_files() const { return rank() == 0; }

  // Collective. Every process passes the rows of its share of n items: `local` is
  // (share(n).size(), width) (an empty share passes (0, width)), any float dtype, any device, the same
  // width, dtype and device on every process; returns (n, width) with every item's row in item order,
  // on every process. Throws (naming the difference) when the shapes disagree.
  virtual Tensor all_gather_rows(const Tensor& local, std::int64_t n) const = 0;
  // Collective. Host values of any count per process; returns them concatenated in rank order.
  virtual std::vector<double> all_gather(const std::vector<double>& local) const = 0;
  // Collective. Host values, one vector per item of this process's share of n items (lengths may
  // differ); returns all n vectors in item order on every process.
  std::vector<std::vector<double>> all_gather_items(const std::vector<std::vector<double>>& local,
                                                    std::int64_t n) const;
  // Collective: true on every process when `value` is true on any.
  bool any(bool value) const;
};

// The job's communicator: a one-process communicator unless set_world installed another
// (dist/launch.h does, under mpirun). Learners, training and evaluation use it.
const Communicator& world();
void set_world(std::shared_ptr<const Communicator> communicator);
// A one-process communicator.
std::shared_ptr<const Communicator> local_communicator();

}  // namespace metatape::dist
