// The collectives of dist/communicator.h under mpirun (any process count, 1 included), as a plain
// program: tests/scripts/mpi_test.sh runs it at -np 1, 2 and 3, scripts/gpu-check.sh at -np 1 on the
// GPU machine (the NCCL path with a one-rank communicator, and its capture into a CUDA graph).
// Every rank checks every result; the exit status is non-zero when any check failed on this rank.
//
// Checked: share_of's contiguous, balanced, ordered shares; all_gather_rows for f64 and f32 rows on
// the CPU, item counts that do not divide evenly and fewer items than processes (empty shares); a row
// count that disagrees with the shares is an error on every rank (not a hang); all_gather_items with
// items of different lengths; any(). With a GPU: the same gathers of CUDA rows (through NCCL in builds
// that have it), and the gather captured into a CUDA graph and replayed on new values.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "dist/communicator.h"
#include "dist/launch.h"
#include "kernels/error.h"
#include "kernels/kernels.h"
#include "tests/dist/rows_check.h"

namespace mt = metatape;

namespace {

std::vector<std::string> failures;

void expect(bool ok, const std::string& what) {
  if (!ok) failures.push_back(what);
}

void check_rows(mt::Device device) {
  const mt::dist::Communicator& comm = mt::dist::world();
  const auto gather = [&comm](const mt::Tensor& local, std::int64_t n) { return comm.all_gather_rows(local, n); };
  mt::dist_test::check_gathers(gather, comm.rank(), comm.size(), device, failures);
  if (comm.size() > 1) {  // a share of the wrong size: an error on every rank, not a hang
    const std::int64_t n = 2 * comm.size();
    const std::int64_t rows = comm.rank() == 1 ? 1 : 2;
    bool threw = false;
    try {
      (void)comm.all_gather_rows(mt::Tensor::zeros(mt::Shape{rows, 3}, mt::DType::f64, device), n);
    } catch (const mt::Error& e) {
      threw = std::string(e.what()).find("rank 1") != std::string::npos;
    }
    expect(threw, "a wrong share size throws an error naming rank 1 on every rank");
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    mt::dist::init(&argc, &argv);
    const mt::dist::Communicator& comm = mt::dist::world();
    mt::NoGradGuard no_grad;

    // share_of: contiguous, in rank order, covering [0, n), sizes within one of each other.
    for (std::int64_t n : {0, 1, 3, 8, 33}) {
      for (int size : {1, 2, 3, 4, 7}) {
        std::int64_t next = 0, smallest = n, largest = 0;
        for (int r = 0; r < size; ++r) {
          const mt::dist::Share s = mt::dist::share_of(n, r, size);
          expect(s.begin == next && s.end >= s.begin, "share_of is contiguous and in rank order");
          next = s.end;
          smallest = std::min(smallest, s.size());
          largest = std::max(largest, s.size());
        }
        expect(next == n && largest - smallest <= 1, "share_of covers every item, balanced");
      }
    }

    check_rows(mt::Device::cpu);

    // Items of different lengths (item i has i % 3 values), in item order.
    const std::int64_t n = 3 * comm.size() + 2;
    std::vector<std::vector<double>> mine;
    const mt::dist::Share s = comm.share(n);
    for (std::int64_t i = s.begin; i < s.end; ++i) mine.emplace_back(static_cast<std::size_t>(i % 3), 10.0 * i);
    const auto items = comm.all_gather_items(mine, n);
    bool ordered = static_cast<std::int64_t>(items.size()) == n;
    for (std::int64_t i = 0; ordered && i < n; ++i) {
      ordered = items[static_cast<std::size_t>(i)] == std::vector<double>(static_cast<std::size_t>(i % 3), 10.0 * i);
    }
    expect(ordered, "all_gather_items returns every item, in item order");
    expect(comm.any(comm.rank() == comm.size() - 1), "any() is true when one rank says true");
    expect(!comm.any(false), "any() is false when no rank says true");

    if (mt::kernels::cuda_available()) {
#ifdef METATAPE_WITH_CUDA
      check_rows(mt::Device::cuda);
      mt::dist_test::check_graph_capture(
          [&comm](const mt::Tensor& local, std::int64_t n) { return comm.all_gather_rows(local, n); }, comm.rank(),
          comm.size(), failures);
      std::printf("[rank %d] CUDA rows checked (%s)\n", comm.rank(),
                  mt::dist::nccl_compiled() ? "NCCL" : "staged through the host");
#endif
    } else if (comm.rank() == 0) {
      std::printf("CUDA rows SKIPPED: no GPU on this machine (scripts/gpu-check.sh runs them)\n");
    }
  } catch (const mt::Error& e) {
    failures.push_back(std::string("error: ") + e.what());
  }
  const mt::dist::Communicator& comm = mt::dist::world();
  for (const std::string& f : failures) std::fprintf(stderr, "[rank %d] FAILED: %s\n", comm.rank(), f.c_str());
  std::printf("[rank %d of %d, %s] %s\n", comm.rank(), comm.size(), comm.backend().c_str(),
              failures.empty() ? "all collectives checked" : "FAILURES");
  const int code = failures.empty() ? 0 : 1;
  mt::dist::finalize(code);
  return code;
}
