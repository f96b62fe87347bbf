// The MPI communicator (OpenMPI from Debian; any MPI-3 should do). See dist/communicator.h.
#include "dist/mpi_backend.h"

#include <mpi.h>

#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "kernels/error.h"
#include "kernels/view.h"

namespace metatape::dist {
namespace {

void check(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  fail(std::string("MPI: ") + call + " failed: " + std::string(text, static_cast<std::size_t>(length)));
}

int checked_count(std::int64_t count, const char* what) {
  if (count < 0 || count > INT_MAX) {
    fail(std::string("MPI: ") + what + " of " + std::to_string(count) + " elements exceeds MPI's int counts " +
         "(split the batch or lower meta_batch)");
  }
  return static_cast<int>(count);
}

void broadcast_from_rank0(void* bytes, std::size_t count) {
  check(MPI_Bcast(bytes, checked_count(static_cast<std::int64_t>(count), "a broadcast"), MPI_BYTE, 0, MPI_COMM_WORLD),
        "MPI_Bcast");
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override {
#ifdef METATAPE_WITH_NCCL
    return "mpi+nccl";
#else
    return "mpi";
#endif
  }

  Tensor all_gather_rows(const Tensor& local, std::int64_t n) const override {
    // Every rank's (rows, width, dtype, device) must agree with the shares: one small gather first, so
    // a mismatch on any rank is an error on every rank, naming it, instead of a hang or a torn buffer.
    const bool shaped = local.defined() && local.rank() == 2;
    const std::int64_t width = shaped ? local.dim(1) : -1;
    const std::vector<double> meta = all_gather(
        {shaped ? static_cast<double>(local.dim(0)) : -1.0, static_cast<double>(width),
         shaped ? static_cast<double>(static_cast<int>(local.dtype())) : -1.0,
         shaped ? static_cast<double>(static_cast<int>(local.device())) : -1.0});
    for (int r = 0; r < size_; ++r) {
      const double* m = &meta[static_cast<std::size_t>(4 * r)];
      const std::int64_t expected = share_of(n, r, size_).size();
      if (m[0] != static_cast<double>(expected) || m[1] != meta[1] || m[1] < 0 || m[2] != meta[2] ||
          m[3] != meta[3]) {
        fail("all_gather_rows: rank " + std::to_string(r) + " passed " +
             (m[0] < 0 ? std::string("no (rows, width) tensor")
                       : std::to_string(static_cast<long long>(m[0])) + " rows of width " +
                             std::to_string(static_cast<long long>(m[1]))) +
             " where its share of " + std::to_string(n) + " items is " + std::to_string(expected) +
             " rows of the width, dtype and device of rank 0's (" + std::to_string(static_cast<long long>(meta[1])) +
             " columns); the processes disagree about the batch: same config and data on every rank?");
      }
    }
#ifdef METATAPE_WITH_NCCL
    if (local.device() == Device::cuda) {
      if (!nccl_) nccl_ = std::make_unique<NcclRows>(rank_, size_, &broadcast_from_rank0);
      return nccl_->all_gather(local, n);
    }
#endif
    const Tensor host = local.to(Device::cpu);
    const auto row_bytes = static_cast<std::int64_t>(width * static_cast<std::int64_t>(kernels::dtype_size(local.dtype())));
    Tensor out = Tensor::empty(Shape{n, width}, local.dtype(), Device::cpu);
    std::vector<int> counts(static_cast<std::size_t>(size_)), displs(static_cast<std::size_t>(size_));
    for (int r = 0; r < size_; ++r) {
      const Share s = share_of(n, r, size_);
      counts[static_cast<std::size_t>(r)] = checked_count(s.size() * row_bytes, "a row gather");
      displs[static_cast<std::size_t>(r)] = checked_count(s.begin * row_bytes, "a row gather");
    }
    check(MPI_Allgatherv(host.raw_data(), counts[static_cast<std::size_t>(rank_)], MPI_BYTE, out.raw_data(),
                         counts.data(), displs.data(), MPI_BYTE, MPI_COMM_WORLD),
          "MPI_Allgatherv (rows)");
    return local.device() == Device::cpu ? out : out.to(local.device());
  }

  std::vector<double> all_gather(const std::vector<double>& local) const override {
    int mine = checked_count(static_cast<std::int64_t>(local.size()), "a value gather");
    std::vector<int> counts(static_cast<std::size_t>(size_)), displs(static_cast<std::size_t>(size_));
    check(MPI_Allgather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather (counts)");
    std::int64_t total = 0;
    for (int r = 0; r < size_; ++r) {
      displs[static_cast<std::size_t>(r)] = checked_count(total, "a value gather");
      total += counts[static_cast<std::size_t>(r)];
    }
    std::vector<double> out(static_cast<std::size_t>(checked_count(total, "a value gather")));
    check(MPI_Allgatherv(local.data(), mine, MPI_DOUBLE, out.data(), counts.data(), displs.data(), MPI_DOUBLE,
                         MPI_COMM_WORLD),
          "MPI_Allgatherv (values)");
    return out;
  }

 private:
  int rank_ = 0, size_ = 1;
#ifdef METATAPE_WITH_NCCL
  mutable std::unique_ptr<NcclRows> nccl_;
#endif
};

bool started = false;

}  // namespace

std::shared_ptr<const Communicator> start_mpi(int* argc, char*** argv) {
  int provided = 0;
  // Collectives are called from the main thread only (the sampler's workers never communicate).
  check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  started = true;
  // Errors come back as codes and become exceptions (check), so main can print them with the rank
  // before aborting the job.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  auto comm = std::make_shared<MpiCommunicator>();
#ifdef METATAPE_WITH_NCCL
  const char* local_rank = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  select_rank_device(local_rank != nullptr ? std::atoi(local_rank) : comm->rank());
#endif
  return comm;
}

void stop_mpi(int exit_code) {
  if (!started) return;
  started = false;
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (exit_code != 0 && size > 1) {
    // Every rank may be ending with the same error (a diverged loss is seen by all): then all of them
    // reach this barrier and the job ends cleanly, rank 0's last checkpoint written. A rank still
    // waiting in a collective never arrives: after the grace period the job is aborted, so an error on
    // one rank ends the job in bounded time.
    constexpr double kGraceSeconds = 10.0;
    MPI_Request barrier;
    int done = 0;
    if (MPI_Ibarrier(MPI_COMM_WORLD, &barrier) == MPI_SUCCESS) {
      const double deadline = MPI_Wtime() + kGraceSeconds;
      while (!done && MPI_Wtime() < deadline) {
        if (MPI_Test(&barrier, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) break;
        if (!done) usleep(1000);
      }
    }
    if (!done) {
      int rank = 0;
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      std::fprintf(stderr, "metatape: rank %d of %d ended with exit code %d while other ranks were still running; "
                           "aborting the job\n", rank, size, exit_code);
      MPI_Abort(MPI_COMM_WORLD, exit_code);
    }
  }
  MPI_Finalize();
}

}  // namespace metatape::dist
