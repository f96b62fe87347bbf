// fused_meta_gradient on CUDA (contract: kernels/fused_meta_gradient.h; math:
// docs/fused-meta-gradient.md). ONE launch per call: one 256-thread block per task runs the whole
// task (the forward inner loop, the query passes, the reverse sweep with its Hessian-vector
// products). The per-task body, with the shared-memory and workspace layouts, is
// kernels/cuda/fused_meta_gradient_task.h (also run on host threads by the emulation test). f32 only.
//
// No host synchronisation, no allocation (the caller passes the (tasks, W) workspace), capturable in a
// CUDA graph. Deterministic: every output element is summed by one thread in a fixed order, the
// block-wide sums (losses, per-tensor rate gradients) go through cub::BlockReduce with a fixed block
// size; no float atomics. An out-of-range label is written to the device error record and turns that
// task's outputs into NaN.
#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>
#include <mutex>
#include <string>

#include "kernels/cuda/fused_meta_gradient_task.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/runtime.h"
#include "kernels/error.h"
#include "kernels/fused_meta_gradient.h"

namespace metatape::kernels::cuda {
namespace {

constexpr int fmg_threads = 256;

// The block context of fmg::TaskRun on the device.
struct DeviceBlock {
  using Reduce = cub::BlockReduce<float, fmg_threads>;
  typename Reduce::TempStorage* temp;
  float* broadcast;
  DeviceErrorRecord* error;

  __device__ __forceinline__ int tid() const { return static_cast<int>(threadIdx.x); }
  __device__ __forceinline__ int threads() const { return static_cast<int>(blockDim.x); }
  __device__ __forceinline__ void sync() const { __syncthreads(); }
  // Every thread gets the block's sum; the second barrier lets the next call reuse temp and broadcast.
  __device__ __forceinline__ float sum(float v) const {
    const float total = Reduce(*temp).Sum(v);
    if (threadIdx.x == 0) *broadcast = total;
    __syncthreads();
    const float result = *broadcast;
    __syncthreads();
    return result;
  }
  __device__ __forceinline__ void report_label(long long value, long long position, long long bound) const {
    report_device_error(error, DeviceErrorCode::label_out_of_range, DeviceErrorOp::cross_entropy, value, position,
                        bound);
  }
};

__global__ void __launch_bounds__(fmg_threads)
    fused_meta_gradient_kernel(const __grid_constant__ fmg::Layout layout, const fmg::Pointers<float> g,
                               DeviceErrorRecord* error) {
  extern __shared__ float sm[];
  __shared__ typename DeviceBlock::Reduce::TempStorage temp;
  __shared__ float broadcast;
  DeviceBlock ctx{&temp, &broadcast, error};
  fmg::TaskRun<float, DeviceBlock> task(layout, ctx, g, sm, blockIdx.x);
  task.run();
}

// Static shared memory of the kernel (CUB's temporary storage), in bytes.
std::size_t static_shared_bytes() {
  static const std::size_t bytes = [] {
    cudaFuncAttributes attributes{};
    METATAPE_CUDA_CHECK(cudaFuncGetAttributes(&attributes, fused_meta_gradient_kernel), "fused_meta_gradient",
                        "cudaFuncGetAttributes");
    return attributes.sharedSizeBytes;
  }();
  return bytes;
}

constexpr long long int32_limit = 0x7fffffff;

std::string layout_limit(const FusedMetaGradientConfig& config, std::int64_t n, std::int64_t m) {
  std::string problem = fmg::config_problem(config, n, m);
  if (!problem.empty()) return problem;
  const std::string op = "fused_meta_gradient (CUDA): ";
  if (config.steps > fmg::max_steps) {
    return op + std::to_string(config.steps) + " inner steps, the kernel runs at most " +
           std::to_string(fmg::max_steps) + " (use the tape path)";
  }
  const std::int64_t P = fused_param_count(config.sizes);
  std::int64_t widest = 0;
  for (auto s : config.sizes) widest = s > widest ? s : widest;
  if (P > int32_limit || n * widest > int32_limit || m * widest > int32_limit || n > int32_limit || m > int32_limit) {
    return op + "a parameter row (" + std::to_string(P) + ") or a row block (" + std::to_string(std::max(n, m)) +
           " rows x " + std::to_string(widest) + ") is over the kernel's int32 index limit";
  }
  const fmg::Layout p = fmg::make_layout(config, n, m, true, false);
  const std::size_t need = static_cast<std::size_t>(p.shared_floats) * sizeof(float) + static_shared_bytes();
  const std::size_t have = fused_max_shared_bytes();
  if (need > have) {
    return op + "needs " + std::to_string(need) + " bytes of shared memory per block (" + std::to_string(n) +
           " support rows x the layer widths), the device allows " + std::to_string(have) +
           " (use fewer support rows per task, narrower layers, or the tape path)";
  }
  return {};
}

}  // namespace

std::int64_t fused_meta_gradient_workspace(const FusedMetaGradientConfig& config, std::int64_t n, std::int64_t m) {
  const std::string problem = fmg::config_problem(config, n, m);
  if (!problem.empty()) fail(problem);
  return fmg::make_layout(config, n, m, true, false).workspace_floats;
}

std::string fused_meta_gradient_limit(const FusedMetaGradientConfig& config, std::int64_t n, std::int64_t m) {
  return layout_limit(config, n, m);
}

void fused_meta_gradient(const FusedMetaGradientConfig& config, const FusedMetaGradientViews& views) {
  // Views were checked by the dispatch point (kernels/cpu/fused_meta_gradient.cpp).
  const std::int64_t tasks = views.support_x.shape[0];
  const std::int64_t n = views.support_x.shape[1], m = views.query_x.shape[1];
  const std::string limit = layout_limit(config, n, m);
  if (!limit.empty()) fail(limit);
  if (tasks > int32_limit) fail("fused_meta_gradient (CUDA): more than 2^31 - 1 tasks in one launch");
  if (tasks == 0) return;
  fmg::Layout layout = fmg::make_layout(config, n, m, views.init.shape.rank == 1, views.query_out.data != nullptr);
  if (views.workspace.shape.rank != 2 || views.workspace.shape[0] != tasks ||
      views.workspace.shape[1] < layout.workspace_floats) {
    fail("fused_meta_gradient (CUDA): workspace must be (" + std::to_string(tasks) + ", " +
         std::to_string(layout.workspace_floats) + ") f32 (fused_meta_gradient_workspace), got " +
         views.workspace.shape.str());
  }
  layout.workspace_stride = views.workspace.shape[1];

  const bool ce = config.loss == FusedLoss::cross_entropy;
  fmg::Pointers<float> g;
  g.init = views.init.as<float>();
  g.rates = views.rates.data ? views.rates.as<float>() : nullptr;
  g.support_x = views.support_x.as<float>();
  g.support_labels = ce ? views.support_y.as<std::int64_t>() : nullptr;
  g.support_targets = ce ? nullptr : views.support_y.as<float>();
  g.query_x = views.query_x.as<float>();
  g.query_labels = ce ? views.query_y.as<std::int64_t>() : nullptr;
  g.query_targets = ce ? nullptr : views.query_y.as<float>();
  g.grad_init = views.grad_init.as<float>();
  g.grad_rates = config.rates != FusedRates::scalar && views.grad_rates.data ? views.grad_rates.as<float>() : nullptr;
  g.grad_support_x = config.input_grads ? views.grad_support_x.as<float>() : nullptr;
  g.grad_query_x = config.input_grads ? views.grad_query_x.as<float>() : nullptr;
  g.losses = views.losses.as<float>();
  g.query_out = views.query_out.data ? views.query_out.as<float>() : nullptr;
  g.workspace = views.workspace.as<float>();

  const std::size_t shared = static_cast<std::size_t>(layout.shared_floats) * sizeof(float);
  static std::once_flag opt_in;
  std::call_once(opt_in, [] {
    const std::size_t dynamic_limit = fused_max_shared_bytes() - static_shared_bytes();
    METATAPE_CUDA_CHECK(cudaFuncSetAttribute(fused_meta_gradient_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(dynamic_limit)),
                        "fused_meta_gradient", "cudaFuncAttributeMaxDynamicSharedMemorySize");
  });
  fused_meta_gradient_kernel<<<static_cast<unsigned>(tasks), fmg_threads, shared, current_stream()>>>(
      layout, g, device_error_record());
  METATAPE_CUDA_LAUNCH_CHECK("fused_meta_gradient", &views.support_x, &views.query_x, &views.grad_init,
                             &views.workspace);
}

}  // namespace metatape::kernels::cuda
