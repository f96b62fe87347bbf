// The algorithms' semantics (meta/algorithm.h).
#include "meta/algorithm.h"

#include <algorithm>
#include <cmath>

#include "autograd/ops.h"

namespace metatape::meta {

bool GradientAlgorithm::second_order(std::int64_t meta_steps) const {
  return !first_order && meta_steps >= first_order_until;
}

std::vector<double> GradientAlgorithm::query_weights(std::int64_t meta_steps) const {
  const int n = inner_steps;
  std::vector<double> w(static_cast<std::size_t>(n), 0.0);
  if (!multi_step_loss) {
    w.back() = 1.0;
    return w;
  }
  const double uniform = 1.0 / n;
  const double decay = uniform / static_cast<double>(std::max<std::int64_t>(1, msl_anneal_steps));
  const double min_non_final = 0.03 / n;
  const double t = static_cast<double>(meta_steps);
  for (int s = 0; s + 1 < n; ++s) w[static_cast<std::size_t>(s)] = std::max(uniform - t * decay, min_non_final);
  w.back() = std::min(uniform + t * (n - 1) * decay, 1.0 - (n - 1) * min_non_final);
  return w;
}

std::size_t GradientAlgorithm::rate_index(std::size_t k, int s) const {
  if (rates == InnerRates::per_layer_step) {
    const int step = std::min(s, inner_steps - 1);
    return k * static_cast<std::size_t>(inner_steps) + static_cast<std::size_t>(step);
  }
  return k;
}

int GradientAlgorithm::rates_per_tensor() const {
  switch (rates) {
    case InnerRates::fixed:
      return 0;
    case InnerRates::per_layer_step:
      return inner_steps;
    case InnerRates::per_parameter:
      return 1;
  }
  return 0;
}

int GradientAlgorithm::checkpoint_every() const {
  if (!recompute_inner) return 1;
  return std::max(1, static_cast<int>(std::ceil(std::sqrt(static_cast<double>(inner_steps)))));
}

GradientAlgorithm maml_algorithm(const MamlOptions& o) {
  GradientAlgorithm a;
  a.name = o.first_order                                                               ? "fomaml"
           : (o.multi_step_loss || o.learn_inner_lrs || o.first_order_until > 0) ? "maml++"
                                                                                 : "maml";
  a.inner_steps = o.inner_steps;
  a.inner_lr = o.inner_lr;
  a.first_order = o.first_order;
  a.multi_step_loss = o.multi_step_loss;
  a.msl_anneal_steps = o.msl_anneal_steps;
  a.first_order_until = o.first_order_until;
  a.rates = o.learn_inner_lrs ? InnerRates::per_layer_step : InnerRates::fixed;
  a.recompute_inner = o.recompute_inner;
  a.fused = o.fused;
  return a;
}

GradientAlgorithm meta_sgd_algorithm(const MetaSgdOptions& o) {
  GradientAlgorithm a;
  a.name = "meta-sgd";
  a.inner_steps = o.inner_steps;
  a.first_order = o.first_order;
  a.rates = InnerRates::per_parameter;
  a.alpha_init = o.alpha_init;
  a.alpha_l2 = o.alpha_l2;
  a.recompute_inner = o.recompute_inner;
  a.fused = o.fused;
  return a;
}

GradientAlgorithm anil_algorithm(const AnilOptions& o) {
  GradientAlgorithm a;
  a.name = "anil";
  a.inner_steps = o.inner_steps;
  a.inner_lr = o.inner_lr;
  a.first_order = o.first_order;
  a.head_only = true;
  a.recompute_inner = o.recompute_inner;
  a.fused = o.fused;
  return a;
}

std::size_t GradientAlgorithm::first_adapted_layer(const nn::Mlp& mlp) const {
  return head_only ? mlp.head_parameter_start() / 2 : 0;
}

double reptile_epsilon(const ReptileOptions& o, std::int64_t meta_steps) {
  if (o.decay_steps <= 0) return o.epsilon;
  return o.epsilon * std::max(0.0, 1.0 - static_cast<double>(meta_steps) / static_cast<double>(o.decay_steps));
}

Tensor alpha_l2_penalty(const std::vector<Tensor>& alphas, double alpha_l2) {
  if (alpha_l2 <= 0.0) return Tensor();
  Tensor total;
  for (const Tensor& alpha : alphas) {
    const Tensor term = affine(sum(square(alpha)), alpha_l2, 0.0);
    total = total.defined() ? add(total, term) : term;
  }
  return total;
}

}  // namespace metatape::meta
