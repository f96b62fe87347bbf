// bench/flop_count.h: the FLOP count the meta-step benchmarks divide by, against the table and the
// worked W1 / W2 numbers of docs/fused-meta-gradient.md ("FLOPs").
#include <doctest/doctest.h>

#include <stdexcept>

#include "bench/flop_count.h"

using metatape::bench::fused_meta_gradient_flops;

TEST_CASE("meta-gradient FLOP count: the per-layer table, by hand and for W1 and W2") {
  // One layer 2 -> 3, one row each, one step: a unit is 6 multiply-adds. Forward + backward (no input
  // gradient at layer 0) 2 units, the HVP 2 more, the query forward + backward 2: 6 units, 72 FLOPs.
  CHECK(fused_meta_gradient_flops({2, 3}, 1, 1, 1, true) == 72);
  CHECK(fused_meta_gradient_flops({2, 3}, 1, 1, 1, false) == 48);
  // Two layers 2 -> 3 -> 4, n = 1: layer 1 is 12 multiply-adds a unit; forward + backward 3 units,
  // HVP 6 units. Support fb = 2*6 + 3*12 = 48, HVP = 2*6 + 6*12 = 84; query (m = 2) fb = 96.
  CHECK(fused_meta_gradient_flops({2, 3, 4}, 1, 2, 1, true) == 2 * (48 + 84 + 96));
  CHECK(fused_meta_gradient_flops({2, 3, 4}, 1, 2, 3, true) == 2 * (3 * (48 + 84) + 96));
  CHECK(fused_meta_gradient_flops({2, 3, 4}, 1, 2, 3, true, true) == 2 * (3 * (48 + 84) + 3 * 96));

  // W1 (50-128-128-3, n 15, m 45, K 5): 0.95 M + 1.70 M multiply-adds per inner step, 2.84 M for the
  // query: 32.2 MFLOP per task, 1.03 GFLOP per meta-batch of 32.
  const std::int64_t w1 = fused_meta_gradient_flops({50, 128, 128, 3}, 15, 45, 5, true);
  CHECK(w1 == 2 * (5 * (946560 + 1701120) + 2839680));
  CHECK(32 * w1 == doctest::Approx(1.03e9).epsilon(0.01));
  CHECK(fused_meta_gradient_flops({50, 128, 128, 3}, 15, 45, 5, false) == 2 * (5 * 946560 + 2839680));
  // W2 (1-40-40-1, n = m = 10, K 1): 0.40 MFLOP per task.
  CHECK(fused_meta_gradient_flops({1, 40, 40, 1}, 10, 10, 1, true) == 398400);

  CHECK_THROWS_AS(fused_meta_gradient_flops({50}, 15, 45, 5, true), std::invalid_argument);
  CHECK_THROWS_AS(fused_meta_gradient_flops({50, 3}, -1, 45, 5, true), std::invalid_argument);
}
