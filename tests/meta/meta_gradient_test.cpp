// The meta-gradients are exact: the MAML (second-order) outer gradient equals central differences of
// the post-adaptation query loss; first-order MAML measurably does not (so this check can fail). A
// resumed run continues bit-identically.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <unistd.h>

#include "autograd/ops.h"
#include "meta/learners.h"
#include "nn/optimizer.h"
#include "tasks/sinusoid.h"
#include "test_tasks.h"

using namespace metatape;

namespace {

// The outer loss at the current meta-parameters: mean over tasks of the query loss after `steps`
// inner steps (the learner's own adapt path, which records no second-order terms).
double outer_loss(meta::Learner& learner, const tasks::TaskBatch& batch, int steps) {
  double total = 0.0;
  for (const auto& t : batch) total += learner.evaluate(t, {steps})[0].loss;
  return total / static_cast<double>(batch.size());
}

struct Comparison {
  double max_rel = 0.0;
};

// Runs one meta-step with outer SGD lr 1 (so the update is -gradient) and compares every element of
// the gradient with central differences of outer_loss.
Comparison compare_with_fd(const std::string& kind, const meta::LearnerOptions& options, int steps,
                           const tasks::TaskBatch& batch) {
  Generator gen(21);
  auto model =
      std::make_shared<nn::Mlp>(nn::MlpSpec{{1, 6, 6, 1}, nn::Activation::tanh, nn::Init::uniform_fan_in, DType::f64});
  nn::OptimizerOptions o;
  o.lr = 1.0;
  auto learner = meta::make_learner(kind, model, model->init(gen), nn::make_sgd(o), options);
  nn::ParameterList& theta = learner->meta_parameters();
  const nn::ParameterList start = theta.clone();
  learner->meta_train_step(batch, {false});
  std::vector<std::vector<double>> analytic;
  for (std::size_t i = 0; i < theta.size(); ++i) {
    analytic.push_back(sub(start[i], theta[i].detach()).to_vector<double>());
  }
  theta.assign(start);
  Comparison c;
  const double h = 1e-6;
  for (std::size_t i = 0; i < theta.size(); ++i) {
    const auto values = start[i].to_vector<double>();
    for (std::size_t k = 0; k < values.size(); ++k) {
      auto shifted = values;
      shifted[k] = values[k] + h;
      theta[i].assign(Tensor::from_vector(shifted, start[i].shape(), DType::f64));
      const double up = outer_loss(*learner, batch, steps);
      shifted[k] = values[k] - h;
      theta[i].assign(Tensor::from_vector(shifted, start[i].shape(), DType::f64));
      const double down = outer_loss(*learner, batch, steps);
      theta[i].assign(start[i]);
      const double numeric = (up - down) / (2 * h);
      const double rel = std::abs(analytic[i][k] - numeric) / std::max(std::abs(numeric), 1e-3);
      c.max_rel = std::max(c.max_rel, rel);
    }
  }
  return c;
}

tasks::TaskBatch sinusoids(int n) {
  Generator g(4);
  tasks::SinusoidOptions o;
  o.dtype = DType::f64;
  return tasks::sample_sinusoid_batch(g, n, o);
}

}  // namespace

TEST_CASE("MAML's second-order meta-gradient equals finite differences; FOMAML's does not") {
  const auto batch = sinusoids(3);
  for (int steps : {1, 3}) {
    CAPTURE(steps);
    meta::LearnerOptions options;
    options.maml.inner_steps = steps;
    options.maml.inner_lr = 0.05;
    const auto maml = compare_with_fd("maml", options, steps, batch);
    CHECK(maml.max_rel < 1e-5);
    const auto fomaml = compare_with_fd("fomaml", options, steps, batch);
    CHECK(fomaml.max_rel > 1e-2);
  }
}

TEST_CASE("Meta-SGD and ANIL meta-gradients (initial parameters) equal finite differences") {
  const auto batch = sinusoids(2);
  meta::LearnerOptions options;
  options.anil.inner_steps = 2;
  options.anil.inner_lr = 0.1;
  CHECK(compare_with_fd("anil", options, 2, batch).max_rel < 1e-5);
  // Meta-SGD: the model-parameter part (the alphas are checked against PyTorch in parity_test).
  options.meta_sgd.alpha_init = 0.05;
  Generator gen(21);
  auto model =
      std::make_shared<nn::Mlp>(nn::MlpSpec{{1, 6, 6, 1}, nn::Activation::tanh, nn::Init::uniform_fan_in, DType::f64});
  nn::OptimizerOptions o;
  o.lr = 1.0;
  auto learner = meta::make_learner("meta-sgd", model, model->init(gen), nn::make_sgd(o), options);
  nn::ParameterList& theta = learner->meta_parameters();
  CHECK(theta.size() == 12);
  CHECK(theta.name(6) == "alpha.layer0.weight");
  const nn::ParameterList start = theta.clone();
  learner->meta_train_step(batch, {false});
  // alpha gradient for one element vs finite differences through adapt (which uses alpha).
  const double analytic = start[6].at({2, 0}) - theta[6].at({2, 0});
  theta.assign(start);
  auto shifted = start[6].to_vector<double>();
  const double h = 1e-6;
  shifted[2] += h;
  theta[6].assign(Tensor::from_vector(shifted, start[6].shape(), DType::f64));
  const double up = outer_loss(*learner, batch, 1);
  shifted[2] -= 2 * h;
  theta[6].assign(Tensor::from_vector(shifted, start[6].shape(), DType::f64));
  const double down = outer_loss(*learner, batch, 1);
  CHECK(analytic == doctest::Approx((up - down) / (2 * h)).epsilon(1e-5));
}

namespace {

nn::ParameterList train(const std::string& kind, int total, int split, const std::string& path) {
  auto model = std::make_shared<nn::Mlp>(nn::MlpSpec{{1, 16, 16, 1}});
  meta::LearnerOptions options;
  options.maml.inner_steps = 2;
  options.maml.msl_anneal_steps = 5;
  options.maml.first_order_until = 3;
  options.reptile.decay_steps = 20;
  auto build = [&](std::uint64_t seed) {
    Generator gen(seed);
    nn::OptimizerOptions o;
    o.lr = kind == "reptile" ? 1.0 : 1e-3;
    o.clip_norm = 5.0;
    return meta::make_learner(kind, model, model->init(gen), kind == "reptile" ? nn::make_sgd(o) : nn::make_adam(o),
                              options);
  };
  auto learner = build(1);
  Generator tasks_gen(2);
  for (int it = 0; it < total; ++it) {
    if (it == split) {
      meta::save_learner(path, *learner, &tasks_gen, R"({"run": "resume test"})");
      learner = build(99);  // different initial values, all overwritten by the checkpoint
      tasks_gen = Generator(12345);
      meta::load_learner(path, *learner, &tasks_gen);
    }
    learner->meta_train_step(tasks::sample_sinusoid_batch(tasks_gen, 4), {it % 2 == 0});
  }
  return learner->meta_parameters().clone();
}

}  // namespace

TEST_CASE("a resumed run matches an uninterrupted one bit for bit") {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("metatape_resume_" + std::to_string(::getpid()) + ".ckpt")).string();
  for (const std::string kind : {"maml++", "meta-sgd", "reptile", "fomaml"}) {
    CAPTURE(kind);
    const auto straight = train(kind, 10, -1, path);
    const auto resumed = train(kind, 10, 4, path);
    REQUIRE(straight.size() == resumed.size());
    for (std::size_t i = 0; i < straight.size(); ++i) {
      CAPTURE(straight.name(i));
      const auto a = straight[i].to_vector<float>();
      const auto b = resumed[i].to_vector<float>();
      CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    }
  }
  Generator gen(1);
  auto model = std::make_shared<nn::Mlp>(nn::MlpSpec{{1, 16, 16, 1}});
  auto other = meta::make_learner("reptile", model, model->init(gen), nn::make_sgd({}), {});
  CHECK_THROWS_WITH_AS(meta::load_learner(path, *other), doctest::Contains("written by learner 'fomaml'"), Error);
  std::filesystem::remove(path);
}
