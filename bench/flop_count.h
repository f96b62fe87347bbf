// FLOPs of one task's meta-gradient for an MLP, counted as docs/fused-meta-gradient.md ("FLOPs")
// does: only the matrix products, 2 FLOPs per multiply-add; elementwise work (activations, the loss,
// the updates) is left out. The count is the algorithm's, whichever path runs it: the fused kernel,
// the batched tape or the per-task tape (recompute_inner replays steps on top of it and is not
// counted), so achieved FLOP/s = this count / the measured time is comparable across paths and with
// the machine's FMA peak (bench/fma_peak.cpp).
//
// One "unit" of layer l on r rows is r x in_l x out_l multiply-adds. Per inner step on the n support
// rows: forward 1 unit per layer; backward 1 at layer 0 (no input gradient) and 2 above; second order
// adds the Hessian-vector product, R-forward 1 at layer 0 and 2 above, R-backward 1 at layer 0 and 4
// above. After the K steps, one forward and backward on the m query rows at theta_K (with the MAML++
// multi-step loss, also at theta_1 .. theta_{K-1}).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <vector>

namespace metatape::bench {

// Multiply-adds of one forward (units = 1 per layer) or of a per-layer pattern over r rows.
inline std::int64_t mlp_units(const std::vector<std::int64_t>& sizes, std::int64_t rows, std::int64_t first_layer,
                              std::int64_t other_layers) {
  std::int64_t macs = 0;
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
    macs += (l == 0 ? first_layer : other_layers) * rows * sizes[l] * sizes[l + 1];
  }
  return macs;
}

// sizes: the MLP's layer widths, input first (W1: {50, 128, 128, 3}); n support rows, m query rows,
// K inner steps. second_order false: FOMAML (the Hessian-vector products dropped).
inline std::int64_t fused_meta_gradient_flops(const std::vector<std::int64_t>& sizes, std::int64_t n, std::int64_t m,
                                              std::int64_t K, bool second_order, bool multi_step_loss = false) {
  if (sizes.size() < 2 || n < 0 || m < 0 || K < 0) {
    throw std::invalid_argument("fused_meta_gradient_flops: need at least two layer sizes and n, m, K >= 0");
  }
  const std::int64_t forward_backward_support = mlp_units(sizes, n, 2, 3);
  const std::int64_t hvp_support = second_order ? mlp_units(sizes, n, 2, 6) : 0;
  const std::int64_t query_evaluations = multi_step_loss ? K : 1;
  const std::int64_t forward_backward_query = mlp_units(sizes, m, 2, 3);
  return 2 * (K * (forward_backward_support + hvp_support) + query_evaluations * forward_backward_query);
}

}  // namespace metatape::bench
