// The data-parallel exchange of one meta-step (dist/communicator.h, meta/task_rows.h), timed under
// mpirun: each rank passes its share of a meta-batch's per-task rows (W1: 23,427 f32 gradients + 2
// loss columns, 93.7 KB a task), all_gather_rows hands every rank the whole (batch, width) matrix,
// and the column sum reduces it. Prints, on rank 0, the median microseconds of the gather (the shape
// check included) and of the sum over 200 repetitions after 20 warm-up ones, the bytes each rank
// receives, and the effective bandwidth. A plain program (MPI owns main), not a Google Benchmark.
// Usage: mpirun -np N build/bench/dist/bench_dist_gather [width]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "dist/communicator.h"
#include "dist/launch.h"
#include "kernels/error.h"

namespace mt = metatape;

int main(int argc, char** argv) {
  mt::dist::init(&argc, &argv);
  const mt::dist::Communicator& comm = mt::dist::world();
  const std::int64_t width = argc > 1 ? std::atoll(argv[1]) : 23427 + 2;
  mt::NoGradGuard no_grad;
  if (comm.rank() == 0) {
    std::printf("processes %d (%s), row width %lld f32 (%.1f KB a task)\n", comm.size(), comm.backend().c_str(),
                static_cast<long long>(width), static_cast<double>(width) * 4 / 1e3);
    std::printf("| meta-batch | gather µs | received KB per rank | GB/s | column sum µs |\n|---|---|---|---|---|\n");
  }
  for (std::int64_t batch : {8, 32}) {
    const mt::dist::Share s = comm.share(batch);
    const mt::Tensor local = mt::Tensor::full(mt::Shape{s.size(), width}, 1.0 + comm.rank(), mt::DType::f32);
    std::vector<double> gather_us, sum_us;
    for (int rep = 0; rep < 220; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      const mt::Tensor all = comm.all_gather_rows(local, batch);
      const auto t1 = std::chrono::steady_clock::now();
      const mt::Tensor total = mt::sum(all, 0);
      const auto t2 = std::chrono::steady_clock::now();
      if (rep >= 20) {
        gather_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        sum_us.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
      }
    }
    auto median = [](std::vector<double> v) {
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
      return v[v.size() / 2];
    };
    const double received = static_cast<double>((batch - s.size()) * width * 4);
    const double g = median(gather_us);
    if (comm.rank() == 0) {
      std::printf("| %lld | %.1f | %.0f | %.2f | %.1f |\n", static_cast<long long>(batch), g, received / 1e3,
                  g > 0 ? received / (g * 1e3) : 0.0, median(sum_us));
    }
  }
  mt::dist::finalize(0);
  return 0;
}
