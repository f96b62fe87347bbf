// Every learner trains on W2 (sinusoid regression) and on W1-shaped tasks (3-way 5-shot, 50 features)
// with the query loss going down; the interface contracts (adapt, predict, evaluate) hold.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "meta/learners.h"
#include "nn/optimizer.h"
#include "tasks/sinusoid.h"
#include "test_tasks.h"

using namespace metatape;

namespace {

std::unique_ptr<meta::Learner> make(const std::string& kind, std::shared_ptr<nn::Mlp> model, Generator& gen, double lr,
                                    const meta::LearnerOptions& options) {
  nn::OptimizerOptions o;
  o.lr = lr;
  auto outer = kind == "reptile" ? nn::make_sgd(o) : nn::make_adam(o);
  return meta::make_learner(kind, model, model->init(gen), std::move(outer), options);
}

// Mean query loss after default adaptation over a fixed set of tasks.
double held_out_loss(meta::Learner& learner, const tasks::TaskBatch& tasks) {
  double total = 0.0;
  for (const auto& t : tasks) {
    const auto e = learner.evaluate(t, {learner.default_adapt_steps()});
    total += e[0].loss;
  }
  return total / static_cast<double>(tasks.size());
}

}  // namespace

TEST_CASE("every gradient-based learner trains on W2 sinusoids") {
  for (const std::string kind : {"maml", "fomaml", "maml++", "meta-sgd", "reptile", "anil"}) {
    CAPTURE(kind);
    Generator gen(7);
    auto model = std::make_shared<nn::Mlp>(nn::MlpSpec{{1, 40, 40, 1}});
    meta::LearnerOptions options;
    options.maml.inner_steps = kind == "maml++" ? 2 : 1;
    options.reptile.inner_steps = 5;
    options.reptile.inner_lr = 0.02;
    options.reptile.epsilon = 0.5;
    options.anil.inner_lr = 0.01;
    auto learner = make(kind, model, gen, kind == "reptile" ? 1.0 : 1e-3, options);
    Generator task_gen(11);
    const auto held_out = tasks::sample_sinusoid_batch(task_gen, 40);
    const double before = held_out_loss(*learner, held_out);
    for (int it = 0; it < 150; ++it) {
      learner->meta_train_step(tasks::sample_sinusoid_batch(task_gen, 8), {false});
    }
    const double after = held_out_loss(*learner, held_out);
    CHECK(std::isfinite(after));
    CHECK(after < 0.8 * before);
    CHECK(learner->meta_steps() == 150);
  }
}

TEST_CASE("every learner trains on W1-shaped classification tasks") {
  for (const std::string kind : {"maml", "fomaml", "maml++", "meta-sgd", "reptile", "anil", "protonet", "matching"}) {
    CAPTURE(kind);
    Generator gen(3);
    const bool metric = kind == "protonet" || kind == "matching";
    auto model = std::make_shared<nn::Mlp>(nn::MlpSpec{{50, 64, 64, metric ? 16 : 3}});
    meta::LearnerOptions options;
    options.maml.inner_steps = 2;
    options.maml.inner_lr = 0.2;
    options.anil.inner_steps = 5;
    options.anil.inner_lr = 0.5;
    options.meta_sgd.alpha_init = 0.1;
    options.reptile.inner_lr = 0.05;
    options.reptile.epsilon = 0.5;
    options.matching.cosine_scale = 5.0;
    auto learner = make(kind, model, gen, kind == "reptile" ? 1.0 : 1e-3, options);
    Generator task_gen(5);
    const auto held_out = test_tasks::w1_batch(task_gen, 20);
    const double before = held_out_loss(*learner, held_out);
    meta::StepMetrics last;
    for (int it = 0; it < 60; ++it) last = learner->meta_train_step(test_tasks::w1_batch(task_gen, 4));
    const double after = held_out_loss(*learner, held_out);
    CHECK(last.computed);
    REQUIRE(last.query_accuracy.has_value());
    CHECK(after < 0.8 * before);
  }
}

TEST_CASE("gradient learners train on portfolio tasks (negative Sharpe)") {
  // 4 assets; in each task one asset (drawn per task) has a positive drift, visible in the features.
  auto portfolio_task = [](Generator& gen) {
    const std::int64_t best = static_cast<std::int64_t>(gen.below(4));
    auto draw = [&](std::int64_t rows, Tensor& x, Tensor& y) {
      std::vector<double> xs, ys;
      for (std::int64_t r = 0; r < rows; ++r) {
        for (std::int64_t a = 0; a < 4; ++a) {
          xs.push_back(a == best ? 1.0 + 0.3 * gen.normal() : 0.3 * gen.normal());
          ys.push_back((a == best ? 0.01 : 0.0) + 0.01 * gen.normal());
        }
      }
      x = Tensor::from_vector(xs, Shape{rows, 4});
      y = Tensor::from_vector(ys, Shape{rows, 4});
    };
    tasks::Task t;
    draw(20, t.support_x, t.support_y);
    draw(20, t.query_x, t.query_y);
    t.kind = tasks::TaskKind::portfolio;
    return t;
  };
  for (const std::string kind : {"maml", "fomaml", "meta-sgd", "reptile", "anil"}) {
    CAPTURE(kind);
    Generator gen(8);
    auto model = std::make_shared<nn::Mlp>(nn::MlpSpec{{4, 32, 4}});
    meta::LearnerOptions options;
    options.maml.inner_lr = options.anil.inner_lr = options.meta_sgd.alpha_init = options.reptile.inner_lr = 0.05;
    auto learner = make(kind, model, gen, kind == "reptile" ? 1.0 : 3e-3, options);
    Generator task_gen(9);
    tasks::TaskBatch held_out;
    for (int i = 0; i < 20; ++i) held_out.push_back(portfolio_task(task_gen));
    const double before = held_out_loss(*learner, held_out);
    for (int it = 0; it < 60; ++it) {
      tasks::TaskBatch batch;
      for (int i = 0; i < 4; ++i) batch.push_back(portfolio_task(task_gen));
      learner->meta_train_step(batch, {false});
    }
    const double after = held_out_loss(*learner, held_out);
    CHECK(std::isfinite(after));
    CHECK(after < before - 0.2);  // the Sharpe ratio per period improves by at least 0.2
  }
}

TEST_CASE("adapt returns a detached model with the initial names; evaluate scores every step count") {
  Generator gen(1);
  auto model = std::make_shared<nn::Mlp>(nn::MlpSpec{{1, 40, 40, 1}});
  auto learner = make("maml", model, gen, 1e-3, {});
  Generator task_gen(2);
  const auto task = tasks::sample_sinusoid(task_gen);
  const auto adapted = learner->adapt(task, 3);
  REQUIRE(adapted.size() == 6);
  CHECK(adapted.name(0) == "layer0.weight");
  CHECK_FALSE(adapted[0].requires_grad());
  const Tensor out = learner->predict(adapted, task.query_x);
  CHECK(out.shape() == Shape{10, 1});
  const auto e = learner->evaluate(task, {0, 1, 3});
  REQUIRE(e.size() == 3);
  CHECK(e[0].steps == 0);
  CHECK(e[2].steps == 3);
  CHECK(e[2].loss == doctest::Approx(mse(out, task.query_y).item()).epsilon(1e-6));
  CHECK(e[1].loss < e[0].loss);  // one SGD step on the support set helps on the same sinusoid
  CHECK(tape_size(true) == 0);   // nothing left on the tape
}

TEST_CASE("a meta-step leaves nothing on the tape and reads nothing unless asked") {
  Generator gen(1);
  auto model = std::make_shared<nn::Mlp>(nn::MlpSpec{{1, 40, 40, 1}});
  for (const std::string kind : {"maml", "maml++", "meta-sgd", "anil", "reptile"}) {
    CAPTURE(kind);
    meta::LearnerOptions options;
    options.maml.inner_steps = 3;
    auto learner = make(kind, model, gen, 1e-3, options);
    Generator task_gen(2);
    const auto m = learner->meta_train_step(tasks::sample_sinusoid_batch(task_gen, 4), {false});
    CHECK_FALSE(m.computed);
    CHECK(tape_size(true) == 0);
  }
}

TEST_CASE("bad input is refused with a message") {
  Generator gen(1);
  auto model = std::make_shared<nn::Mlp>(nn::MlpSpec{{1, 40, 1}});
  auto learner = make("maml", model, gen, 1e-3, {});
  CHECK_THROWS_WITH_AS(learner->meta_train_step({}), doctest::Contains("empty task batch"), Error);
  CHECK_THROWS_WITH_AS(make("nope", model, gen, 1e-3, {}), doctest::Contains("unknown kind 'nope'"), Error);
  Generator task_gen(2);
  auto task = tasks::sample_sinusoid(task_gen);
  task.support_x = Tensor::zeros(Shape{10, 2});
  CHECK_THROWS_WITH_AS(learner->adapt(task), doctest::Contains("features"), Error);
  auto w1 = test_tasks::w1_task(task_gen);
  auto proto_model = std::make_shared<nn::Mlp>(nn::MlpSpec{{50, 16}});
  auto proto = make("protonet", proto_model, gen, 1e-3, {});
  w1.support_y = Tensor::indices(std::vector<std::int64_t>(15, 0));
  CHECK_THROWS_WITH_AS(proto->adapt(w1), doctest::Contains("class 1 has no support rows"), Error);
}
