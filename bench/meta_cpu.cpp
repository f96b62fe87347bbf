// CPU benchmarks of the meta-learners through the meta::Learner interface (the per-task learners,
// one thread; the fused meta-gradient where supported, and "_tape_" rows with it off): W1 and W2 of
// ../shared/BENCHMARKS.md.
//   W1/<learner>_mb<B>: meta_train_step on B W1 tasks (MLP 50-128-128-3, 5 inner steps lr 0.01 for
//                       every learner (Meta-SGD: alpha 0.01; Reptile: outer Adam here too),
//                       3-way 5-shot, 45 query rows, outer Adam 1e-3), no metrics read back.
//   W2/<learner>_mb25:  the same for W2 (MLP 1-40-40-1, 1 inner step, K = 10).
//   W1/adapt, W2/adapt: support rows from host vectors in, adapt, query predictions back in a host
//                       vector.
//   W1/<learner>_recompute_mb8: the same with recompute_inner (checkpointing over inner steps).
// MAML, Meta-SGD and FOMAML rows carry FLOP/s: the meta-step's FLOPs (bench/flop_count.h) over its
// time, to read against the single-thread FMA peak of bench_fma_peak.
// --memory-curve: instead of timing, prints the peak memory of a W1 meta-step (meta-batch 8) for 1, 5,
// 10 and 20 inner steps, FOMAML and MAML, taped and with recompute_inner: the peak of host tensor
// bytes counted by the allocator (exact) and the growth of the peak resident set (what the OS sees),
// each measured in a fresh child process (fork) so the peaks do not mix. Compare with PyTorch using bench/compare/w1w2_torch.py --device cpu.
#include <benchmark/benchmark.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench/flop_count.h"
#include "kernels/allocator.h"
#include "kernels/fused_meta_gradient.h"
#include "meta/algorithm.h"
#include "meta/learners.h"
#include "nn/optimizer.h"
#include "tasks/gaussian_classes.h"
#include "tasks/sinusoid.h"

using namespace metatape;

namespace {

// W1 task (as in bench/compare/w1w2_torch.py): tasks/gaussian_classes.h with its defaults.
tasks::Task w1_task(Generator& gen) { return tasks::sample_gaussian_classes(gen); }

std::unique_ptr<meta::Learner> w1_learner(const std::string& kind, int inner_steps = 5, bool recompute = false,
                                          bool fused = true) {
  auto model = std::make_shared<nn::Mlp>(nn::MlpSpec{{50, 128, 128, 3}});
  Generator gen(1);
  nn::OptimizerOptions adam;
  adam.lr = 1e-3;
  meta::LearnerOptions o;
  o.maml.inner_steps = o.meta_sgd.inner_steps = o.anil.inner_steps = o.reptile.inner_steps = inner_steps;
  o.maml.inner_lr = o.meta_sgd.alpha_init = o.anil.inner_lr = o.reptile.inner_lr = 0.01;
  o.maml.recompute_inner = o.meta_sgd.recompute_inner = o.anil.recompute_inner = recompute;
  o.maml.fused = o.meta_sgd.fused = o.anil.fused = fused;
  return meta::make_learner(kind, model, model->init(gen), nn::make_adam(adam), o);
}

std::unique_ptr<meta::Learner> w2_learner(const std::string& kind, bool fused = true) {
  auto model = std::make_shared<nn::Mlp>(nn::MlpSpec{{1, 40, 40, 1}});
  Generator gen(1);
  nn::OptimizerOptions adam;
  adam.lr = 1e-3;
  meta::LearnerOptions o;
  o.maml.inner_steps = 1;
  o.maml.inner_lr = 0.01;
  o.maml.fused = o.meta_sgd.fused = fused;
  return meta::make_learner(kind, model, model->init(gen), nn::make_adam(adam), o);
}

// Achieved FLOP/s of the meta-step, counted as bench/flop_count.h does (the algorithm's matrix
// products, so recompute_inner's replays are not in it), for the learners whose work it describes:
// MAML, Meta-SGD (second order) and FOMAML. Compare with bench_fma_peak's numbers.
void flop_counter(benchmark::State& state, const std::string& kind, const std::vector<std::int64_t>& sizes,
                  const tasks::TaskBatch& batch, int inner_steps) {
  const bool second = kind == "maml" || kind == "meta-sgd";
  if (!second && kind != "fomaml") return;
  std::int64_t flops = 0;
  for (const tasks::Task& t : batch) {
    flops += bench::fused_meta_gradient_flops(sizes, t.support_x.dim(0), t.query_x.dim(0), inner_steps, second);
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(static_cast<double>(flops), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_W1_meta_step(benchmark::State& state, const std::string& kind, bool recompute, bool fused) {
  auto learner = w1_learner(kind, 5, recompute, fused);
  Generator gen(2);
  tasks::TaskBatch batch;
  for (int i = 0; i < state.range(0); ++i) batch.push_back(w1_task(gen));
  for (auto _ : state) learner->meta_train_step(batch, {false});
  flop_counter(state, kind, {50, 128, 128, 3}, batch, 5);
}

void BM_W2_meta_step(benchmark::State& state, const std::string& kind, bool fused) {
  auto learner = w2_learner(kind, fused);
  Generator gen(2);
  const auto batch = tasks::sample_sinusoid_batch(gen, state.range(0));
  for (auto _ : state) learner->meta_train_step(batch, {false});
  flop_counter(state, kind, {1, 40, 40, 1}, batch, 1);
}

// Host vectors in, host vector out.
void BM_adapt(benchmark::State& state, bool w1) {
  auto learner = w1 ? w1_learner("maml") : w2_learner("maml");
  Generator gen(3);
  const tasks::Task t = w1 ? w1_task(gen) : tasks::sample_sinusoid(gen);
  const auto sx = t.support_x.to_vector<float>();
  const auto sy_f = w1 ? std::vector<float>() : t.support_y.to_vector<float>();
  const auto sy_i = w1 ? t.support_y.to_vector<std::int64_t>() : std::vector<std::int64_t>();
  const auto qx = t.query_x.to_vector<float>();
  for (auto _ : state) {
    tasks::Task task;
    task.kind = t.kind;
    task.num_classes = t.num_classes;
    task.support_x = Tensor::from_vector(sx, t.support_x.shape());
    task.support_y = w1 ? Tensor::indices(sy_i) : Tensor::from_vector(sy_f, t.support_y.shape());
    const auto adapted = learner->adapt(task, w1 ? 5 : 1);
    const auto out = learner->predict(adapted, Tensor::from_vector(qx, t.query_x.shape())).to_vector<float>();
    benchmark::DoNotOptimize(out.data());
  }
}

long max_rss_kib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

struct StepMemory {
  double tensor_mib = 0.0;  // peak host tensor bytes over the step, minus those in use before it
  double rss_mib = 0.0;     // growth of the process's peak resident set over the step
};

// The first W1 meta-step (meta-batch 8) in a fresh child process (parameters and data already
// allocated; the optimizer's state is created during the step and counted); the parent reads the two
// numbers back through a pipe.
StepMemory measure_step(const std::string& kind, int steps, bool recompute, bool fused) {
  StepMemory m{-1.0, -1.0};
  int fds[2];
  if (pipe(fds) != 0) return m;
  const pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    auto learner = w1_learner(kind, steps, recompute, fused);
    Generator gen(2);
    tasks::TaskBatch batch;
    for (int i = 0; i < 8; ++i) batch.push_back(w1_task(gen));
    const std::size_t in_use = kernels::host_memory_stats().bytes_in_use;
    kernels::reset_host_peak();
    const long rss_before = max_rss_kib();
    learner->meta_train_step(batch, {false});
    StepMemory r;
    r.tensor_mib = static_cast<double>(kernels::host_memory_stats().peak_bytes_in_use - in_use) / (1 << 20);
    r.rss_mib = static_cast<double>(max_rss_kib() - rss_before) / 1024.0;
    if (write(fds[1], &r, sizeof r) != sizeof r) _exit(1);
    _exit(0);
  }
  close(fds[1]);
  if (read(fds[0], &m, sizeof m) != sizeof m) m = {-1.0, -1.0};
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  return m;
}

int memory_curve() {
  std::printf(
      "W1 meta-step, meta-batch 8, on the tape (fused off): peak host tensor memory over the step\n"
      "(allocator count) and the growth of the peak RSS, MiB; each cell the first step of a fresh process\n");
  std::printf(
      "inner_steps  fomaml  fomaml_recompute  maml  maml_recompute   (RSS: fomaml fomaml_recompute maml "
      "maml_recompute)\n");
  for (int steps : {1, 5, 10, 20}) {
    const StepMemory a = measure_step("fomaml", steps, false, false), b = measure_step("fomaml", steps, true, false);
    const StepMemory c = measure_step("maml", steps, false, false), d = measure_step("maml", steps, true, false);
    std::printf("%11d  %6.2f  %16.2f  %4.2f  %14.2f   (RSS: %.2f %.2f %.2f %.2f)\n", steps, a.tensor_mib, b.tensor_mib,
                c.tensor_mib, d.tensor_mib, a.rss_mib, b.rss_mib, c.rss_mib, d.rss_mib);
  }
  std::printf(
      "\nW1 MAML on the fused meta-gradient: its per-thread working memory (exact, per task, MiB:\n"
      "fused_meta_gradient_workspace), the step's peak host tensor memory and peak RSS growth (meta-batch 8)\n");
  std::printf("inner_steps  workspace  workspace_recompute   tensors  tensors_recompute   (RSS: maml maml_recompute)\n");
  for (int steps : {1, 5, 10, 20}) {
    kernels::FusedMetaGradientConfig c;
    c.sizes = {50, 128, 128, 3};
    c.steps = steps;
    const double plain = static_cast<double>(kernels::fused_meta_gradient_workspace(c, 15, 45, Device::cpu));
    meta::GradientAlgorithm recompute;
    recompute.inner_steps = steps;
    recompute.recompute_inner = true;
    c.checkpoint_every = recompute.checkpoint_every();
    const double checkpointed = static_cast<double>(kernels::fused_meta_gradient_workspace(c, 15, 45, Device::cpu));
    const StepMemory a = measure_step("maml", steps, false, true), b = measure_step("maml", steps, true, true);
    std::printf("%11d  %9.2f  %19.2f  %8.2f  %17.2f   (RSS: %.2f %.2f)\n", steps, plain * 4 / (1 << 20),
                checkpointed * 4 / (1 << 20), a.tensor_mib, b.tensor_mib, a.rss_mib, b.rss_mib);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--memory-curve") == 0) return memory_curve();
  }
  // "<kind>_mb": the learner as a user gets it (the fused meta-gradient where supported);
  // "<kind>_tape_mb": the same learner with fused = false (the tape).
  for (const bool fused : {true, false}) {
    const std::string tag = fused ? "_" : "_tape_";
    for (const std::string kind : {"maml", "fomaml"}) {
      benchmark::RegisterBenchmark(("W1/" + kind + tag + "mb").c_str(), BM_W1_meta_step, kind, false, fused)
          ->Arg(8)
          ->Arg(32)
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark(("W1/" + kind + tag + "recompute_mb").c_str(), BM_W1_meta_step, kind, true, fused)
          ->Arg(8)
          ->Unit(benchmark::kMillisecond);
    }
    for (const std::string kind : {"anil", "meta-sgd", "reptile"}) {
      if (!fused && kind == "reptile") continue;
      benchmark::RegisterBenchmark(("W1/" + kind + tag + "mb").c_str(), BM_W1_meta_step, kind, false, fused)
          ->Arg(8)
          ->Unit(benchmark::kMillisecond);
    }
    for (const std::string kind : {"maml", "fomaml", "meta-sgd", "reptile"}) {
      if (!fused && kind == "reptile") continue;
      benchmark::RegisterBenchmark(("W2/" + kind + tag + "mb").c_str(), BM_W2_meta_step, kind, fused)
          ->Arg(25)
          ->Unit(benchmark::kMillisecond);
    }
  }
  benchmark::RegisterBenchmark("W1/adapt", BM_adapt, true)->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("W2/adapt", BM_adapt, false)->Unit(benchmark::kMicrosecond);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
