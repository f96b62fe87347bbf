// The fused second-order meta-gradient: the exact gradient of a task's outer loss with respect to the
// initial parameters of an MLP (and its learned inner rates, and optionally its inputs) through K
// inner SGD steps, with no tape. The derivation, per layer, with what is saved and what each reverse
// step computes and costs, is docs/fused-meta-gradient.md; this header is the contract.
//
// Per task t (n support rows, m query rows), with theta_0 = init:
//   inner:  theta_{s+1} = theta_s - eta_s (.) g_s,   g_s = grad_theta L_S(theta_s),  s = 0..K-1
//   outer:  F = sum_{s=1..K} query_weights[s-1] * L_Q(theta_s)
// L_S / L_Q: the mean cross-entropy over rows (labels) or the mean squared error over all
// rows*out elements, exactly as meta::task_loss. eta_s by `rates`:
//   scalar           eta_s = lr for every parameter and step
//   per_tensor_step  one scalar per (parameter tensor k, step s): rates[k * K + s], k over the
//                    2 * layers tensors in the flat order below (MAML++ "inner_lr.<name>.<step>")
//   per_parameter    eta_s = rates (P) for every step (Meta-SGD's alpha)
// second_order = false drops d g_s / d theta_s (first order: the Jacobian of each inner step is the
// identity) and with it every derivative of g_s; the rates keep their gradient -<g_s, v_{s+1}>.
//
// Outputs per task (the caller averages over tasks and adds penalties, meta/algorithm.h):
//   grad_init    (T, P)       dF / d theta_0
//   grad_rates   (T, R)       dF / d rates (R = 2 * layers * K or P); data == nullptr with `scalar`
//   grad_support_x, grad_query_x   (T, n, in), (T, m, in) dF / d inputs, when input_grads (ANIL:
//                the inputs are the body's features; the caller back-propagates them through the
//                body); data == nullptr otherwise
//   losses       (T, 2)       [L_S(theta_0), L_Q(theta_K)] (the step metrics)
//   query_out    optional (T, m, out): the model's outputs at theta_K on the query rows
//
// Flat parameter layout: kernels/fused_adapt.h (W_l (out, in) row-major then b_l, per layer).
// Activations: every FusedActivation (kernels/fused_activation.h defines f, f', f'' once for both
// backends) after every layer but the last.
//
// Memory (CPU, per thread, reused across calls; no allocation once warm for layers up to 128 wide,
// beyond which Eigen's GEMM allocates its packing blocks): with checkpoint_every = 1
// every inner step's state (theta_s and the support activations and deltas) is kept: about
// K (P + n A) floats, A = the floats kept per support row and step (at most 4x the sum of the layer
// widths; learned rates also keep g_s, P more per step); with checkpoint_every = c > 1 only theta at
// every c-th step is kept and each segment of c steps is replayed once in the reverse pass (about
// one more forward and backward per inner step): (K / c + c) P + c n A floats; c = ceil(sqrt(K))
// is sub-linear in K. Plus, independent of K, a few P and the query rows' buffers.
// fused_meta_gradient_workspace() gives the exact count (layout: kernels/cpu/fused_meta_gradient.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/fused_adapt.h"
#include "kernels/view.h"

namespace metatape::kernels {

enum class FusedRates : std::uint8_t { scalar, per_tensor_step, per_parameter };

struct FusedMetaGradientConfig {
  std::vector<std::int64_t> sizes;  // in, hidden..., out; 2..fused_max_sizes entries
  FusedActivation activation = FusedActivation::relu;
  FusedLoss loss = FusedLoss::cross_entropy;
  int steps = 1;  // K >= 1
  bool second_order = true;
  FusedRates rates = FusedRates::scalar;
  double lr = 0.01;                   // FusedRates::scalar
  std::vector<double> query_weights;  // K entries; empty means (0, .., 0, 1)
  int checkpoint_every = 1;           // >= 1, see "Memory" above
  bool input_grads = false;
  // Tests only: a deliberately wrong variant, to prove the parity tests can fail. drop_hessian_term:
  // v_s = v_{s+1} + w_s grad L_Q(theta_s), H_s u_s left out (every activation; the support input
  // gradients are still computed); drop_rate_gradient: grad_rates comes back zero.
  enum class Fault : std::uint8_t { none, drop_hessian_term, drop_rate_gradient } fault = Fault::none;
};

// Floats of per-task working memory for this config with n support and m query rows on `device`
// (CPU: the reference's buffers per thread; CUDA: the workspace row per task the caller passes).
std::int64_t fused_meta_gradient_workspace(const FusedMetaGradientConfig& config, std::int64_t n, std::int64_t m,
                                           Device device);

// Whether fused_meta_gradient runs this config on `device`; when not, `why` says which limit or
// option failed and what to do (without the "metatape: " prefix, so fail(why) reads as usual). The
// dtype is not part of the config: the CUDA kernel runs f32 only, which the dispatcher checks.
bool fused_meta_gradient_supported(const FusedMetaGradientConfig& config, std::int64_t n, std::int64_t m,
                                   Device device, std::string* why = nullptr);

struct FusedMetaGradientViews {
  View init;                   // (P) shared or (T, P)
  View rates;                  // see FusedRates; data == nullptr for scalar
  View support_x, support_y;   // (T, n, in); i64 (T, n) labels or (T, n, out) targets
  View query_x, query_y;       // (T, m, in); i64 (T, m) or (T, m, out)
  View grad_init;              // (T, P)
  View grad_rates;             // (T, R) or data == nullptr
  View grad_support_x;         // (T, n, in) when input_grads
  View grad_query_x;           // (T, m, in) when input_grads
  View losses;                 // (T, 2)
  View query_out;              // optional (T, m, out)
  View workspace;              // CUDA: (T, fused_meta_gradient_workspace) of the float dtype; CPU: unused
};

// Throws naming the mismatching view or option. CUDA: one launch per call on the current stream,
// no host synchronisation, deterministic; an out-of-range label is reported through the device
// error record and turns that task's outputs into NaN. CPU: an out-of-range label throws.
void fused_meta_gradient(const FusedMetaGradientConfig& config, const FusedMetaGradientViews& views);

namespace cpu {
void fused_meta_gradient(const FusedMetaGradientConfig& config, const FusedMetaGradientViews& views);
}
namespace cuda {
// Views already checked by the dispatcher; f32 only.
void fused_meta_gradient(const FusedMetaGradientConfig& config, const FusedMetaGradientViews& views);
std::int64_t fused_meta_gradient_workspace(const FusedMetaGradientConfig& config, std::int64_t n, std::int64_t m);
// Empty when the kernel can run this config on device 0, else the limit that failed.
std::string fused_meta_gradient_limit(const FusedMetaGradientConfig& config, std::int64_t n, std::int64_t m);
}

}  // namespace metatape::kernels
