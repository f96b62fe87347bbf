// The fused adaptation kernel: the whole inner loop of gradient-based meta-learning (forward,
// backward, SGD or Meta-SGD update, `steps` times) for every task of a batch, for plain MLPs, in one
// call. On CUDA it is ONE launch: one thread block per task, the task's parameters and activations
// in shared memory (kernels/cuda/fused_adapt.cu). On the CPU it is a plain-loop reference
// (kernels/cpu/fused_adapt.cpp) that the CUDA kernel is tested against, and that is tested against
// the tape. Not differentiable (no tape): used where the inner loop needs no history (adapt, FOMAML,
// Reptile).
//
// Flat parameter layout (one row of `params`, P = sum over layers of out*in + out floats): for each
// layer l in order, W_l (out_l, in_l) row-major, then b_l (out_l): the order of nn::Mlp's
// ParameterList ("layer<l>.weight", "layer<l>.bias") flattened.
//
// Views (all on one device; floats of one dtype: f32, or f64 on the CPU only):
//   init        (P) shared by every task, or (tasks, P) one row per task
//   rates       Meta-SGD only: (P) per-parameter inner learning rates; otherwise data == nullptr
//   support_x   (tasks, n, in)
//   support_y   classification: i64 (tasks, n) labels in [0, out); regression: (tasks, n, out)
//   adapted     (tasks, P), overwritten with the adapted parameters
//   query_x     optional (tasks, m, in); query_out (tasks, m, out) receives the adapted model's
//               outputs (logits or regression outputs); both data == nullptr to skip
// Support loss per task: mean cross-entropy over rows (classification) or mean squared error over
// all n*out elements (regression), exactly as meta::task_loss. Update: theta -= lr * grad
// (rates.data == nullptr) or theta -= rates (.) grad.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/view.h"

namespace metatape::kernels {

// The activations of the fused kernels (f, f', f'': kernels/fused_activation.h). fused_adapt runs
// relu, tanh and none; fused_meta_gradient runs all of them.
enum class FusedActivation : std::uint8_t { relu, tanh, none, leaky_relu, elu, sigmoid, gelu };
enum class FusedLoss : std::uint8_t { cross_entropy, mse };

struct FusedAdaptConfig {
  std::vector<std::int64_t> sizes;                     // in, hidden..., out; 2..fused_max_sizes entries
  FusedActivation activation = FusedActivation::relu;  // after every layer but the last
  FusedLoss loss = FusedLoss::cross_entropy;
  int steps = 1;     // >= 0
  double lr = 0.01;  // used when no rates are given
};

constexpr int fused_max_sizes = 8;

// P for these sizes.
std::int64_t fused_param_count(const std::vector<std::int64_t>& sizes);

// Bytes of shared memory one CUDA block needs for this config and `rows` support rows (layout in
// kernels/cuda/fused_adapt.cu).
std::size_t fused_shared_bytes(const FusedAdaptConfig& config, std::int64_t rows);

// Whether fused_adapt can run this config with `rows` support rows on `device`; when not, `why`
// (if given) says which limit failed, with the numbers. The CPU always can (for valid configs). On
// CUDA the shared-memory need is checked against the device's opt-in per-block limit.
bool fused_adapt_supported(const FusedAdaptConfig& config, std::int64_t rows, Device device,
                           std::string* why = nullptr);

// Runs the inner loop; throws naming the mismatching view (shapes, dtypes, devices) or the limit.
// CUDA: one launch on the calling thread's current stream, no host synchronisation; an
// out-of-range label is reported through the device error record (kernels/cuda/runtime.h) and
// turns that task's outputs into NaN.
void fused_adapt(const FusedAdaptConfig& config, const View& init, const View& rates, const View& support_x,
                 const View& support_y, const View& adapted, const View& query_x, const View& query_out);

namespace cpu {
void fused_adapt(const FusedAdaptConfig& config, const View& init, const View& rates, const View& support_x,
                 const View& support_y, const View& adapted, const View& query_x, const View& query_out);
}
namespace cuda {
void fused_adapt(const FusedAdaptConfig& config, const View& init, const View& rates, const View& support_x,
                 const View& support_y, const View& adapted, const View& query_x, const View& query_out);
// The opt-in shared memory per block of device 0, in bytes.
std::size_t fused_max_shared_bytes();
}  // namespace cuda

}  // namespace metatape::kernels
