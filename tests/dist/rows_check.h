// Shared by the dist test programs: rows with a known value per (item, column), built for one rank's
// share, and the checks of a gather of them (tests/dist/mpi_collectives.cpp, nccl_one_rank.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autograd/tensor.h"
#include "dist/communicator.h"
#ifdef METATAPE_WITH_CUDA
#include "kernels/cuda/graph.h"
#include "kernels/cuda/runtime.h"
#endif

namespace metatape::dist_test {

// Distinct for every (item, column) and exact in f32.
inline double value_of(std::int64_t item, std::int64_t column, double salt) {
  return static_cast<double>(item * 1000 + column) + salt;
}

inline Tensor share_rows(const dist::Share& s, std::int64_t width, DType dtype, Device device, double salt) {
  std::vector<double> v;
  for (std::int64_t i = s.begin; i < s.end; ++i) {
    for (std::int64_t c = 0; c < width; ++c) v.push_back(value_of(i, c, salt));
  }
  return Tensor::from_vector(v, Shape{s.size(), width}, dtype, device);
}

inline bool rows_are_all_items(const Tensor& all, std::int64_t n, std::int64_t width, double salt) {
  if (all.rank() != 2 || all.dim(0) != n || all.dim(1) != width) return false;
  const std::vector<double> v = all.to_vector<double>();
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t c = 0; c < width; ++c) {
      if (v[static_cast<std::size_t>(i * width + c)] != value_of(i, c, salt)) return false;
    }
  }
  return true;
}

// gather(local rows, n): all n rows. Appends a failure description per failed check to `failures`.
using Gather = std::function<Tensor(const Tensor&, std::int64_t)>;

inline void check_gathers(const Gather& gather, int rank, int size, Device device, std::vector<std::string>& failures) {
  const std::string where = device == Device::cpu ? "cpu" : "cuda";
  for (DType dtype : {DType::f64, DType::f32}) {
    for (std::int64_t n : {std::int64_t{1}, std::int64_t{size}, std::int64_t{2 * size + 1}, std::int64_t{7}}) {
      const std::int64_t width = 5;
      const Tensor all = gather(share_rows(dist::share_of(n, rank, size), width, dtype, device, 0.25), n);
      if (all.device() != device || all.dtype() != dtype) failures.push_back(where + ": dtype or device changed");
      if (!rows_are_all_items(all, n, width, 0.25)) {
        failures.push_back(where + ": not all " + std::to_string(n) + " rows in item order");
      }
    }
  }
}

#ifdef METATAPE_WITH_CUDA
// The gather captured into a CUDA graph and replayed: the replay gathers the values the rows hold at
// replay time, with no host work beyond the launch.
inline void check_graph_capture(const Gather& gather, int rank, int size, std::vector<std::string>& failures) {
  const std::int64_t n = 2 * size + 1, width = 4;
  const dist::Share s = dist::share_of(n, rank, size);
  Tensor local = share_rows(s, width, DType::f32, Device::cuda, 0.0);
  (void)gather(local, n);  // warm-up: communicator and allocator blocks exist before the capture
  cudaStream_t stream = kernels::cuda::current_stream();
  Tensor all;
  cudaGraph_t graph = nullptr;
  {
    kernels::cuda::GraphCapture capture(stream);
    all = gather(local, n);
    graph = capture.end();
  }
  cudaGraphExec_t exec = nullptr;
  if (cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) {
    failures.push_back("cuda: the captured gather does not instantiate");
    cudaGraphDestroy(graph);
    return;
  }
  local.assign(share_rows(s, width, DType::f32, Device::cuda, 0.5));
  if (cudaGraphLaunch(exec, stream) != cudaSuccess) failures.push_back("cuda: the captured gather does not launch");
  kernels::cuda::synchronize();
  if (!rows_are_all_items(all, n, width, 0.5)) failures.push_back("cuda: the replayed graph missed the new values");
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}
#endif

}  // namespace metatape::dist_test
