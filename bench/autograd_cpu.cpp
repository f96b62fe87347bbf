// CPU benchmarks of the autodiff core: tape overhead per recorded op, linear/matmul throughput at the
// W1 sizes of BENCHMARKS.md, one W1 adaptation composed from the raw ops (no nn/ or meta/), and
// conv2d at a Conv-4 middle layer with its kernels against its two earlier forms (kept here only as the
// measured "before").
#include <benchmark/benchmark.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"

using namespace metatape;

namespace {

// Cost of one tiny op: the kernel plus, when recording, the node (allocation, bookkeeping).
void BM_TinyOp(benchmark::State& state) {
  const bool recording = state.range(0) != 0;
  Tensor x = Tensor::ones(Shape{4});
  const Tensor c = Tensor::ones(Shape{4});
  if (recording) x.requires_grad_();
  TapeScope scope;
  std::size_t ops = 0;
  for (auto _ : state) {
    Tensor y = add(x, c);
    benchmark::DoNotOptimize(y.raw_data());
    if (++ops % 4096 == 0) {
      state.PauseTiming();
      release_since(TapeMark{});  // keep the tape from growing across iterations
      state.ResumeTiming();
    }
  }
  state.SetLabel(recording ? "recorded" : "grad mode off");
}
BENCHMARK(BM_TinyOp)->Arg(0)->Arg(1);

// Forward + backward of a tiny recorded op, per op.
void BM_TinyOpBackward(benchmark::State& state) {
  Tensor x = Tensor::ones(Shape{4}).requires_grad_();
  const Tensor c = Tensor::ones(Shape{4});
  for (auto _ : state) {
    TapeScope scope;
    Tensor y = sum(mul(add(x, c), c));
    benchmark::DoNotOptimize(grad({y}, {x})[0].raw_data());
  }
  state.SetItemsProcessed(state.iterations() * 3);  // 3 recorded ops
}
BENCHMARK(BM_TinyOpBackward);

// y = x W^T + b at W1 sizes: rows x in -> out.
void BM_Linear(benchmark::State& state) {
  const std::int64_t rows = state.range(0), in = state.range(1), out = state.range(2);
  Generator gen(1);
  const Tensor x = Tensor::uniform(Shape{rows, in}, -1, 1, gen);
  const Tensor w = Tensor::uniform(Shape{out, in}, -1, 1, gen);
  const Tensor b = Tensor::uniform(Shape{out}, -1, 1, gen);
  for (auto _ : state) {
    Tensor y = linear(x, w, b);
    benchmark::DoNotOptimize(y.raw_data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(static_cast<double>(2 * rows * in * out) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Linear)->Args({15, 50, 128})->Args({15, 128, 128})->Args({45, 128, 128})->Args({480, 128, 128});

void BM_Matmul(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  Generator gen(2);
  const Tensor a = Tensor::uniform(Shape{n, n}, -1, 1, gen);
  const Tensor b = Tensor::uniform(Shape{n, n}, -1, 1, gen);
  for (auto _ : state) {
    Tensor c = matmul(a, b);
    benchmark::DoNotOptimize(c.raw_data());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * static_cast<double>(n * n * n) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Matmul)->Arg(64)->Arg(128)->Arg(256);

struct W1 {
  std::vector<Tensor> params;
  std::vector<float> support_x, query_x;
  std::vector<std::int64_t> support_y;
};

W1 make_w1() {
  Generator gen(3);
  W1 w;
  const std::int64_t sizes[] = {50, 128, 128, 3};
  for (int l = 0; l < 3; ++l) {
    const double s = 1.0 / std::sqrt(static_cast<double>(sizes[l]));
    w.params.push_back(Tensor::uniform(Shape{sizes[l + 1], sizes[l]}, -s, s, gen).requires_grad_());
    w.params.push_back(Tensor::uniform(Shape{sizes[l + 1]}, -s, s, gen).requires_grad_());
  }
  for (int i = 0; i < 15 * 50; ++i) w.support_x.push_back(static_cast<float>(gen.normal()));
  for (int i = 0; i < 45 * 50; ++i) w.query_x.push_back(static_cast<float>(gen.normal()));
  for (int i = 0; i < 15; ++i) w.support_y.push_back(i % 3);
  return w;
}

Tensor mlp(const std::vector<Tensor>& p, const Tensor& x) {
  Tensor h = relu(linear(x, p[0], p[1]));
  h = relu(linear(h, p[2], p[3]));
  return linear(h, p[4], p[5]);
}

// W1 adapt as a user calls it: support set from host memory, 5 SGD steps (lr 0.01), predictions for
// the 45 query rows back in host memory.
void BM_W1AdaptRawOps(benchmark::State& state) {
  W1 w = make_w1();
  for (auto _ : state) {
    TapeScope scope;
    const Tensor xs = Tensor::from_vector(w.support_x, Shape{15, 50});
    const Tensor ys = Tensor::indices(w.support_y);
    std::vector<Tensor> phi = w.params;
    for (int step = 0; step < 5; ++step) {
      const auto g = grad({cross_entropy(mlp(phi, xs), ys)}, phi);
      NoGradGuard off;
      for (std::size_t i = 0; i < phi.size(); ++i) {
        phi[i] = sub(phi[i], affine(g[i], 0.01, 0.0)).requires_grad_();
      }
    }
    NoGradGuard off;
    const std::vector<float> predictions = mlp(phi, Tensor::from_vector(w.query_x, Shape{45, 50})).to_vector<float>();
    benchmark::DoNotOptimize(predictions.data());
  }
}
BENCHMARK(BM_W1AdaptRawOps)->Unit(benchmark::kMillisecond);

// W1 second-order MAML meta-gradient over a meta-batch, composed from raw ops (no optimizer update).
void BM_W1MamlMetaGradientRawOps(benchmark::State& state) {
  const int tasks = static_cast<int>(state.range(0));
  W1 w = make_w1();
  const Tensor xs = Tensor::from_vector(w.support_x, Shape{15, 50});
  const Tensor ys = Tensor::indices(w.support_y);
  const Tensor xq = Tensor::from_vector(w.query_x, Shape{45, 50});
  std::vector<std::int64_t> qy;
  for (int i = 0; i < 45; ++i) qy.push_back(i % 3);
  const Tensor yq = Tensor::indices(qy);
  GradOptions create;
  create.create_graph = true;
  for (auto _ : state) {
    for (int t = 0; t < tasks; ++t) {
      TapeScope scope;
      std::vector<Tensor> phi = w.params;
      for (int step = 0; step < 5; ++step) {
        const auto g = grad({cross_entropy(mlp(phi, xs), ys)}, phi, create);
        for (std::size_t i = 0; i < phi.size(); ++i) phi[i] = sub(phi[i], affine(g[i], 0.01, 0.0));
      }
      const auto meta = grad({cross_entropy(mlp(phi, xq), yq)}, w.params);
      benchmark::DoNotOptimize(meta[0].raw_data());
    }
  }
}
BENCHMARK(BM_W1MamlMetaGradientRawOps)->Arg(8)->Unit(benchmark::kMillisecond);

}  // namespace

// The earlier conv2d layout, kept as the benchmark's "before": pad_axis, then im2col as one
// index_select of one-element rows with a host-built i64 index (stride 1, square kernel).
Tensor conv2d_by_index(const Tensor& x, const Tensor& w, const Tensor& b, std::int64_t padding) {
  const std::int64_t n = x.dim(0), c = x.dim(1), k = w.dim(2), o = w.dim(0);
  const std::int64_t h = x.dim(2) + 2 * padding, wd = x.dim(3) + 2 * padding;
  Tensor padded = pad_axis(x, Shape{n, c, h, x.dim(3)}, 2, padding);
  padded = pad_axis(padded, Shape{n, c, h, wd}, 3, padding);
  const std::int64_t ho = h - k + 1, wo = wd - k + 1;
  std::vector<std::int64_t> index;
  index.reserve(static_cast<std::size_t>(n * ho * wo * c * k * k));
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t y = 0; y < ho; ++y)
      for (std::int64_t z = 0; z < wo; ++z)
        for (std::int64_t ch = 0; ch < c; ++ch)
          for (std::int64_t p = 0; p < k; ++p)
            for (std::int64_t q = 0; q < k; ++q) index.push_back(((i * c + ch) * h + y + p) * wd + z + q);
  const Tensor cols = reshape(index_select(reshape(padded, Shape{padded.numel(), 1}), Tensor::indices(index)),
                              Shape{n * ho * wo, c * k * k});
  const Tensor y = linear(cols, reshape(w, Shape{o, c * k * k}), b);
  return reshape(transpose(reshape(y, Shape{n, ho * wo, o})), Shape{n, o, ho, wo});
}

// The second form of conv2d, also kept as a "before": im2col, then linear and a transpose as tape ops.
Tensor conv2d_by_im2col(const Tensor& x, const Tensor& w, const Tensor& b, std::int64_t padding) {
  const std::int64_t n = x.dim(0), o = w.dim(0), k = w.dim(1) * w.dim(2) * w.dim(3);
  const std::int64_t ho = x.dim(2) + 2 * padding - w.dim(2) + 1, wo = x.dim(3) + 2 * padding - w.dim(3) + 1;
  const kernels::WindowGeometry g{w.dim(2), w.dim(3), 1, 1, padding, padding, 1, 1, ho, wo};
  const Tensor y = linear(reshape(im2col(x, g), Shape{n * ho * wo, k}), reshape(w, Shape{o, k}), b);
  return reshape(transpose(reshape(y, Shape{n, ho * wo, o})), Shape{n, o, ho, wo});
}

// A Conv-4 middle layer: x (rows, 64, 14, 14), 64 filters 3x3, padding 1, f32. Arg 0: forward only;
// 1: forward and the first-order backward (data and filter gradients). Arg 1: 0 = the library's
// conv2d (its own kernels: per-image im2col + GEMM on the CPU), 1 = the first form (index layout),
// 2 = the second form (im2col + linear + transpose as tape ops).
void BM_Conv2dConv4Layer(benchmark::State& state) {
  const bool backward = state.range(0) != 0;
  const int form = static_cast<int>(state.range(1));
  const std::int64_t rows = 25;
  Generator gen(1);
  const Tensor x = Tensor::uniform(Shape{rows, 64, 14, 14}, -1, 1, gen).requires_grad_();
  const Tensor w = Tensor::uniform(Shape{64, 64, 3, 3}, -0.05, 0.05, gen).requires_grad_();
  const Tensor b = Tensor::uniform(Shape{64}, -0.05, 0.05, gen).requires_grad_();
  for (auto _ : state) {
    TapeScope scope;
    GradModeGuard mode(backward);
    const Tensor y = form == 1 ? conv2d_by_index(x, w, b, 1) : form == 2 ? conv2d_by_im2col(x, w, b, 1) : conv2d(x, w, b, 1, 1, 1);
    if (backward) {
      const auto g = grad({sum(y)}, {x, w, b});
      benchmark::DoNotOptimize(g[1].raw_data());
    } else {
      benchmark::DoNotOptimize(y.raw_data());
    }
  }
  const double gemm_flops = 2.0 * rows * 14 * 14 * 64 * 64 * 9 * (backward ? 3 : 1);
  state.counters["GEMM GFLOP/s"] = benchmark::Counter(gemm_flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(form == 1 ? "index layout (first form)" : form == 2 ? "im2col + linear ops (second form)" : "conv kernels") +
                 (backward ? ", fwd+bwd" : ", fwd"));
}
BENCHMARK(BM_Conv2dConv4Layer)->ArgsProduct({{0, 1}, {0, 1, 2}})->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
