// The fast paths equal the reference paths: the task-batched meta-gradient (MAML, FOMAML, Meta-SGD,
// Reptile, ANIL; tape, fused and threaded variants) against the per-task learners of meta/, the
// fused adaptation reference against the tape, on W1 (50-128-128-3, CE, 15/45 rows, 5 steps) and
// W2 (1-40-40-1, MSE, 10/10, 1 step) in f64 on the CPU. GPU cases (tests/speed/gpu_test.cpp) check
// CUDA against these CPU references.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "kernels/fused_adapt.h"
#include "meta/batched.h"
#include "meta/learners.h"
#include "nn/optimizer.h"
#include "tasks/sinusoid.h"
#include "tests/speed/workloads.h"

using namespace metatape;
using speed_test::Workload;

namespace {

// The gradient the per-task learner applies: with outer SGD at lr 1 (Reptile: epsilon 1),
// theta_after = theta_before - g.
std::vector<Tensor> learner_gradient(const std::string& kind, const Workload& w, const nn::ParameterList& init,
                                     const tasks::TaskBatch& batch) {
  nn::OptimizerOptions o;
  o.lr = 1.0;
  meta::LearnerOptions options;
  options.maml.inner_steps = w.steps;
  options.maml.inner_lr = w.lr;
  options.meta_sgd.inner_steps = w.steps;
  options.meta_sgd.alpha_init = w.lr;
  options.reptile.inner_steps = w.steps;
  options.reptile.inner_lr = w.lr;
  options.reptile.epsilon = 1.0;
  options.anil.inner_steps = w.steps;
  options.anil.inner_lr = w.lr;
  const nn::ParameterList mine = init.clone(true);
  auto learner = meta::make_learner(kind, w.mlp, mine, nn::make_sgd(o), options);
  const nn::ParameterList before = learner->meta_parameters().clone();
  learner->meta_train_step(batch, {false});
  const nn::ParameterList& after = learner->meta_parameters();
  std::vector<Tensor> g;
  NoGradGuard no_grad;
  for (std::size_t i = 0; i < before.size(); ++i) g.push_back(sub(before[i], after[i]));
  return g;
}

nn::ParameterList batched_meta(const std::string& kind, const Workload& w, const nn::ParameterList& init) {
  nn::ParameterList meta = init.clone(true);
  if (kind == "meta-sgd") {
    for (std::size_t i = 0; i < init.size(); ++i) {
      meta.add("alpha." + init.name(i), Tensor::full(init[i].shape(), w.lr, init[i].dtype()).requires_grad_());
    }
  }
  return meta;
}

void check_close(const std::vector<Tensor>& got, const std::vector<Tensor>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    const double d = speed_test::max_scaled_diff(got[i], want[i]);
    CHECK(d <= tol);
  }
}

}  // namespace

TEST_CASE("batched meta-gradient equals the per-task learners (W1 and W2, f64, CPU)") {
  for (const bool w1 : {false, true}) {
    const Workload w = w1 ? speed_test::w1(DType::f64) : speed_test::w2(DType::f64);
    Generator gen(w1 ? 101 : 202);
    const nn::ParameterList init = w.mlp->init(gen);
    const tasks::TaskBatch batch = w.sample(gen, w1 ? 3 : 4);
    const meta::StackedTasks stacked = meta::stack_tasks(batch, Device::cpu);
    for (const std::string kind : {"maml", "fomaml", "meta-sgd", "reptile", "anil"}) {
      CAPTURE(w.name);
      CAPTURE(kind);
      const std::vector<Tensor> want = learner_gradient(kind, w, init, batch);
      // The reference gradient is not trivially zero (so equality means something).
      double largest = 0.0;
      for (const Tensor& g : want) {
        largest = std::max(largest, speed_test::max_scaled_diff(g, Tensor::zeros(g.shape(), g.dtype())));
      }
      CHECK(largest > 1e-4);
      const nn::ParameterList meta = batched_meta(kind, w, init);
      for (const bool fused : {false, true}) {
        // One chunk; chunks of one task in sequence; chunks of two tasks on two threads.
        for (const auto& [chunk, threads] : {std::pair{0, 1}, std::pair{1, 1}, std::pair{2, 2}}) {
          CAPTURE(fused);
          CAPTURE(chunk);
          CAPTURE(threads);
          meta::BatchedOptions o;
          o.algorithm = meta::parse_batched_algorithm(kind);
          o.inner_steps = w.steps;
          o.inner_lr = w.lr;
          o.fused = fused;
          o.threads = threads;
          o.chunk = chunk;
          const meta::BatchedStep step = meta::batched_meta_gradient(*w.mlp, meta, stacked, o);
          check_close(step.grads, want, 1e-9);
          CHECK(std::isfinite(step.query_loss.item()));
        }
      }
    }
  }
}

TEST_CASE("batched Meta-SGD with alpha_l2 and first-order ANIL equal the learners (W2, f64)") {
  const Workload w = speed_test::w2(DType::f64);
  Generator gen(5);
  const nn::ParameterList init = w.mlp->init(gen);
  const tasks::TaskBatch batch = w.sample(gen, 3);
  const meta::StackedTasks stacked = meta::stack_tasks(batch, Device::cpu);
  {
    nn::OptimizerOptions o;
    o.lr = 1.0;
    meta::MetaSgdOptions ms;
    ms.inner_steps = 2;
    ms.alpha_init = 0.02;
    ms.alpha_l2 = 0.3;
    auto learner = meta::make_meta_sgd(w.mlp, init.clone(true), nn::make_sgd(o), ms);
    const nn::ParameterList before = learner->meta_parameters().clone();
    meta::BatchedOptions b;
    b.algorithm = meta::BatchedAlgorithm::meta_sgd;
    b.inner_steps = 2;
    b.alpha_l2 = 0.3;
    nn::ParameterList meta = before.clone(true);
    const auto got = meta::batched_meta_gradient(*w.mlp, meta, stacked, b).grads;
    learner->meta_train_step(batch, {false});
    for (std::size_t i = 0; i < before.size(); ++i) {
      CAPTURE(before.name(i));
      CHECK(speed_test::max_scaled_diff(got[i], sub(before[i], learner->meta_parameters()[i])) <= 1e-9);
    }
  }
  {
    nn::OptimizerOptions o;
    o.lr = 1.0;
    meta::AnilOptions a;
    a.inner_steps = 3;
    a.inner_lr = 0.05;
    a.first_order = true;
    auto learner = meta::make_anil(w.mlp, init.clone(true), nn::make_sgd(o), a);
    meta::BatchedOptions b;
    b.algorithm = meta::BatchedAlgorithm::anil;
    b.inner_steps = 3;
    b.inner_lr = 0.05;
    b.first_order = true;
    const auto got = meta::batched_meta_gradient(*w.mlp, init.clone(true), stacked, b).grads;
    learner->meta_train_step(batch, {false});
    for (std::size_t i = 0; i < init.size(); ++i) {
      CHECK(speed_test::max_scaled_diff(got[i], sub(init[i], learner->meta_parameters()[i])) <= 1e-9);
    }
  }
}

TEST_CASE("fused_adapt CPU reference equals the tape (W1 and W2, f64 and f32, SGD and Meta-SGD)") {
  for (const bool w1 : {false, true}) {
    for (const DType dtype : {DType::f64, DType::f32}) {
      const Workload w = w1 ? speed_test::w1(dtype) : speed_test::w2(dtype);
      CAPTURE(w.name);
      CAPTURE(kernels::dtype_name(dtype));
      Generator gen(w1 ? 31 : 32);
      const nn::ParameterList init = w.mlp->init(gen);
      const meta::StackedTasks s = meta::stack_tasks(w.sample(gen, 3), Device::cpu);
      std::vector<Tensor> rates;
      for (const Tensor& p : init.tensors()) {
        rates.push_back(Tensor::uniform(p.shape(), 0.5 * w.lr, 1.5 * w.lr, gen, dtype));
      }
      const double tol = dtype == DType::f64 ? 1e-11 : 2e-5;
      for (const bool meta_sgd : {false, true}) {
        CAPTURE(meta_sgd);
        const std::vector<Tensor> r = meta_sgd ? rates : std::vector<Tensor>{};
        const auto tape = meta::batched_adapt(*w.mlp, init.tensors(), s, w.steps, w.lr, r, false);
        const auto fused = meta::batched_adapt(*w.mlp, init.tensors(), s, w.steps, w.lr, r, true);
        check_close(fused, tape, tol);
        // Query outputs straight from the kernel equal the tape model at the adapted parameters.
        kernels::FusedAdaptConfig c = speed_test::fused_config(w);
        const Tensor flat = meta::flatten_parameters(init.tensors());
        Tensor adapted = Tensor::empty(Shape{s.tasks(), flat.numel()}, dtype);
        Tensor out = Tensor::empty(Shape{s.tasks(), s.query_x.dim(1), w.mlp->out_features()}, dtype);
        const Tensor flat_rates = meta_sgd ? meta::flatten_parameters(rates) : Tensor();
        kernels::fused_adapt(c, flat.view(), meta_sgd ? flat_rates.view() : kernels::View{}, s.support_x.view(),
                             s.support_y.view(), adapted.view(), s.query_x.view(), out.view());
        NoGradGuard no_grad;
        const Tensor want = meta::batched_forward(*w.mlp, tape, s.query_x, 0, w.mlp->layers());
        CHECK(speed_test::max_scaled_diff(out, want) <= tol);
        check_close(meta::unflatten_parameters(*w.mlp, adapted), tape, tol);
      }
    }
  }
}

TEST_CASE("fused_adapt: per-task initial parameters, zero steps, and clear errors") {
  const Workload w = speed_test::w2(DType::f64);
  Generator gen(9);
  const nn::ParameterList init = w.mlp->init(gen);
  const meta::StackedTasks s = meta::stack_tasks(w.sample(gen, 2), Device::cpu);
  const kernels::FusedAdaptConfig c = speed_test::fused_config(w);
  const Tensor flat = meta::flatten_parameters(init.tensors());
  const std::int64_t P = flat.numel();
  CHECK(P == kernels::fused_param_count(w.mlp->spec().sizes));
  Tensor adapted = Tensor::empty(Shape{2, P}, DType::f64);
  // Zero steps: the parameters come back unchanged.
  kernels::FusedAdaptConfig zero = c;
  zero.steps = 0;
  kernels::fused_adapt(zero, flat.view(), {}, s.support_x.view(), s.support_y.view(), adapted.view(), {}, {});
  CHECK(speed_test::max_scaled_diff(slice(adapted, 0, 1, 2), reshape(flat, Shape{1, P})) == 0.0);
  // (tasks, P) initial parameters: task 1 starting from task 0's adapted row equals two steps.
  kernels::fused_adapt(c, flat.view(), {}, s.support_x.view(), s.support_y.view(), adapted.view(), {}, {});
  Tensor again = Tensor::empty(Shape{2, P}, DType::f64);
  kernels::fused_adapt(c, adapted.view(), {}, s.support_x.view(), s.support_y.view(), again.view(), {}, {});
  kernels::FusedAdaptConfig two = c;
  two.steps = 2 * c.steps;
  Tensor direct = Tensor::empty(Shape{2, P}, DType::f64);
  kernels::fused_adapt(two, flat.view(), {}, s.support_x.view(), s.support_y.view(), direct.view(), {}, {});
  CHECK(speed_test::max_scaled_diff(again, direct) <= 1e-14);

  CHECK_THROWS_WITH_AS(kernels::fused_adapt(c, flat.view(), {}, s.query_x.view(), s.support_y.view(),
                                            Tensor::empty(Shape{3, P}, DType::f64).view(), {}, {}),
                       doctest::Contains("adapted must be (2, "), Error);
  kernels::FusedAdaptConfig bad = c;
  bad.sizes = {1, 40, 2};
  CHECK_THROWS_WITH_AS(
      kernels::fused_adapt(bad, flat.view(), {}, s.support_x.view(), s.support_y.view(), adapted.view(), {}, {}),
      doctest::Contains("init must be"), Error);
  // Out-of-range labels are named on the CPU.
  const Workload c1 = speed_test::w1(DType::f32);
  const meta::StackedTasks cls = meta::stack_tasks(c1.sample(gen, 1), Device::cpu);
  Tensor labels = cls.support_y.copy();
  labels.data<std::int64_t>()[4] = 7;
  const Tensor f1 = meta::flatten_parameters(c1.mlp->init(gen).tensors());
  Tensor out1 = Tensor::empty(Shape{1, f1.numel()});
  CHECK_THROWS_WITH_AS(kernels::fused_adapt(speed_test::fused_config(c1), f1.view(), {}, cls.support_x.view(),
                                            labels.view(), out1.view(), {}, {}),
                       doctest::Contains("label 7 of task 0 row 4 is outside [0, 3)"), Error);
  std::string why;
  CHECK(kernels::fused_adapt_supported(speed_test::fused_config(c1), 15, Device::cpu, &why));
  kernels::FusedAdaptConfig deep = speed_test::fused_config(c1);
  deep.sizes.assign(12, 8);
  CHECK_FALSE(kernels::fused_adapt_supported(deep, 15, Device::cpu, &why));
  CHECK(why.find("2..8 layer sizes") != std::string::npos);
  // W1 fits the 227 KB opt-in shared memory of an H100/H200 with room to spare.
  CHECK(kernels::fused_shared_bytes(speed_test::fused_config(c1), 15) < 232448);
}

TEST_CASE("stack_tasks and the batched step refuse what they cannot run") {
  const Workload w = speed_test::w2(DType::f32);
  Generator gen(3);
  tasks::TaskBatch batch = w.sample(gen, 2);
  tasks::SinusoidOptions longer;
  longer.support_rows = 7;
  batch.push_back(tasks::sample_sinusoid(gen, longer));
  CHECK_THROWS_WITH_AS(meta::stack_tasks(batch, Device::cpu), doctest::Contains("task 2's support_x is"), Error);
  CHECK_THROWS_WITH_AS(meta::parse_batched_algorithm("protonet"),
                       doctest::Contains("choose maml, fomaml, meta-sgd, reptile or anil"), Error);
  const nn::ParameterList init = w.mlp->init(gen);
  {
    // Parameters that do not require grad, under NoGradGuard: the same gradient, and the caller's
    // leaves keep no gradient state.
    const meta::StackedTasks s = meta::stack_tasks(w.sample(gen, 4), Device::cpu);
    const auto want = meta::batched_meta_gradient(*w.mlp, init, s, {}).grads;
    nn::ParameterList plain = init.clone(false);
    NoGradGuard no_grad;
    const auto got = meta::batched_meta_gradient(*w.mlp, plain, s, {}).grads;
    check_close(got, want, 0.0);
    CHECK_FALSE(plain[0].requires_grad());
    CHECK_FALSE(init[0].grad().defined());
  }
  meta::BatchedOptions o;
  o.algorithm = meta::BatchedAlgorithm::meta_sgd;
  CHECK_THROWS_WITH_AS(meta::batched_meta_gradient(*w.mlp, init, meta::stack_tasks(w.sample(gen, 2), Device::cpu), o),
                       doctest::Contains("expected 12 meta-parameters"), Error);
}

TEST_CASE("make_batched_learner follows the per-task learner step for step (Adam, metrics, adapt)") {
  for (const bool w1 : {false, true}) {
    const Workload w = w1 ? speed_test::w1(DType::f64) : speed_test::w2(DType::f64);
    for (const std::string kind : {"maml", "fomaml", "meta-sgd", "reptile", "anil"}) {
      CAPTURE(w.name);
      CAPTURE(kind);
      Generator gen(w1 ? 61 : 62);
      const nn::ParameterList init = w.mlp->init(gen);
      meta::LearnerOptions options;
      options.maml.inner_steps = options.meta_sgd.inner_steps = options.reptile.inner_steps = options.anil.inner_steps =
          w1 ? 2 : 1;
      options.maml.inner_lr = options.reptile.inner_lr = options.anil.inner_lr = 0.05;
      options.meta_sgd.alpha_init = 0.05;
      options.reptile.epsilon = 0.5;
      nn::OptimizerOptions o;
      o.lr = kind == "reptile" ? 1.0 : 1e-2;
      auto outer = [&] { return kind == "reptile" ? nn::make_sgd(o) : nn::make_adam(o); };
      auto reference = meta::make_learner(kind, w.mlp, init.clone(true), outer(), options);
      meta::BatchedOptions tape_only;
      tape_only.fused = !w1;  // W1: the tape path (metrics and adapt under NoGradGuard too)
      auto batched = meta::make_batched_learner(kind, w.mlp, init.clone(true), outer(), options, tape_only);
      CHECK(batched->name() == kind);
      REQUIRE(batched->meta_parameters().names() == reference->meta_parameters().names());
      for (int step = 0; step < 3; ++step) {
        const tasks::TaskBatch batch = w.sample(gen, 3);
        const meta::StepMetrics a = reference->meta_train_step(batch, {step == 2});
        const meta::StepMetrics b = batched->meta_train_step(batch, {step == 2});
        CHECK(a.step == b.step);
        if (step == 2) {
          CHECK(b.computed);
          CHECK(b.query_loss == doctest::Approx(a.query_loss).epsilon(1e-9));
          CHECK(b.support_loss == doctest::Approx(a.support_loss).epsilon(1e-9));
          CHECK(b.grad_norm == doctest::Approx(a.grad_norm).epsilon(1e-7));
          CHECK(a.query_accuracy.has_value() == b.query_accuracy.has_value());
          if (a.query_accuracy) CHECK(*b.query_accuracy == doctest::Approx(*a.query_accuracy));
        }
      }
      check_close(batched->meta_parameters().tensors(), reference->meta_parameters().tensors(), 1e-9);
      const tasks::Task task = w.sample(gen, 1).front();
      const nn::ParameterList pa = reference->adapt(task, 3), pb = batched->adapt(task, 3);
      REQUIRE(pb.names() == pa.names());
      check_close(pb.tensors(), pa.tensors(), 1e-9);
    }
  }
  Generator gen(1);
  const Workload w = speed_test::w2(DType::f32);
  meta::LearnerOptions options;
  options.maml.multi_step_loss = true;
  CHECK_THROWS_WITH_AS(meta::make_batched_learner("maml", w.mlp, w.mlp->init(gen), nn::make_adam({}), options),
                       doctest::Contains("MAML++ options have no batched path"), Error);
}
