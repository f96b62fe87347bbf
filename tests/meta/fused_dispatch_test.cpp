// The fused executor (meta/fused.h) equals the tape through the learners' own meta_gradient(): the
// per-task learners and the batched ones, fused on against fused off, over a table of algorithm x
// activation x loss x depth x inner steps x meta-batch, f64 within 1e-11 and f32 within 1e-4
// (normwise relative per meta-parameter). The kernel's own table, with its broken variants, is
// tests/meta/fused_meta_gradient_test.cpp. Also: meta_gradient() of every learner equals the
// step-and-difference result, and fused_meta_gradient_supported() names why it declines.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "autograd/random.h"
#include "autograd/tape.h"
#include "meta/algorithm.h"
#include "meta/batched.h"
#include "meta/fused.h"
#include "meta/learners.h"
#include "meta/registry.h"
#include "nn/mlp.h"
#include "nn/optimizer.h"

using namespace metatape;

namespace {

// Random tasks of a fixed shape: classification (labels in [0, out)) or regression.
tasks::TaskBatch random_batch(Generator& gen, int tasks, bool classification, std::int64_t in, std::int64_t out,
                              std::int64_t n, std::int64_t m, DType dtype) {
  tasks::TaskBatch batch;
  for (int t = 0; t < tasks; ++t) {
    tasks::Task task;
    task.kind = classification ? tasks::TaskKind::classification : tasks::TaskKind::regression;
    task.num_classes = classification ? out : 0;
    task.support_x = Tensor::normal(Shape{n, in}, 0.0, 1.0, gen, dtype);
    task.query_x = Tensor::normal(Shape{m, in}, 0.0, 1.0, gen, dtype);
    if (classification) {
      std::vector<std::int64_t> ys(static_cast<std::size_t>(n)), yq(static_cast<std::size_t>(m));
      for (std::int64_t r = 0; r < n; ++r) ys[static_cast<std::size_t>(r)] = (r + t) % out;
      for (std::int64_t r = 0; r < m; ++r) yq[static_cast<std::size_t>(r)] = (2 * r + t) % out;
      task.support_y = Tensor::indices(ys);
      task.query_y = Tensor::indices(yq);
    } else {
      task.support_y = Tensor::normal(Shape{n, out}, 0.0, 1.0, gen, dtype);
      task.query_y = Tensor::normal(Shape{m, out}, 0.0, 1.0, gen, dtype);
    }
    batch.push_back(task);
  }
  return batch;
}

double relative_difference(const Tensor& a, const Tensor& b) {
  NoGradGuard no_grad;
  const Tensor a64 = a.to(DType::f64), b64 = b.to(DType::f64);
  const double diff = std::sqrt(sum(square(sub(a64, b64))).item());
  const double scale = std::sqrt(sum(square(b64)).item());
  return diff / std::max(scale, 1e-300);
}

struct Case {
  std::string kind;  // a registry name
  bool first_order = false;
  bool recompute = false;
};

meta::LearnerOptions options_for(const Case& c, int steps, bool fused) {
  meta::LearnerOptions o;
  o.maml.inner_steps = o.meta_sgd.inner_steps = o.anil.inner_steps = steps;
  o.maml.inner_lr = o.anil.inner_lr = 0.1;
  o.meta_sgd.alpha_init = 0.1;
  o.meta_sgd.alpha_l2 = 0.01;
  o.maml.first_order = c.first_order;
  o.meta_sgd.first_order = o.anil.first_order = c.first_order;
  o.maml.recompute_inner = o.meta_sgd.recompute_inner = o.anil.recompute_inner = c.recompute;
  o.maml.msl_anneal_steps = 10;  // the multi-step weights at step 0 are uniform (maml++)
  o.maml.first_order_until = 0;
  o.maml.fused = o.meta_sgd.fused = o.anil.fused = fused;
  return o;
}

std::unique_ptr<meta::Learner> learner_for(const Case& c, const std::shared_ptr<nn::Mlp>& model,
                                           const nn::ParameterList& init, int steps, bool fused, bool batched) {
  meta::LearnerOptions o = options_for(c, steps, fused);
  nn::OptimizerOptions oo;
  oo.lr = 1.0;
  if (c.kind == "maml++") {
    // make_learner's maml++ switches on the multi-step loss, learned rates and annealing; annealing
    // at 0 keeps the step second order.
    o.maml.multi_step_loss = true;
    o.maml.learn_inner_lrs = true;
    return meta::make_maml(model, init.clone(), nn::make_sgd(oo), o.maml);
  }
  if (batched) {
    meta::BatchedOptions b;
    b.fused = fused;
    return meta::make_batched_learner(c.kind, model, init.clone(), nn::make_sgd(oo), o, b);
  }
  return meta::make_learner(c.kind, model, init.clone(), nn::make_sgd(oo), o);
}

void compare_learners(const Case& c, const std::vector<std::int64_t>& sizes, nn::Activation activation,
                      bool classification, int steps, int tasks, DType dtype, bool batched, double tolerance) {
  Generator gen(1234 + static_cast<std::uint64_t>(steps * 31 + tasks));
  auto model = std::make_shared<nn::Mlp>(nn::MlpSpec{sizes, activation, nn::Init::uniform_fan_in, dtype});
  const nn::ParameterList init = model->init(gen);
  const tasks::TaskBatch batch = random_batch(gen, tasks, classification, sizes.front(), sizes.back(), 6, 7, dtype);
  {  // the fused side must really run fused (else the comparison would be the tape against itself)
    const meta::LearnerOptions o = options_for(c, steps, true);
    meta::GradientAlgorithm a = c.kind == "meta-sgd" ? meta::meta_sgd_algorithm(o.meta_sgd)
                                : c.kind == "anil"   ? meta::anil_algorithm(o.anil)
                                                     : meta::maml_algorithm(o.maml);
    std::string why;
    INFO(why);
    CHECK(meta::fused_meta_gradient_supported(a, *model, batch, &why));
  }
  auto fused = learner_for(c, model, init, steps, true, batched);
  auto tape = learner_for(c, model, init, steps, false, batched);
  const meta::MetaGradient gf = fused->meta_gradient(batch, {true});
  const meta::MetaGradient gt = tape->meta_gradient(batch, {true});
  REQUIRE(gf.grads.size() == gt.grads.size());
  for (std::size_t i = 0; i < gf.grads.size(); ++i) {
    CAPTURE(fused->meta_parameters().name(i));
    CHECK(relative_difference(gf.grads[i], gt.grads[i]) <= tolerance);
  }
  CHECK(std::abs(gf.metrics.query_loss - gt.metrics.query_loss) <= tolerance * (1.0 + std::abs(gt.metrics.query_loss)));
  CHECK(std::abs(gf.metrics.support_loss - gt.metrics.support_loss) <=
        tolerance * (1.0 + std::abs(gt.metrics.support_loss)));
}

const std::vector<nn::Activation> all_activations = {nn::Activation::relu,    nn::Activation::tanh,
                                                     nn::Activation::sigmoid, nn::Activation::gelu,
                                                     nn::Activation::leaky_relu, nn::Activation::elu,
                                                     nn::Activation::none};

}  // namespace

TEST_CASE("fused dispatch: every per-task learner's fused meta-gradient equals its tape one (f64 table)") {
  const std::vector<Case> cases = {{"maml"},           {"fomaml"},          {"maml++"},
                                   {"meta-sgd"},       {"meta-sgd", true},  {"anil"},
                                   {"anil", true},     {"maml", false, true}, {"meta-sgd", false, true}};
  const std::vector<std::vector<std::int64_t>> depths = {{3, 5, 4}, {3, 6, 5, 4}, {3, 5, 6, 4, 3}};
  for (const Case& c : cases) {
    for (std::size_t a = 0; a < all_activations.size(); ++a) {
      for (bool classification : {true, false}) {
        for (int steps : {1, 2, 5}) {
          // Each (case, activation, loss, steps) at one depth and meta-batch, rotating through them, so
          // every depth and both meta-batch sizes meet every algorithm and activation.
          const auto& sizes = depths[(a + static_cast<std::size_t>(steps)) % depths.size()];
          const int tasks = (a + static_cast<std::size_t>(classification)) % 2 == 0 ? 1 : 3;
          CAPTURE(c.kind);
          CAPTURE(c.first_order);
          CAPTURE(c.recompute);
          CAPTURE(nn::activation_name(all_activations[a]));
          CAPTURE(classification);
          CAPTURE(steps);
          CAPTURE(sizes.size());
          CAPTURE(tasks);
          compare_learners(c, sizes, all_activations[a], classification, steps, tasks, DType::f64, false, 1e-11);
        }
      }
    }
  }
}

TEST_CASE("fused dispatch: f32 within 1e-4 of the f32 tape") {
  for (const Case& c : std::vector<Case>{{"maml"}, {"maml++"}, {"meta-sgd"}, {"anil"}}) {
    for (nn::Activation act : {nn::Activation::relu, nn::Activation::tanh, nn::Activation::gelu}) {
      CAPTURE(c.kind);
      CAPTURE(nn::activation_name(act));
      compare_learners(c, {4, 8, 8, 3}, act, true, 2, 3, DType::f32, false, 1e-4);
    }
  }
}

TEST_CASE("fused dispatch: the batched learners' fused meta-gradient equals their tape one") {
  for (const Case& c : std::vector<Case>{{"maml"}, {"fomaml"}, {"meta-sgd"}, {"meta-sgd", true}, {"anil"}}) {
    for (bool classification : {true, false}) {
      CAPTURE(c.kind);
      CAPTURE(c.first_order);
      CAPTURE(classification);
      compare_learners(c, {3, 6, 5, 4}, nn::Activation::tanh, classification, 2, 3, DType::f64, true, 1e-11);
    }
  }
}

TEST_CASE("meta_gradient() of every learner equals the step-and-difference result") {
  // An outer SGD with lr 1 moves each meta-parameter by exactly -gradient; Reptile's epsilon 1 and no
  // decay give its pseudo-gradient the same way.
  for (const std::string& kind : meta::learner_names()) {
    CAPTURE(kind);
    Generator gen(77);
    const bool metric = meta::is_metric_learner(kind);
    auto model = std::make_shared<nn::Mlp>(
        nn::MlpSpec{{4, 8, metric ? std::int64_t{5} : std::int64_t{3}}, nn::Activation::tanh,
                    nn::Init::uniform_fan_in, DType::f64});
    const nn::ParameterList init = model->init(gen);
    const tasks::TaskBatch batch = random_batch(gen, 3, true, 4, 3, 6, 6, DType::f64);
    meta::LearnerOptions o;
    o.maml.inner_steps = o.meta_sgd.inner_steps = o.anil.inner_steps = o.reptile.inner_steps = 2;
    o.reptile.epsilon = 1.0;
    nn::OptimizerOptions oo;
    oo.lr = 1.0;
    auto learner = meta::make_learner(kind, model, init.clone(), nn::make_sgd(oo), o);
    const nn::ParameterList before = learner->meta_parameters().clone();
    const meta::MetaGradient g = learner->meta_gradient(batch, {false});
    CHECK(learner->meta_steps() == 0);
    REQUIRE(g.grads.size() == learner->meta_parameters().size());
    learner->meta_train_step(batch, {false});
    CHECK(learner->meta_steps() == 1);
    for (std::size_t i = 0; i < g.grads.size(); ++i) {
      CAPTURE(learner->meta_parameters().name(i));
      NoGradGuard no_grad;
      const Tensor moved = sub(before[i], learner->meta_parameters()[i].detach());
      // Relative to the parameter's size as well: the subtraction rounds at that scale (ProtoNets'
      // last bias has an exactly-zero gradient in exact arithmetic: the distances do not see it).
      const double scale = std::max(std::sqrt(sum(square(g.grads[i])).item()), std::sqrt(sum(square(before[i])).item()));
      CHECK(std::sqrt(sum(square(sub(moved, g.grads[i]))).item()) <= 1e-12 * scale);
    }
  }
}

TEST_CASE("fused_meta_gradient_supported names why it declines") {
  Generator gen(5);
  auto model = std::make_shared<nn::Mlp>(nn::MlpSpec{{3, 5, 4}, nn::Activation::relu, nn::Init::uniform_fan_in,
                                                     DType::f64});
  meta::GradientAlgorithm a = meta::maml_algorithm({});
  tasks::TaskBatch batch = random_batch(gen, 2, true, 3, 4, 6, 7, DType::f64);
  std::string why;
  CHECK(meta::fused_meta_gradient_supported(a, *model, batch, &why));
  a.fused = false;
  CHECK_FALSE(meta::fused_meta_gradient_supported(a, *model, batch, &why));
  CHECK(why.find("off") != std::string::npos);
  a.fused = true;
  tasks::TaskBatch uneven = batch;
  uneven[1] = random_batch(gen, 1, true, 3, 4, 5, 7, DType::f64)[0];
  CHECK_FALSE(meta::fused_meta_gradient_supported(a, *model, uneven, &why));
  CHECK(why.find("task 1") != std::string::npos);
  tasks::TaskBatch portfolio = batch;
  for (auto& t : portfolio) t.kind = tasks::TaskKind::portfolio;
  CHECK_FALSE(meta::fused_meta_gradient_supported(a, *model, portfolio, &why));
  CHECK(why.find("portfolio") != std::string::npos);
  // Tasks whose widths do not fit the model: declined, so the tape reports it in the model's terms.
  const tasks::TaskBatch wide = random_batch(gen, 2, true, 4, 4, 6, 7, DType::f64);
  CHECK_FALSE(meta::fused_meta_gradient_supported(a, *model, wide, &why));
  CHECK(why.find("4 features") != std::string::npos);
  {
    nn::OptimizerOptions sgd;
    auto maml = meta::make_maml(model, model->init(gen), nn::make_sgd(sgd), {});
    CHECK_THROWS_WITH_AS(maml->meta_gradient(wide, {false}), doctest::Contains("features"), std::exception);
  }
  // A batch the fused path declines still gets its meta-gradient, from the tape.
  nn::OptimizerOptions oo;
  auto learner = meta::make_maml(model, model->init(gen), nn::make_sgd(oo), {});
  CHECK(learner->meta_gradient(uneven, {false}).grads.size() == 4);
}
