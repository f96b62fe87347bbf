// W3 of ../shared/BENCHMARKS.md on the CPU: one meta-step (inner loops, outer loss, its gradient and
// the Adam update) of MAML (second order) and FOMAML through the Conv-4 backbone (nn/conv4.h; 64
// filters, batch norm, ReLU, 2x2 max pool, 28x28 inputs), 5-way 1-shot with 15 query images per
// class, 1 inner SGD step of lr 0.4, outer Adam lr 1e-3; and a ProtoNet meta-step on the same tasks.
// The argument is the meta-batch (W3: 32). Images are uniform noise: the cost does not depend on the
// pixels. bench/compare/w3_torch.py runs the same workload in PyTorch; bench/compare/run_w3.sh runs
// both pinned to one core and prints the ratio. Counters: images per second through the meta-step.
#include <benchmark/benchmark.h>

#include <cstdlib>

#include "kernels/allocator.h"
#include "meta/learners.h"
#include "nn/conv4.h"
#include "nn/optimizer.h"

using namespace metatape;

namespace {

constexpr std::int64_t ways = 5, shots = 1, queries = 15, side = 28;

tasks::Task noise_task(Generator& gen) {
  tasks::Task t;
  t.kind = tasks::TaskKind::classification;
  t.num_classes = ways;
  t.support_x = Tensor::uniform(Shape{ways * shots, side * side}, 0.0, 1.0, gen);
  t.query_x = Tensor::uniform(Shape{ways * queries, side * side}, 0.0, 1.0, gen);
  std::vector<std::int64_t> sy, qy;
  for (std::int64_t c = 0; c < ways; ++c) {
    for (std::int64_t k = 0; k < shots; ++k) sy.push_back(c);
    for (std::int64_t k = 0; k < queries; ++k) qy.push_back(c);
  }
  t.support_y = Tensor::indices(sy);
  t.query_y = Tensor::indices(qy);
  return t;
}

void BM_W3_meta_step(benchmark::State& state, const std::string& kind) {
  // As `metatape omniglot` does: a Conv-4 step's working set is above the default pool cache.
  if (std::getenv("METATAPE_HOST_POOL_BYTES") == nullptr) kernels::set_host_pool_limit(std::size_t{2} << 30);
  const bool metric = kind == "protonet";
  nn::Conv4Spec spec;  // 64 filters, max pool, batch norm, 28x28
  spec.out_features = metric ? 0 : ways;
  auto model = std::make_shared<const nn::Conv4>(spec);
  Generator gen(1);
  meta::LearnerOptions o;
  o.maml.inner_steps = 1;
  o.maml.inner_lr = 0.4;
  nn::OptimizerOptions adam;
  adam.lr = 1e-3;
  auto learner = meta::make_learner(kind, model, model->init(gen), nn::make_adam(adam), o);
  tasks::TaskBatch batch;
  for (int i = 0; i < state.range(0); ++i) batch.push_back(noise_task(gen));
  for (auto _ : state) learner->meta_train_step(batch, {false});
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(state.range(0) * ways * (shots + queries)),
                                                  benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK_CAPTURE(BM_W3_meta_step, maml, std::string("maml"))->Arg(4)->Arg(32)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_W3_meta_step, fomaml, std::string("fomaml"))->Arg(4)->Arg(32)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_W3_meta_step, protonet, std::string("protonet"))->Arg(4)->Arg(32)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
