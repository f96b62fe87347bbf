// The NCCL row gather of dist/ (dist/nccl_gather.cpp) with a one-rank communicator, on a GPU machine
// that has no MPI: CUDA rows of f32 and f64 gathered through ncclAllGather on the current stream, and
// the gather captured into a CUDA graph and replayed. scripts/gpu-check.sh runs it; without a GPU it
// exits 77 (CTest: skipped), saying so. A second GPU would add the real exchange between two devices
// (mpirun -np 2 build/tests/test_dist_mpi on a two-GPU machine), which a one-rank communicator cannot.
#include <cstdio>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "dist/mpi_backend.h"
#include "kernels/error.h"
#include "kernels/kernels.h"
#include "tests/dist/rows_check.h"

namespace mt = metatape;

int main() {
  if (!mt::kernels::cuda_available()) {
    std::printf("nccl_one_rank: SKIPPED, no GPU on this machine (scripts/gpu-check.sh runs it on the GPU machine)\n");
    return 77;
  }
  std::vector<std::string> failures;
  try {
    mt::NoGradGuard no_grad;
    mt::dist::select_rank_device(0);
    const mt::dist::NcclRows nccl(0, 1, [](void*, std::size_t) {});  // one rank: nothing to broadcast
    const auto gather = [&nccl](const mt::Tensor& local, std::int64_t n) { return nccl.all_gather(local, n); };
    mt::dist_test::check_gathers(gather, 0, 1, mt::Device::cuda, failures);
    mt::dist_test::check_graph_capture(gather, 0, 1, failures);
  } catch (const mt::Error& e) {
    failures.push_back(std::string("error: ") + e.what());
  }
  for (const std::string& f : failures) std::fprintf(stderr, "nccl_one_rank: FAILED: %s\n", f.c_str());
  std::printf("nccl_one_rank: %s\n", failures.empty() ? "CUDA rows gathered through NCCL, captured and replayed"
                                                      : "FAILURES");
  return failures.empty() ? 0 : 1;
}
