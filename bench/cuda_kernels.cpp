// CUDA kernels against the launch floor, and the per-task-loop baseline of W1 / W2 (BENCHMARKS.md).
// - launch floor: an empty kernel launched back to back on a stream, and the same as CUDA-graph nodes;
// - GEMM at W1 layer sizes: one call per task versus one strided-batched call for the meta-batch;
// - fused cross-entropy (forward kernel; forward + backward through autograd) and linear;
// - W1 (MLP 50-128-128-3, CE, 15 support / 45 query rows, 5 SGD steps, lr 0.01) and W2 (MLP 1-40-40-1,
//   MSE, 10 / 10 points, 1 step) meta_step (MAML second order, FOMAML) and adapt, written directly with
//   autograd ops and a plain loop over tasks: the baseline the performance work has to beat.
// Every timed iteration ends with a stream synchronise. Without a CUDA device the program prints
// SKIPPED and exits 0. Counters: us_per_launch (floor), mallocs (cudaMalloc calls while timing).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "autograd/update_ops.h"
#include "kernels/kernels.h"
#ifdef METATAPE_WITH_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/runtime.h"
#endif

using namespace metatape;

#ifdef METATAPE_WITH_CUDA
namespace {

namespace kc = kernels::cuda;
constexpr Device gpu = Device::cuda;
constexpr int floor_launches = 256;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail(std::string("bench: ") + what + ": " + cudaGetErrorString(e));
}

// A bare stream synchronise (kc::synchronize() would also fetch the device error record).
void sync() { check(cudaStreamSynchronize(kc::current_stream()), "stream synchronise"); }

std::uint64_t mallocs() { return kc::CachingAllocator::instance().stats().device_allocations; }

void per_launch(benchmark::State& state, int launches) {
  state.counters["us_per_launch"] =
      benchmark::Counter(static_cast<double>(launches) * 1e-6,
                         benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_launch_floor_stream(benchmark::State& state) {
  const cudaStream_t s = kc::current_stream();
  kc::launch_noop(s, floor_launches);
  sync();
  for (auto _ : state) {
    kc::launch_noop(s, floor_launches);
    sync();
  }
  per_launch(state, floor_launches);
}

void BM_launch_floor_graph(benchmark::State& state) {
  const cudaStream_t s = kc::current_stream();
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "begin capture");
  kc::launch_noop(s, floor_launches);
  check(cudaStreamEndCapture(s, &graph), "end capture");
  check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  check(cudaGraphLaunch(exec, s), "graph launch");
  sync();
  for (auto _ : state) {
    check(cudaGraphLaunch(exec, s), "graph launch");
    sync();
  }
  per_launch(state, floor_launches);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

// W1 layer shapes: (rows x in) times (out x in)^T for 50->128, 128->128, 128->3, per task weights.
const std::int64_t w1_layers[3][2] = {{50, 128}, {128, 128}, {128, 3}};

kernels::View task_slice(const Tensor& t, std::int64_t task) {
  kernels::View v = t.view();
  const std::int64_t per_task = t.numel() / t.dim(0);
  v.data = static_cast<float*>(v.data) + task * per_task;
  v.shape = Shape{t.dim(1), t.dim(2)};
  return v;
}

// range(0): tasks, range(1): rows per task, range(2): 1 = one strided-batched call per layer.
void BM_gemm_w1(benchmark::State& state) {
  const std::int64_t tasks = state.range(0), rows = state.range(1);
  const bool batched = state.range(2) != 0;
  Generator gen(1);
  std::vector<Tensor> x, w, y;
  for (const auto& l : w1_layers) {
    x.push_back(Tensor::normal(Shape{tasks, rows, l[0]}, 0, 1, gen, DType::f32, gpu));
    w.push_back(Tensor::normal(Shape{tasks, l[1], l[0]}, 0, 1, gen, DType::f32, gpu));
    y.push_back(Tensor::empty(Shape{tasks, rows, l[1]}, DType::f32, gpu));
  }
  auto run = [&] {
    for (int l = 0; l < 3; ++l) {
      if (batched) {
        kernels::gemm(x[l].view(), false, w[l].view(), true, y[l].view(), 1.0, 0.0);
        continue;
      }
      for (std::int64_t t = 0; t < tasks; ++t) {
        kernels::gemm(task_slice(x[l], t), false, task_slice(w[l], t), true, task_slice(y[l], t), 1.0, 0.0);
      }
    }
  };
  run();
  sync();
  for (auto _ : state) {
    run();
    sync();
  }
  per_launch(state, static_cast<int>(batched ? 3 : 3 * tasks));
}

void BM_cross_entropy_kernel(benchmark::State& state) {
  const std::int64_t rows = state.range(0);
  Generator gen(2);
  const Tensor logits = Tensor::normal(Shape{rows, 3}, 0, 1, gen, DType::f32, gpu);
  std::vector<std::int64_t> labels;
  for (std::int64_t r = 0; r < rows; ++r) labels.push_back(r % 3);
  const Tensor y = Tensor::indices(labels, gpu);
  const Tensor loss = Tensor::empty(Shape{}, DType::f32, gpu);
  kernels::cross_entropy(logits.view(), y.view(), loss.view());
  sync();
  for (auto _ : state) {
    kernels::cross_entropy(logits.view(), y.view(), loss.view());
    sync();
  }
  per_launch(state, 1);
}

// Forward and gradient through autograd (the fused op and its backward's differentiable ops).
void BM_cross_entropy_grad(benchmark::State& state) {
  const std::int64_t rows = state.range(0);
  Generator gen(2);
  const Tensor logits = Tensor::normal(Shape{rows, 3}, 0, 1, gen, DType::f32, gpu).requires_grad_();
  std::vector<std::int64_t> labels;
  for (std::int64_t r = 0; r < rows; ++r) labels.push_back(r % 3);
  const Tensor y = Tensor::indices(labels, gpu);
  for (auto _ : state) {
    TapeScope scope;
    benchmark::DoNotOptimize(grad({cross_entropy(logits, y)}, {logits}));
    sync();
  }
}

// range(0): tasks (0 = an unbatched (45, 128) input), range(1): 1 = add relu.
void BM_linear(benchmark::State& state) {
  const std::int64_t tasks = state.range(0);
  const bool act = state.range(1) != 0;
  Generator gen(3);
  const Shape xs = tasks ? Shape{tasks, 45, 128} : Shape{45, 128};
  const Shape ws = tasks ? Shape{tasks, 128, 128} : Shape{128, 128};
  const Shape bs = tasks ? Shape{tasks, 1, 128} : Shape{128};
  const Tensor x = Tensor::normal(xs, 0, 1, gen, DType::f32, gpu);
  const Tensor w = Tensor::normal(ws, 0, 1, gen, DType::f32, gpu);
  const Tensor b = Tensor::normal(bs, 0, 1, gen, DType::f32, gpu);
  for (auto _ : state) {
    const Tensor y = act ? relu(linear(x, w, b)) : linear(x, w, b);
    benchmark::DoNotOptimize(y);
    sync();
  }
}

// ---- W1 / W2 with a plain loop over tasks -----------------------------------------------------------

struct Workload {
  std::vector<std::int64_t> sizes;  // layer widths
  bool classification = true;
  std::int64_t support = 15, query = 45;
  int inner_steps = 5;
  double inner_lr = 0.01;
};

Workload w1() { return Workload{{50, 128, 128, 3}, true, 15, 45, 5, 0.01}; }
Workload w2() { return Workload{{1, 40, 40, 1}, false, 10, 10, 1, 0.01}; }

struct Task {
  Tensor xs, ys, xq, yq;  // ys / yq: i64 labels (W1) or (rows, 1) targets (W2)
};

std::vector<Tensor> init_params(const Workload& w, Generator& gen) {
  std::vector<Tensor> p;
  for (std::size_t l = 0; l + 1 < w.sizes.size(); ++l) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(w.sizes[l]));
    p.push_back(
        Tensor::uniform(Shape{w.sizes[l + 1], w.sizes[l]}, -bound, bound, gen, DType::f32, gpu).requires_grad_());
    p.push_back(Tensor::uniform(Shape{w.sizes[l + 1]}, -bound, bound, gen, DType::f32, gpu).requires_grad_());
  }
  return p;
}

Task make_task(const Workload& w, Generator& gen, Device device) {
  Task t;
  if (w.classification) {
    auto labels = [&](std::int64_t rows) {
      std::vector<std::int64_t> v;
      for (std::int64_t r = 0; r < rows; ++r) v.push_back(r % 3);
      return Tensor::indices(v, device);
    };
    t.xs = Tensor::normal(Shape{w.support, w.sizes[0]}, 0, 1, gen, DType::f32, device);
    t.xq = Tensor::normal(Shape{w.query, w.sizes[0]}, 0, 1, gen, DType::f32, device);
    t.ys = labels(w.support);
    t.yq = labels(w.query);
  } else {
    const double amplitude = gen.uniform(0.1, 5.0), phase = gen.uniform(0.0, 3.14159265358979);
    auto points = [&](std::int64_t n, Tensor& x, Tensor& y) {
      std::vector<double> xv, yv;
      for (std::int64_t i = 0; i < n; ++i) {
        xv.push_back(gen.uniform(-5.0, 5.0));
        yv.push_back(amplitude * std::sin(xv.back() - phase));
      }
      x = Tensor::from_vector(xv, Shape{n, 1}, DType::f32, device);
      y = Tensor::from_vector(yv, Shape{n, 1}, DType::f32, device);
    };
    points(w.support, t.xs, t.ys);
    points(w.query, t.xq, t.yq);
  }
  return t;
}

Tensor forward(const std::vector<Tensor>& p, const Tensor& x) {
  Tensor h = x;
  for (std::size_t l = 0; l < p.size(); l += 2) {
    h = linear(h, p[l], p[l + 1]);
    if (l + 2 < p.size()) h = relu(h);
  }
  return h;
}

Tensor loss_of(const Workload& w, const Tensor& out, const Tensor& target) {
  return w.classification ? cross_entropy(out, target) : mse(out, target);
}

struct Adam {
  std::vector<Tensor> m, v;
  std::int64_t step = 0;
  explicit Adam(const std::vector<Tensor>& params) {
    for (const Tensor& p : params) {
      m.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
      v.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
    }
  }
  void update(const std::vector<Tensor>& params, const std::vector<Tensor>& grads) {
    ++step;
    for (std::size_t i = 0; i < params.size(); ++i) {
      adam_update(params[i], grads[i], m[i], v[i], AdamConfig{}, step);
    }
  }
};

// One MAML (second_order) or FOMAML meta-step over `tasks`, one task after another.
void meta_step(const Workload& w, std::vector<Tensor>& params, Adam& adam, const std::vector<Task>& tasks,
               bool second_order) {
  TapeScope scope;
  Tensor total;
  GradOptions inner;
  inner.create_graph = second_order;
  for (const Task& t : tasks) {
    std::vector<Tensor> fast = params;
    for (int s = 0; s < w.inner_steps; ++s) {
      const std::vector<Tensor> g = grad({loss_of(w, forward(fast, t.xs), t.ys)}, fast, inner);
      for (std::size_t i = 0; i < fast.size(); ++i) fast[i] = inner_update(fast[i], g[i], w.inner_lr);
    }
    const Tensor q = loss_of(w, forward(fast, t.xq), t.yq);
    total = total.defined() ? add(total, q) : q;
  }
  total = affine(total, 1.0 / static_cast<double>(tasks.size()), 0.0);
  adam.update(params, grad({total}, params));
  kc::synchronize();  // also reports device-side errors of the step
}

// range(0): 1 = W1, 2 = W2; range(1): meta-batch; range(2): 1 = second order (MAML), 0 = FOMAML.
void BM_meta_step(benchmark::State& state) {
  const Workload w = state.range(0) == 1 ? w1() : w2();
  const std::int64_t batch = state.range(1);
  const bool second_order = state.range(2) != 0;
  Generator gen(42);
  std::vector<Tensor> params = init_params(w, gen);
  std::vector<Task> tasks;
  for (std::int64_t t = 0; t < batch; ++t) tasks.push_back(make_task(w, gen, gpu));
  Adam adam(params);
  for (int i = 0; i < 2; ++i) meta_step(w, params, adam, tasks, second_order);  // warm-up
  const std::uint64_t before = mallocs();
  for (auto _ : state) meta_step(w, params, adam, tasks, second_order);
  state.counters["mallocs"] = static_cast<double>(mallocs() - before);
}

// Support set from host memory in, inner loop, query predictions back in host memory.
void BM_adapt(benchmark::State& state) {
  const Workload w = state.range(0) == 1 ? w1() : w2();
  Generator gen(43);
  const std::vector<Tensor> params = init_params(w, gen);
  const Task host = make_task(w, gen, Device::cpu);
  auto adapt = [&] {
    TapeScope scope;
    const Tensor xs = host.xs.to(gpu), ys = host.ys.to(gpu), xq = host.xq.to(gpu);
    std::vector<Tensor> fast = params;
    for (int s = 0; s < w.inner_steps; ++s) {
      const std::vector<Tensor> g = grad({loss_of(w, forward(fast, xs), ys)}, fast);
      NoGradGuard no_grad;
      for (std::size_t i = 0; i < fast.size(); ++i) {
        fast[i] = inner_update(fast[i], g[i], w.inner_lr).requires_grad_();
      }
    }
    NoGradGuard no_grad;
    return forward(fast, xq).to_vector<float>();
  };
  for (int i = 0; i < 3; ++i) adapt();
  const std::uint64_t before = mallocs();
  for (auto _ : state) benchmark::DoNotOptimize(adapt());
  state.counters["mallocs"] = static_cast<double>(mallocs() - before);
}

void register_all() {
  using benchmark::RegisterBenchmark;
  RegisterBenchmark("launch_floor/stream", BM_launch_floor_stream)->UseRealTime();
  RegisterBenchmark("launch_floor/graph", BM_launch_floor_graph)->UseRealTime();
  for (std::int64_t tasks : {8, 32}) {
    for (std::int64_t rows : {15, 45}) {
      RegisterBenchmark("gemm_w1/per_task", BM_gemm_w1)->Args({tasks, rows, 0})->UseRealTime();
      RegisterBenchmark("gemm_w1/strided_batched", BM_gemm_w1)->Args({tasks, rows, 1})->UseRealTime();
    }
  }
  RegisterBenchmark("cross_entropy/kernel", BM_cross_entropy_kernel)->Arg(45)->Arg(1440)->UseRealTime();
  RegisterBenchmark("cross_entropy/forward_backward", BM_cross_entropy_grad)->Arg(45)->Arg(1440)->UseRealTime();
  RegisterBenchmark("linear", BM_linear)->Args({0, 0})->Args({0, 1})->Args({32, 0})->Args({32, 1})->UseRealTime();
  RegisterBenchmark("W1/maml_meta_step", BM_meta_step)
      ->Args({1, 8, 1})
      ->Args({1, 32, 1})
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  RegisterBenchmark("W1/fomaml_meta_step", BM_meta_step)
      ->Args({1, 32, 0})
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  RegisterBenchmark("W2/maml_meta_step", BM_meta_step)->Args({2, 25, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
  RegisterBenchmark("W1/adapt", BM_adapt)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();
  RegisterBenchmark("W2/adapt", BM_adapt)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime();
}

}  // namespace
#endif

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (!kernels::cuda_available()) {
#ifdef METATAPE_WITH_CUDA
    std::printf("bench_cuda_kernels: SKIPPED (no CUDA device visible to this process)\n");
#else
    std::printf("bench_cuda_kernels: SKIPPED (built without the CUDA backend)\n");
#endif
    return 0;
  }
#ifdef METATAPE_WITH_CUDA
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) benchmark::AddCustomContext("gpu", prop.name);
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
#endif
  return 0;
}
