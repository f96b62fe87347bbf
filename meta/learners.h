// The learners and their options. Every learner implements meta::Learner (meta/learner.h); the
// factories take the model (a pure function of parameters, nn/model.h), its initial parameters (they
// become the learner's meta-parameters and are updated in place) and the outer optimizer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "meta/learner.h"
#include "nn/mlp.h"
#include "nn/model.h"
#include "nn/optimizer.h"
#include "nn/parameters.h"

namespace metatape::meta {

// MAML (Finn et al. 2017) with the MAML++ options (Antoniou et al. 2019).
//
// Inner loop: steps of plain SGD on the support loss, theta_{s+1} = theta_s - lr_s * grad.
// Outer loss: the query loss at the adapted parameters, averaged over the batch.
// first_order (FOMAML): the inner gradients are computed without create_graph and are constants, so
//   the Jacobian d theta_S / d theta_0 is taken as the identity: the outer gradient is the query-loss
//   gradient at the adapted parameters, applied to the initial parameters. The learnable inner
//   learning rates (if any) still receive their (first-order) gradient through the update rule.
// Second order (the default): the inner gradients are recorded (create_graph), and the outer gradient
//   is exact, Hessian-vector products included.
// recompute_inner (MAML, MAML++, Meta-SGD, ANIL; checkpointing over inner steps): false keeps every
//   inner step's graph alive until the task's outer gradient, so memory grows linearly with the inner
//   steps S. true runs the inner loop without a graph, keeps the adapted parameters only at every
//   ceil(sqrt(S))-th step, and takes the outer gradient backwards one inner step at a time, replaying
//   each step from the nearest kept parameters and recording that step alone. The gradient is the
//   same (rounding order aside; tests/meta/recompute_test.cpp), peak memory is about 2 sqrt(S)
//   parameter copies plus one step's graph, and the price is about two more graph-free inner steps
//   per inner step. The batched learners (meta/batched.h) have no recompute path.
struct MamlOptions {
  int inner_steps = 1;
  double inner_lr = 0.01;
  bool first_order = false;
  // MAML++ multi-step loss: outer loss = sum_s w_s L_query(theta_s), s = 1..inner_steps. The weights
  // start uniform (1/S each) and anneal linearly over msl_anneal_steps meta-steps to (0, .., 0, 1);
  // they never go below 0.03/S for s < S (as in the MAML++ code).
  bool multi_step_loss = false;
  std::int64_t msl_anneal_steps = 1000;
  // MAML++ per-layer per-step learnable inner learning rates, initialised to inner_lr; meta-parameter
  // names "inner_lr.<parameter name>.<step>".
  bool learn_inner_lrs = false;
  // MAML++ derivative-order annealing: first order while meta_steps() < first_order_until, then
  // second order (unless first_order is set, which means first order throughout).
  std::int64_t first_order_until = 0;
  bool recompute_inner = false;
  // Run meta_gradient on the fused kernel (kernels/fused_meta_gradient.h, meta/fused.h) when the
  // model, the options and the batch are supported (else, and when false, on the tape; the result is
  // the same up to rounding). meta::fused_meta_gradient_supported says why a batch is not.
  bool fused = true;
};

// Meta-SGD (Li et al. 2017): theta_{s+1} = theta_s - alpha (.) grad with a learnable alpha of the
// same shape as each parameter (meta-parameter names "alpha.<parameter name>"), initialised to
// alpha_init. alpha_l2 > 0 adds alpha_l2 * sum(alpha^2) to the outer loss. Second order.
struct MetaSgdOptions {
  int inner_steps = 1;
  double alpha_init = 0.01;
  double alpha_l2 = 0.0;
  bool first_order = false;
  bool recompute_inner = false;  // as MamlOptions::recompute_inner
  bool fused = true;             // as MamlOptions::fused
};

// Meta-SGD's alpha_l2 penalty, the one definition (every executor adds it to the outer loss; the
// fused one adds its gradient 2 alpha_l2 alpha, meta/fused.cpp): alpha_l2 * sum(alpha^2) summed over
// `alphas`, a recorded scalar (call inside a scope); an undefined Tensor when alpha_l2 <= 0 or there
// are no alphas.
Tensor alpha_l2_penalty(const std::vector<Tensor>& alphas, double alpha_l2);

// Reptile (Nichol et al. 2018): per task, k inner steps of SGD (or Adam, with inner_lr as its lr and
// betas 0, 0.999 as in the paper's code) on the support set (support and query are concatenated when
// use_query_in_inner is set), then the pseudo-gradient g = theta - mean_tasks(phi_task) is given to
// the outer optimizer with learning rate epsilon_t = epsilon * (1 - t / decay_steps) when decay_steps
// > 0 (linear decay to 0), else epsilon. With the SGD outer optimizer this is the paper's update
// theta <- theta + epsilon_t (mean phi - theta). Adaptation at test time uses inner SGD steps.
struct ReptileOptions {
  int inner_steps = 5;
  double inner_lr = 0.01;
  bool inner_adam = false;
  double epsilon = 1.0;
  std::int64_t decay_steps = 0;
  bool use_query_in_inner = false;
};

// ANIL (Raghu et al. 2020): only the model's head (nn::Model::head_parameter_start: an MLP's last layer,
// a backbone's linear classifier) adapts in the inner loop; the body's features are computed once per
// task. The outer gradient reaches every parameter.
struct AnilOptions {
  int inner_steps = 1;
  double inner_lr = 0.01;
  bool first_order = false;
  bool recompute_inner = false;  // as MamlOptions::recompute_inner
  bool fused = true;             // as MamlOptions::fused
};

// Prototypical Networks (Snell et al. 2017): the model embeds rows; a class prototype is the mean
// embedding of its support rows; logits are -squared Euclidean distance (sqeuclidean) or
// cosine_scale * cosine similarity (cosine). Classification tasks only.
struct ProtoOptions {
  enum class Distance { sqeuclidean, cosine };
  Distance distance = Distance::sqeuclidean;
  double cosine_scale = 10.0;
};

// Matching Networks (Vinyals et al. 2016) without full-context embeddings: f = g = the model; the
// prediction for a query row is sum_i a_i onehot(y_i), a = softmax over support rows of
// cosine_scale * cosine(f(x), g(x_i)); the loss is the NLL of log(p). Classification tasks only.
struct MatchingOptions {
  double cosine_scale = 1.0;
};

std::unique_ptr<Learner> make_maml(std::shared_ptr<const nn::Model> model, nn::ParameterList init,
                                   std::unique_ptr<nn::Optimizer> outer, MamlOptions options);
std::unique_ptr<Learner> make_meta_sgd(std::shared_ptr<const nn::Model> model, nn::ParameterList init,
                                       std::unique_ptr<nn::Optimizer> outer, MetaSgdOptions options);
std::unique_ptr<Learner> make_reptile(std::shared_ptr<const nn::Model> model, nn::ParameterList init,
                                      std::unique_ptr<nn::Optimizer> outer, ReptileOptions options);
std::unique_ptr<Learner> make_anil(std::shared_ptr<const nn::Model> model, nn::ParameterList init,
                                   std::unique_ptr<nn::Optimizer> outer, AnilOptions options);
std::unique_ptr<Learner> make_protonet(std::shared_ptr<const nn::Model> embedding, nn::ParameterList init,
                                       std::unique_ptr<nn::Optimizer> outer, ProtoOptions options);
std::unique_ptr<Learner> make_matching(std::shared_ptr<const nn::Model> embedding, nn::ParameterList init,
                                       std::unique_ptr<nn::Optimizer> outer, MatchingOptions options);

// All options in one place, for the CLI and config files.
struct LearnerOptions {
  MamlOptions maml;  // used by "maml", "fomaml" (first_order forced on) and "maml++"
  MetaSgdOptions meta_sgd;
  ReptileOptions reptile;
  AnilOptions anil;
  ProtoOptions proto;
  MatchingOptions matching;
};
// kind: "maml", "fomaml", "maml++" (multi-step loss, learnable inner lrs and derivative-order
// annealing switched on with the given counts), "meta-sgd", "reptile", "anil", "protonet",
// "matching". Throws listing the kinds.
std::unique_ptr<Learner> make_learner(const std::string& kind, std::shared_ptr<const nn::Model> model,
                                      nn::ParameterList init, std::unique_ptr<nn::Optimizer> outer,
                                      const LearnerOptions& options);

}  // namespace metatape::meta
