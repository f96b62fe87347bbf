// GPU checks of the fast paths (skipped, visibly, without a CUDA device): the fused adaptation
// kernel against the CPU reference, the task-batched meta-gradient on CUDA against the CPU, and
// CUDA-graph replay (and in-place update) against eager execution, and MAML's recompute_inner path on
// CUDA against the taped CPU step. f32 throughout.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "kernels/fused_adapt.h"
#include "kernels/kernels.h"
#include "meta/batched.h"
#include "meta/learners.h"
#include "nn/optimizer.h"
#include "tests/cuda/gpu_available.h"
#include "tests/speed/workloads.h"

#ifdef METATAPE_WITH_CUDA
#include "kernels/cuda/graph.h"
#include "kernels/cuda/runtime.h"
#endif

using namespace metatape;
using speed_test::Workload;

namespace {

meta::StackedTasks to_device(const meta::StackedTasks& s, Device device) {
  meta::StackedTasks d = s;
  d.support_x = s.support_x.to(device);
  d.support_y = s.support_y.to(device);
  d.query_x = s.query_x.to(device);
  d.query_y = s.query_y.to(device);
  return d;
}

nn::ParameterList meta_list(const std::string& kind, const Workload& w, const nn::ParameterList& init, Device device) {
  nn::ParameterList meta;
  for (std::size_t i = 0; i < init.size(); ++i) {
    meta.add(init.name(i), init[i].to(device).requires_grad_());
  }
  if (kind == "meta-sgd") {
    for (std::size_t i = 0; i < init.size(); ++i) {
      meta.add("alpha." + init.name(i), Tensor::full(init[i].shape(), w.lr, init[i].dtype(), device).requires_grad_());
    }
  }
  return meta;
}

}  // namespace

TEST_CASE("GPU: fused_adapt kernel equals the CPU reference (W1 mb 32, W2 mb 25; SGD, Meta-SGD)") {
  if (!gpu_available()) return;
  for (const bool w1 : {true, false}) {
    const Workload w = w1 ? speed_test::w1(DType::f32) : speed_test::w2(DType::f32);
    CAPTURE(w.name);
    Generator gen(w1 ? 71 : 72);
    const nn::ParameterList init = w.mlp->init(gen);
    const meta::StackedTasks s = meta::stack_tasks(w.sample(gen, w1 ? 32 : 25), Device::cpu);
    const meta::StackedTasks d = to_device(s, Device::cuda);
    const kernels::FusedAdaptConfig c = speed_test::fused_config(w);
    std::string why;
    REQUIRE_MESSAGE(kernels::fused_adapt_supported(c, s.support_x.dim(1), Device::cuda, &why), why);
    const Tensor flat = meta::flatten_parameters(init.tensors());
    Tensor rates = Tensor::uniform(flat.shape(), 0.5 * w.lr, 1.5 * w.lr, gen);
    const std::int64_t T = s.tasks(), P = flat.numel(), m = s.query_x.dim(1);
    const std::int64_t out = w.mlp->out_features();
    for (const bool meta_sgd : {false, true}) {
      CAPTURE(meta_sgd);
      Tensor a_cpu = Tensor::empty(Shape{T, P}), q_cpu = Tensor::empty(Shape{T, m, out});
      kernels::fused_adapt(c, flat.view(), meta_sgd ? rates.view() : kernels::View{}, s.support_x.view(),
                           s.support_y.view(), a_cpu.view(), s.query_x.view(), q_cpu.view());
      const Tensor flat_d = flat.to(Device::cuda), rates_d = rates.to(Device::cuda);
      Tensor a_gpu = Tensor::empty(Shape{T, P}, DType::f32, Device::cuda);
      Tensor q_gpu = Tensor::empty(Shape{T, m, out}, DType::f32, Device::cuda);
      kernels::fused_adapt(c, flat_d.view(), meta_sgd ? rates_d.view() : kernels::View{}, d.support_x.view(),
                           d.support_y.view(), a_gpu.view(), d.query_x.view(), q_gpu.view());
      CHECK(speed_test::max_scaled_diff(a_gpu, a_cpu) <= 2e-5);
      CHECK(speed_test::max_scaled_diff(q_gpu, q_cpu) <= 2e-4);
      // The adaptation moved the parameters (the comparison is not of two copies of init).
      CHECK(speed_test::max_scaled_diff(a_cpu, expand(reshape(flat, Shape{1, P}), Shape{T, P})) > 1e-6);
    }
  }
}

TEST_CASE("GPU: fused_adapt reports an out-of-range label at the next synchronisation") {
  if (!gpu_available()) return;
#ifdef METATAPE_WITH_CUDA
  const Workload w = speed_test::w1(DType::f32);
  Generator gen(5);
  const meta::StackedTasks s = meta::stack_tasks(w.sample(gen, 2), Device::cpu);
  Tensor labels = s.support_y.copy();
  labels.data<std::int64_t>()[3] = 9;
  const Tensor flat = meta::flatten_parameters(w.mlp->init(gen).tensors()).to(Device::cuda);
  Tensor adapted = Tensor::empty(Shape{2, flat.numel()}, DType::f32, Device::cuda);
  kernels::fused_adapt(speed_test::fused_config(w), flat.view(), {}, s.support_x.to(Device::cuda).view(),
                       labels.to(Device::cuda).view(), adapted.view(), {}, {});
  CHECK_THROWS_AS(kernels::cuda::synchronize(), Error);
#endif
}

TEST_CASE("GPU: batched meta-gradient on CUDA equals the CPU (every algorithm, W1 mb 8, W2 mb 25)") {
  if (!gpu_available()) return;
  for (const bool w1 : {true, false}) {
    const Workload w = w1 ? speed_test::w1(DType::f32) : speed_test::w2(DType::f32);
    Generator gen(w1 ? 81 : 82);
    const nn::ParameterList init = w.mlp->init(gen);
    const meta::StackedTasks s = meta::stack_tasks(w.sample(gen, w1 ? 8 : 25), Device::cpu);
    const meta::StackedTasks d = to_device(s, Device::cuda);
    for (const std::string kind : {"maml", "fomaml", "meta-sgd", "reptile", "anil"}) {
      CAPTURE(w.name);
      CAPTURE(kind);
      meta::BatchedOptions o;
      o.algorithm = meta::parse_batched_algorithm(kind);
      o.inner_steps = w.steps;
      o.inner_lr = w.lr;
      const auto want = meta::batched_meta_gradient(*w.mlp, meta_list(kind, w, init, Device::cpu), s, o);
      for (const bool fused : {false, true}) {
        CAPTURE(fused);
        o.fused = fused;
        const auto got = meta::batched_meta_gradient(*w.mlp, meta_list(kind, w, init, Device::cuda), d, o);
        REQUIRE(got.grads.size() == want.grads.size());
        for (std::size_t i = 0; i < got.grads.size(); ++i) {
          CAPTURE(i);
          CHECK(got.grads[i].device() == Device::cuda);
          CHECK(speed_test::max_scaled_diff(got.grads[i], want.grads[i]) <= 5e-4);
        }
        CHECK(speed_test::max_scaled_diff(got.query_loss, want.query_loss) <= 1e-4);
      }
    }
  }
}

TEST_CASE("GPU: CUDA-graph replay of a MAML meta-step and of adapt equals eager execution") {
  if (!gpu_available()) return;
#ifdef METATAPE_WITH_CUDA
  const Workload w = speed_test::w1(DType::f32);
  Generator gen(91);
  const nn::ParameterList init = w.mlp->init(gen);
  const nn::ParameterList meta = meta_list("maml", w, init, Device::cuda);
  meta::StackedTasks d = to_device(meta::stack_tasks(w.sample(gen, 8), Device::cpu), Device::cuda);
  meta::BatchedOptions o;
  o.algorithm = meta::BatchedAlgorithm::maml;
  o.inner_steps = w.steps;
  o.inner_lr = w.lr;
  std::vector<Tensor> grads;
  for (const Tensor& p : meta.tensors()) grads.push_back(Tensor::zeros(p.shape(), p.dtype(), Device::cuda));
  kernels::cuda::GraphCache cache;
  auto bindings = [&] {
    std::vector<kernels::View> v{d.support_x.view(), d.support_y.view(), d.query_x.view(), d.query_y.view()};
    for (const Tensor& p : meta.tensors()) v.push_back(p.view());
    for (const Tensor& g : grads) v.push_back(g.view());
    return v;
  };
  auto body = [&] {
    const auto step = meta::batched_meta_gradient(*w.mlp, meta, d, o);
    for (std::size_t i = 0; i < grads.size(); ++i) grads[i].assign(step.grads[i]);
  };
  auto check_equal_to_eager = [&] {
    const auto eager = meta::batched_meta_gradient(*w.mlp, meta, d, o);
    for (std::size_t i = 0; i < grads.size(); ++i) {
      CAPTURE(i);
      CHECK(speed_test::max_scaled_diff(grads[i], eager.grads[i]) <= 1e-6);
    }
  };
  const std::string config = "maml w1 steps 5 lr 0.01";
  cache.run(config, bindings(), body);  // warm-up, capture, first launch
  check_equal_to_eager();
  // New task values in the same buffers: a pure replay.
  const meta::StackedTasks fresh = to_device(meta::stack_tasks(w.sample(gen, 8), Device::cpu), Device::cuda);
  d.support_x.assign(fresh.support_x);
  d.support_y.assign(fresh.support_y);
  d.query_x.assign(fresh.query_x);
  d.query_y.assign(fresh.query_y);
  cache.run(config, bindings(), body);
  CHECK(cache.stats().replays == 1);
  check_equal_to_eager();
  // New buffers (other pointers): recaptured and updated in place.
  d = to_device(meta::stack_tasks(w.sample(gen, 8), Device::cpu), Device::cuda);
  cache.run(config, bindings(), body);
  CHECK(cache.stats().updates + cache.stats().instantiations == 2);
  CHECK(cache.size() == 1);
  check_equal_to_eager();

  // Adapt: the fused kernel with query predictions, as one graph.
  const kernels::FusedAdaptConfig c = speed_test::fused_config(w);
  const Tensor flat = meta::flatten_parameters(init.tensors()).to(Device::cuda);
  Tensor adapted = Tensor::empty(Shape{d.tasks(), flat.numel()}, DType::f32, Device::cuda);
  Tensor out = Tensor::empty(Shape{d.tasks(), d.query_x.dim(1), 3}, DType::f32, Device::cuda);
  auto adapt = [&] {
    kernels::fused_adapt(c, flat.view(), {}, d.support_x.view(), d.support_y.view(), adapted.view(), d.query_x.view(),
                         out.view());
  };
  cache.run("adapt w1",
            {flat.view(), d.support_x.view(), d.support_y.view(), adapted.view(), d.query_x.view(), out.view()}, adapt);
  const Tensor graph_out = out.copy();
  adapt();
  CHECK(speed_test::max_scaled_diff(graph_out, out) == 0.0);
  kernels::cuda::synchronize();
#endif
}

TEST_CASE("GPU: MAML with recompute_inner on CUDA equals the taped step on the CPU (W1 mb 4, 5 steps)") {
  if (!gpu_available()) return;
  const Workload w = speed_test::w1(DType::f32);
  Generator gen(83);
  const nn::ParameterList init = w.mlp->init(gen);
  const tasks::TaskBatch cpu_batch = w.sample(gen, 4);
  tasks::TaskBatch gpu_batch = cpu_batch;
  for (auto& t : gpu_batch) {
    t.support_x = t.support_x.to(Device::cuda);
    t.support_y = t.support_y.to(Device::cuda);
    t.query_x = t.query_x.to(Device::cuda);
    t.query_y = t.query_y.to(Device::cuda);
  }
  auto step = [&](Device device, bool recompute, const tasks::TaskBatch& batch) {
    nn::MlpSpec spec = w.mlp->spec();
    spec.device = device;
    auto model = std::make_shared<nn::Mlp>(spec);
    nn::ParameterList start;
    for (std::size_t i = 0; i < init.size(); ++i) start.add(init.name(i), init[i].to(device));
    meta::LearnerOptions o;
    o.maml.inner_steps = w.steps;
    o.maml.inner_lr = w.lr;
    o.maml.recompute_inner = recompute;
    nn::OptimizerOptions sgd;
    sgd.lr = 1.0;  // the update is minus the meta-gradient
    auto learner = meta::make_learner("maml", model, start, nn::make_sgd(sgd), o);
    learner->meta_train_step(batch, {false});
    return learner->meta_parameters().detached();
  };
  const nn::ParameterList want = step(Device::cpu, false, cpu_batch);
  const nn::ParameterList got = step(Device::cuda, true, gpu_batch);
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i].device() == Device::cuda);
    CHECK(speed_test::max_scaled_diff(got[i], want[i]) <= 5e-4);
  }
}
