// Meta-step and adapt benchmarks of the fast paths (issue 7) on the workloads of
// ../shared/BENCHMARKS.md, per device, beside the per-task loop:
//   W1 MAML meta-batch 8 and 32, W1 FOMAML 32, W2 MAML 25: meta_step (inner loops, outer
//   gradient, Adam update; data resident on the device), variants
//     loop     the per-task learner on the tape (meta::make_learner, meta_train_step, fused off)
//     batched  the task-batched tape path (meta/batched.h), fused off
//     fused    the fused meta-gradient (meta/fused.h: kernels::fused_meta_gradient, one call per
//              meta-batch) through meta::batched_meta_gradient, then the Adam update
//     threads2 CPU only: fused, the tasks split over 2 threads
//     graph    CUDA only: the fused meta-gradient replayed as one CUDA graph
//   W1 and W2 adapt, host to host (support rows from host memory in, query predictions back in
//   host memory): loop (learner adapt + predict), fused (one kernel call), graph (CUDA: copies from
//   and to pinned buffers and the kernel replayed as one graph).
// Every benchmark reports the median over its timed iterations of the wall time (median_us; the
// mean is Google Benchmark's time) and of the process CPU time (median_cpu_us: on a shared, loaded
// CPU machine the robust measure of single-threaded work) and, on CUDA, peak_MiB: the caching allocator's peak bytes in use over
// one meta-step (data and parameters included) and step_MiB: that peak minus what was in use
// before the step; graph variants report graph_nodes: the kernels, copies and memsets of the
// captured graph, i.e. the launches one replay stands for.
// CUDA benchmarks are registered only when a device is present (a line on stderr says when not).
// `--cold-start` (first argument) adapts one W1 task on the first device and prints its first
// prediction: run_compare.sh times that process from exec to exit.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "kernels/fused_adapt.h"
#include "kernels/kernels.h"
#include "meta/batched.h"
#include "meta/learners.h"
#include "nn/optimizer.h"
#include "tests/speed/workloads.h"

#ifdef METATAPE_WITH_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/graph.h"
#include "kernels/cuda/runtime.h"
#endif

using namespace metatape;
using speed_test::Workload;

namespace {

void sync(Device device) {
#ifdef METATAPE_WITH_CUDA
  if (device == Device::cuda) kernels::cuda::synchronize();
#else
  (void)device;
#endif
}

// CPU time of the whole process (every thread), in seconds.
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Times each iteration of `once` (which must leave the device idle, i.e. synchronise) and sets the
// median counter; runs `warmup` untimed calls first.
void timed_loop(benchmark::State& state, int warmup, const std::function<void()>& once) {
  if (!once) {
    state.SkipWithError("this variant needs the CUDA backend");
    return;
  }
  for (int i = 0; i < warmup; ++i) once();
  std::vector<double> us, cpu_us;
  for (auto _ : state) {
    const double c0 = process_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    once();
    const auto t1 = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(t1 - t0).count();
    cpu_us.push_back((process_cpu_seconds() - c0) * 1e6);
    state.SetIterationTime(s);
    us.push_back(s * 1e6);
  }
  auto median = [](std::vector<double>& v) {
    std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
    return v[v.size() / 2];
  };
  if (!us.empty()) {
    state.counters["median_us"] = median(us);
    state.counters["median_cpu_us"] = median(cpu_us);
  }
}

Workload workload(const std::string& name) {
  return name == "W1" ? speed_test::w1(DType::f32) : speed_test::w2(DType::f32);
}

nn::ParameterList on_device(const nn::ParameterList& p, Device device) {
  nn::ParameterList out;
  for (std::size_t i = 0; i < p.size(); ++i) out.add(p.name(i), p[i].to(device).requires_grad_());
  return out;
}

tasks::TaskBatch batch_on(const tasks::TaskBatch& batch, Device device) {
  tasks::TaskBatch out = batch;
  for (auto& t : out) {
    t.support_x = t.support_x.to(device);
    t.support_y = t.support_y.to(device);
    t.query_x = t.query_x.to(device);
    t.query_y = t.query_y.to(device);
  }
  return out;
}

void record_peak_memory(benchmark::State& state, Device device, const std::function<void()>& once) {
#ifdef METATAPE_WITH_CUDA
  if (device != Device::cuda) return;
  auto& allocator = kernels::cuda::CachingAllocator::instance();
  kernels::cuda::synchronize();
  const std::size_t before = allocator.stats().bytes_in_use;
  allocator.reset_peak();
  once();
  const std::size_t peak = allocator.stats().peak_bytes_in_use;
  state.counters["peak_MiB"] = static_cast<double>(peak) / (1 << 20);
  state.counters["step_MiB"] = static_cast<double>(peak - std::min(peak, before)) / (1 << 20);
#else
  (void)state;
  (void)device;
  (void)once;
#endif
}

// One meta_step benchmark: workload, algorithm ("maml" / "fomaml"), meta-batch, device, variant.
void meta_step(benchmark::State& state, const std::string& wname, const std::string& kind, int mb, Device device,
               const std::string& variant) {
  const Workload w = workload(wname);
  Generator gen(2026);
  const nn::ParameterList init = w.mlp->init(gen);
  const tasks::TaskBatch host_batch = w.sample(gen, mb);
  nn::OptimizerOptions adam;
  adam.lr = 1e-3;
  std::function<void()> once;
  std::unique_ptr<meta::Learner> learner;
  nn::ParameterList meta;
  std::unique_ptr<nn::Optimizer> outer;
  meta::StackedTasks stacked;
  tasks::TaskBatch batch;
  meta::BatchedOptions o;
  o.algorithm = meta::parse_batched_algorithm(kind);
  o.inner_steps = w.steps;
  o.inner_lr = w.lr;
  o.fused = variant == "fused" || variant == "graph" || variant == "threads2";
  o.threads = variant == "threads2" ? 2 : 1;
#ifdef METATAPE_WITH_CUDA
  kernels::cuda::GraphCache cache;
#endif
  std::vector<Tensor> grads;
  if (variant == "loop") {
    meta::LearnerOptions options;
    options.maml.inner_steps = w.steps;
    options.maml.inner_lr = w.lr;
    options.maml.fused = false;
    learner = meta::make_learner(kind, w.mlp, on_device(init, device), nn::make_adam(adam), options);
    batch = batch_on(host_batch, device);
    once = [&] {
      learner->meta_train_step(batch, {false});
      sync(device);
    };
  } else {
    meta = on_device(init, device);
    outer = nn::make_adam(adam);
    stacked = meta::stack_tasks(host_batch, device);
    if (variant == "graph") {
#ifdef METATAPE_WITH_CUDA
      for (const Tensor& p : meta.tensors()) grads.push_back(Tensor::zeros(p.shape(), p.dtype(), device));
      std::vector<kernels::View> bindings{stacked.support_x.view(), stacked.support_y.view(), stacked.query_x.view(),
                                          stacked.query_y.view()};
      for (const Tensor& p : meta.tensors()) bindings.push_back(p.view());
      for (const Tensor& g : grads) bindings.push_back(g.view());
      const std::string config = kind + " " + wname + " " + std::to_string(mb);
      once = [&, bindings, config] {
        cache.run(config, bindings, [&] {
          const auto step = meta::batched_meta_gradient(*w.mlp, meta, stacked, o);
          for (std::size_t i = 0; i < grads.size(); ++i) grads[i].assign(step.grads[i]);
        });
        outer->step(meta, grads);
        sync(device);
      };
#endif
    } else {
      once = [&] {
        const auto step = meta::batched_meta_gradient(*w.mlp, meta, stacked, o);
        outer->step(meta, step.grads);
        sync(device);
      };
    }
  }
  timed_loop(state, 10, once);
  if (once) record_peak_memory(state, device, once);
#ifdef METATAPE_WITH_CUDA
  if (variant == "graph") state.counters["graph_nodes"] = static_cast<double>(cache.stats().last_nodes);
#endif
  state.SetLabel(std::string(kernels::device_name(device)) + " " + variant);
}

// Adapt one task, host to host.
void adapt(benchmark::State& state, const std::string& wname, Device device, const std::string& variant) {
  const Workload w = workload(wname);
  Generator gen(7);
  const nn::ParameterList init = w.mlp->init(gen);
  const tasks::Task task = w.sample(gen, 1).front();
  const std::int64_t out_features = w.mlp->out_features();
  const std::int64_t qrows = task.query_x.dim(0);
  std::vector<float> result(static_cast<std::size_t>(qrows * out_features));
  std::function<void()> once;
  std::unique_ptr<meta::Learner> learner;
  const kernels::FusedAdaptConfig c = speed_test::fused_config(w);
  const std::int64_t P = kernels::fused_param_count(c.sizes);
  const Tensor flat = meta::flatten_parameters(init.tensors()).to(device);
  auto reshape3 = [](const Tensor& t) {
    Shape s = Shape::of_rank(t.rank() + 1);
    s[0] = 1;
    for (int i = 0; i < t.rank(); ++i) s[i + 1] = t.dim(i);
    return reshape(t, s);
  };
#ifdef METATAPE_WITH_CUDA
  kernels::cuda::GraphCache cache;
  struct Pinned {
    void* p = nullptr;
    ~Pinned() {
      if (p) cudaFreeHost(p);
    }
  } pin_sx, pin_sy, pin_qx, pin_out;
  Tensor dsx, dsy, dqx, dadapted, dout;
#endif
  if (variant == "loop") {
    nn::OptimizerOptions o;
    meta::LearnerOptions options;
    options.maml.inner_steps = w.steps;
    options.maml.inner_lr = w.lr;
    options.maml.fused = false;
    learner = meta::make_learner("maml", w.mlp, on_device(init, device), nn::make_adam(o), options);
    once = [&] {
      tasks::Task t = task;
      t.support_x = task.support_x.to(device);
      t.support_y = task.support_y.to(device);
      const nn::ParameterList adapted = learner->adapt(t, w.steps);
      NoGradGuard no_grad;
      const auto v = learner->predict(adapted, task.query_x.to(device)).to_vector<float>();
      std::copy(v.begin(), v.end(), result.begin());
    };
  } else if (variant == "fused") {
    once = [&] {
      NoGradGuard no_grad;
      const Tensor sx = reshape3(task.support_x).to(device);
      const Tensor sy = reshape3(task.support_y).to(device);
      const Tensor qx = reshape3(task.query_x).to(device);
      Tensor adapted = Tensor::empty(Shape{1, P}, DType::f32, device);
      Tensor out = Tensor::empty(Shape{1, qrows, out_features}, DType::f32, device);
      kernels::fused_adapt(c, flat.view(), {}, sx.view(), sy.view(), adapted.view(), qx.view(), out.view());
      const auto v = out.to_vector<float>();
      std::copy(v.begin(), v.end(), result.begin());
    };
  } else {
#ifdef METATAPE_WITH_CUDA
    // graph: pinned staging buffers, H2D + kernel + D2H captured as one graph.
    const std::size_t sx_bytes = static_cast<std::size_t>(task.support_x.numel()) * 4;
    const std::size_t sy_bytes =
        static_cast<std::size_t>(task.support_y.numel()) * kernels::dtype_size(task.support_y.dtype());
    const std::size_t qx_bytes = static_cast<std::size_t>(task.query_x.numel()) * 4;
    const std::size_t out_bytes = result.size() * 4;
    for (auto [pin, bytes] : {std::pair{&pin_sx, sx_bytes}, std::pair{&pin_sy, sy_bytes}, std::pair{&pin_qx, qx_bytes},
                              std::pair{&pin_out, out_bytes}}) {
      METATAPE_CUDA_CHECK(cudaMallocHost(&pin->p, bytes), "bench", "cudaMallocHost");
    }
    dsx = Tensor::empty(reshape3(task.support_x).shape(), DType::f32, device);
    dsy = Tensor::empty(reshape3(task.support_y).shape(), task.support_y.dtype(), device);
    dqx = Tensor::empty(reshape3(task.query_x).shape(), DType::f32, device);
    dadapted = Tensor::empty(Shape{1, P}, DType::f32, device);
    dout = Tensor::empty(Shape{1, qrows, out_features}, DType::f32, device);
    const std::vector<kernels::View> bindings{flat.view(), dsx.view(),      dsy.view(),
                                              dqx.view(),  dadapted.view(), dout.view()};
    char config[160];
    std::snprintf(config, sizeof config, "adapt %s %p %p %p %p", wname.c_str(), pin_sx.p, pin_sy.p, pin_qx.p,
                  pin_out.p);
    once = [&, bindings, sx_bytes, sy_bytes, qx_bytes, out_bytes, key = std::string(config)] {
      std::memcpy(pin_sx.p, task.support_x.raw_data(), sx_bytes);
      std::memcpy(pin_sy.p, task.support_y.raw_data(), sy_bytes);
      std::memcpy(pin_qx.p, task.query_x.raw_data(), qx_bytes);
      cache.run(key, bindings, [&] {
        const cudaStream_t s = kernels::cuda::current_stream();
        METATAPE_CUDA_CHECK(cudaMemcpyAsync(dsx.raw_data(), pin_sx.p, sx_bytes, cudaMemcpyHostToDevice, s), "bench",
                            "H2D");
        METATAPE_CUDA_CHECK(cudaMemcpyAsync(dsy.raw_data(), pin_sy.p, sy_bytes, cudaMemcpyHostToDevice, s), "bench",
                            "H2D");
        METATAPE_CUDA_CHECK(cudaMemcpyAsync(dqx.raw_data(), pin_qx.p, qx_bytes, cudaMemcpyHostToDevice, s), "bench",
                            "H2D");
        kernels::fused_adapt(c, flat.view(), {}, dsx.view(), dsy.view(), dadapted.view(), dqx.view(), dout.view());
        METATAPE_CUDA_CHECK(cudaMemcpyAsync(pin_out.p, dout.raw_data(), out_bytes, cudaMemcpyDeviceToHost, s), "bench",
                            "D2H");
      });
      METATAPE_CUDA_CHECK(cudaStreamSynchronize(kernels::cuda::current_stream()), "bench", "sync");
      std::memcpy(result.data(), pin_out.p, out_bytes);
    };
#endif
  }
  timed_loop(state, 20, once);
  benchmark::DoNotOptimize(result.data());
#ifdef METATAPE_WITH_CUDA
  if (variant == "graph") state.counters["graph_nodes"] = static_cast<double>(cache.stats().last_nodes);
#endif
  state.SetLabel(std::string(kernels::device_name(device)) + " " + variant);
}

void register_all(Device device) {
  const std::string dev = kernels::device_name(device);
  const bool cuda = device == Device::cuda;
  struct Step {
    const char* w;
    const char* kind;
    int mb;
  };
  for (const Step s :
       {Step{"W1", "maml", 8}, Step{"W1", "maml", 32}, Step{"W1", "fomaml", 32}, Step{"W2", "maml", 25}}) {
    std::vector<std::string> variants{"loop", "batched", "fused"};
    variants.push_back(cuda ? "graph" : "threads2");
    for (const std::string& v : variants) {
      const std::string name = std::string(s.w) + "/" + s.kind + "_mb" + std::to_string(s.mb) + "/" + dev + "/" + v;
      benchmark::RegisterBenchmark(name.c_str(),
                                   [=](benchmark::State& st) { meta_step(st, s.w, s.kind, s.mb, device, v); })
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
  for (const char* wname : {"W1", "W2"}) {
    std::vector<std::string> variants{"loop", "fused"};
    if (cuda) variants.push_back("graph");
    for (const std::string& v : variants) {
      const std::string name = std::string(wname) + "/adapt/" + dev + "/" + v;
      benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { adapt(st, wname, device, v); })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

int cold_start() {
  const Device device = kernels::cuda_available() ? Device::cuda : Device::cpu;
  const Workload w = workload("W1");
  Generator gen(1);
  const nn::ParameterList init = w.mlp->init(gen);
  const tasks::Task task = w.sample(gen, 1).front();
  meta::StackedTasks s = meta::stack_tasks({task}, device);
  const auto adapted = meta::batched_adapt(*w.mlp, on_device(init, device).tensors(), s, w.steps, w.lr, {}, true);
  NoGradGuard no_grad;
  const Tensor out = meta::batched_forward(*w.mlp, adapted, s.query_x, 0, w.mlp->layers());
  std::printf("cold start: first prediction %.6f on %s\n", out.to_vector<float>()[0], kernels::device_name(device));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--cold-start") == 0) return cold_start();
  const bool cpu = std::getenv("METATAPE_BENCH_SKIP_CPU") == nullptr;
  if (cpu) register_all(Device::cpu);
  if (kernels::cuda_available()) {
    register_all(Device::cuda);
  } else {
    std::cerr << "meta_step_gpu: SKIPPED the CUDA benchmarks: no CUDA device visible"
#ifndef METATAPE_WITH_CUDA
                 " (built without the CUDA backend)"
#endif
              << "\n";
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
