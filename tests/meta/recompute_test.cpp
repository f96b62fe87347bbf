// recompute_inner (checkpointing over inner steps) gives the same meta-step as the taped inner loop
// for every gradient learner and option that can use it, and holds less memory while doing so.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "autograd/ops.h"
#include "kernels/allocator.h"
#include "meta/batched.h"
#include "meta/learners.h"
#include "nn/optimizer.h"
#include "tasks/sinusoid.h"
#include "test_tasks.h"

using namespace metatape;

namespace {

struct Case {
  std::string kind;
  int steps;
  bool classification;
  meta::LearnerOptions options;
};

void set_steps(meta::LearnerOptions& o, int steps, bool recompute) {
  o.maml.inner_steps = o.meta_sgd.inner_steps = o.anil.inner_steps = steps;
  o.maml.recompute_inner = o.meta_sgd.recompute_inner = o.anil.recompute_inner = recompute;
  // This file tests the tape's recompute path; the fused kernel's checkpointing has its own tests
  // (tests/meta/fused_meta_gradient_test.cpp).
  o.maml.fused = o.meta_sgd.fused = o.anil.fused = false;
}

std::unique_ptr<meta::Learner> build(const Case& c, bool recompute) {
  auto model = std::make_shared<nn::Mlp>(
      c.classification ? nn::MlpSpec{{50, 12, 12, 3}, nn::Activation::tanh, nn::Init::uniform_fan_in, DType::f64}
                       : nn::MlpSpec{{1, 10, 10, 1}, nn::Activation::tanh, nn::Init::uniform_fan_in, DType::f64});
  Generator gen(5);
  meta::LearnerOptions o = c.options;
  set_steps(o, c.steps, recompute);
  nn::OptimizerOptions adam;
  adam.lr = 1e-2;
  return meta::make_learner(c.kind, model, model->init(gen), nn::make_adam(adam), o);
}

tasks::TaskBatch batch_for(const Case& c, Generator& gen) {
  if (c.classification) {
    tasks::TaskBatch b;
    for (int i = 0; i < 3; ++i) b.push_back(test_tasks::w1_task(gen, DType::f64));
    return b;
  }
  tasks::SinusoidOptions so;
  so.dtype = DType::f64;
  so.support_rows = 6;
  so.query_rows = 7;
  return tasks::sample_sinusoid_batch(gen, 4, so);
}

double max_relative_difference(const nn::ParameterList& a, const nn::ParameterList& b) {
  double worst = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto x = a[i].to_vector<double>(), y = b[i].to_vector<double>();
    double scale = 1e-12;
    for (double v : x) scale = std::max(scale, std::abs(v));
    for (std::size_t k = 0; k < x.size(); ++k) worst = std::max(worst, std::abs(x[k] - y[k]) / scale);
  }
  return worst;
}

}  // namespace

TEST_CASE("recompute_inner gives the taped meta-step for every gradient learner (f64)") {
  std::vector<Case> cases;
  for (int steps : {1, 2, 4, 7}) cases.push_back({"maml", steps, false, {}});
  cases.push_back({"maml", 5, true, {}});
  cases.push_back({"fomaml", 5, false, {}});
  {
    Case c{"maml++", 5, false, {}};
    c.options.maml.multi_step_loss = true;
    c.options.maml.msl_anneal_steps = 3;
    c.options.maml.learn_inner_lrs = true;
    c.options.maml.first_order_until = 1;  // the first meta-step first order, then second
    cases.push_back(c);
  }
  {
    Case c{"meta-sgd", 3, false, {}};
    c.options.meta_sgd.alpha_l2 = 0.3;
    cases.push_back(c);
  }
  {
    Case c{"meta-sgd", 4, true, {}};
    c.options.meta_sgd.first_order = true;
    cases.push_back(c);
  }
  cases.push_back({"anil", 5, true, {}});
  cases.push_back({"anil", 3, false, {}});
  {
    Case c{"anil", 4, true, {}};
    c.options.anil.first_order = true;
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    CAPTURE(c.kind);
    CAPTURE(c.steps);
    CAPTURE(c.classification);
    auto taped = build(c, false);
    auto recomputed = build(c, true);
    Generator data(11);
    for (int step = 0; step < 3; ++step) {
      CAPTURE(step);
      const tasks::TaskBatch batch = batch_for(c, data);
      const meta::StepMetrics a = taped->meta_train_step(batch, {true});
      const meta::StepMetrics b = recomputed->meta_train_step(batch, {true});
      CHECK(max_relative_difference(taped->meta_parameters(), recomputed->meta_parameters()) < 1e-11);
      CHECK(std::abs(a.query_loss - b.query_loss) <= 1e-12 * std::max(1.0, std::abs(a.query_loss)));
      CHECK(std::abs(a.support_loss - b.support_loss) <= 1e-12 * std::max(1.0, std::abs(a.support_loss)));
      CHECK(a.query_accuracy.has_value() == c.classification);
      CHECK(a.query_accuracy == b.query_accuracy);
      CHECK(std::abs(a.grad_norm - b.grad_norm) <= 1e-10 * std::max(1.0, a.grad_norm));
    }
    // The check can fail: a different meta-step moves the parameters measurably.
    const tasks::TaskBatch other = batch_for(c, data);
    taped->meta_train_step(other, {false});
    CHECK(max_relative_difference(taped->meta_parameters(), recomputed->meta_parameters()) > 1e-6);
  }
}

TEST_CASE("recompute_inner is refused by the batched learners with a message naming the option") {
  auto model = std::make_shared<nn::Mlp>(nn::MlpSpec{{1, 8, 1}});
  Generator gen(1);
  meta::LearnerOptions o;
  o.maml.recompute_inner = true;
  CHECK_THROWS_WITH_AS(meta::make_batched_learner("maml", model, model->init(gen), nn::make_sgd({}), o, {}),
                       doctest::Contains("recompute_inner"), std::exception);
  o.anil.recompute_inner = true;
  CHECK_THROWS_WITH_AS(meta::make_batched_learner("anil", model, model->init(gen), nn::make_sgd({}), o, {}),
                       doctest::Contains("recompute_inner"), std::exception);
  // Reptile has no outer gradient through the inner loop: the option does not concern it.
  CHECK_NOTHROW(meta::make_batched_learner("reptile", model, model->init(gen), nn::make_sgd({}), o, {}));
}

// Peak host tensor memory of one W1 MAML meta-step (MLP 50-128-128-3, meta-batch 2, f32), as the
// allocator counts it: with recompute_inner the growth from 5 to 20 inner steps is a fraction of the
// taped path's. (bench_meta_cpu --memory-curve prints the whole curve for docs/perf-log.md.)
TEST_CASE("recompute_inner holds less memory than the taped inner loop, growing sub-linearly") {
  auto peak_mib = [](int steps, bool recompute) {
    auto model = std::make_shared<nn::Mlp>(nn::MlpSpec{{50, 128, 128, 3}});
    Generator gen(1);
    meta::LearnerOptions o;
    set_steps(o, steps, recompute);
    auto learner = meta::make_learner("maml", model, model->init(gen), nn::make_adam({}), o);
    Generator data(2);
    const tasks::TaskBatch batch = test_tasks::w1_batch(data, 2);
    learner->meta_train_step(batch, {false});  // the optimizer's state exists from here on
    const std::size_t before = kernels::host_memory_stats().bytes_in_use;
    kernels::reset_host_peak();
    learner->meta_train_step(batch, {false});
    return static_cast<double>(kernels::host_memory_stats().peak_bytes_in_use - before) / (1 << 20);
  };
  const double taped5 = peak_mib(5, false), taped20 = peak_mib(20, false);
  const double re5 = peak_mib(5, true), re20 = peak_mib(20, true);
  MESSAGE("peak MiB over one step: taped 5 / 20 steps ", taped5, " / ", taped20, "; recomputed ", re5, " / ", re20);
  CHECK(taped20 > 3.0 * taped5);  // the taped path grows about linearly with the steps
  CHECK(re20 < 0.35 * taped20);
  CHECK(re20 - re5 < 0.25 * (taped20 - taped5));
}
