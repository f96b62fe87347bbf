// The semantics of the gradient-based meta-learning algorithms, defined once. Three executors run
// them: the per-task tape (meta/gradient_learner.cpp, the reference), the task-batched tape
// (meta/batched.cpp) and the fused meta-gradient kernel (meta/fused.h, kernels/fused_meta_gradient.h).
// Each takes from here: which parameters adapt, the inner update rule and its learned rates, the
// outer loss's weight per inner step, whether a meta-step is second order, and the penalty the
// outer loss adds. A change to MAML++ or Meta-SGD is made here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "autograd/tensor.h"
#include "meta/learners.h"

namespace metatape::meta {

// How the inner learning rate is held: one fixed rate; one learned scalar per (adapted tensor,
// inner step) (MAML++, meta-parameters "inner_lr.<name>.<step>", rank 0); one learned rate per
// parameter entry (Meta-SGD, "alpha.<name>", parameter-shaped, the same at every step).
enum class InnerRates { fixed, per_layer_step, per_parameter };

struct GradientAlgorithm {
  std::string name;  // "maml", "fomaml", "maml++", "meta-sgd", "anil"
  int inner_steps = 1;
  double inner_lr = 0.01;  // fixed rate; the initial value of per_layer_step rates
  bool first_order = false;
  bool multi_step_loss = false;
  std::int64_t msl_anneal_steps = 1000;
  std::int64_t first_order_until = 0;
  InnerRates rates = InnerRates::fixed;
  double alpha_init = 0.01;  // per_parameter rates' initial value
  double alpha_l2 = 0.0;     // per_parameter: alpha_l2 * sum(alpha^2) added to the outer loss
  // ANIL: only the model's head adapts (nn::Model::head_parameter_start); the body is computed once
  // per task and trained through the features' gradient. false: every parameter adapts.
  bool head_only = false;
  bool recompute_inner = false;  // checkpointing over inner steps (MamlOptions::recompute_inner)
  bool fused = true;             // use the fused meta-gradient where supported (MamlOptions::fused)

  // Derivative-order annealing: whether the meta-step after `meta_steps` completed steps
  // differentiates through the inner gradients (never under first_order).
  bool second_order(std::int64_t meta_steps) const;
  // The outer loss's weight of the query loss at phi_s, s = 1..inner_steps (entry s - 1): MAML++'s
  // multi-step loss, uniform 1/S annealed linearly over msl_anneal_steps to (0, .., 0, 1) with a
  // floor of 0.03/S for s < S (as the MAML++ code); without it (0, .., 0, 1).
  std::vector<double> query_weights(std::int64_t meta_steps) const;
  // Position among the learned rates (the meta-parameters after the model's) of the rate of adapted
  // tensor k at inner step s; steps past the trained count reuse the last step's rate.
  std::size_t rate_index(std::size_t k, int s) const;
  // Learned rate tensors per adapted tensor: inner_steps (per_layer_step), 1 (per_parameter), 0.
  int rates_per_tensor() const;
  // recompute_inner's spacing of kept parameter copies: ceil(sqrt(inner_steps)); 1 without it
  // (every step kept). The tape's recompute path and the fused kernel's checkpointing both use it.
  int checkpoint_every() const;
  // The MLP executors' view of head_only: the first layer that adapts (the head's, from the model's
  // split) or 0 when every layer adapts.
  std::size_t first_adapted_layer(const nn::Mlp& mlp) const;
};

GradientAlgorithm maml_algorithm(const MamlOptions& options);  // "fomaml" / "maml++" / "maml" by options
GradientAlgorithm meta_sgd_algorithm(const MetaSgdOptions& options);
GradientAlgorithm anil_algorithm(const AnilOptions& options);

// Reptile's outer step size after `meta_steps` completed steps: epsilon, decayed linearly to 0 over
// decay_steps when decay_steps > 0.
double reptile_epsilon(const ReptileOptions& options, std::int64_t meta_steps);

}  // namespace metatape::meta
