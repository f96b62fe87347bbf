// The fused meta-gradient CUDA kernel (kernels/cuda/fused_meta_gradient.cu) against the tape, the
// reference every executor is tested against (docs/fused-meta-gradient.md).
//
// Two harnesses share one table of cases and one tape reference (per task: K inner steps with
// grad(create_graph = second_order), the weighted query losses, grad of the outer loss with respect
// to theta_0, the rates and the inputs), all in f64 on the CPU:
// - "emulated": the kernel's per-task body (kernels/cuda/fused_meta_gradient_task.h) runs on host
//   threads standing in for one thread block (a std::barrier for __syncthreads, a fixed-order sum for
//   cub::BlockReduce), in f64 (<= 1e-9 relative to the tape: the arithmetic and indexing are exact)
//   and in f32 (<= 1e-4, the budget the GPU gets). Shared memory, the workspace and every output start
//   as NaN, so an element read before it is written, or never written, fails. Runs on every machine.
// - "GPU" (skipped without a device): the kernel itself in f32 against the same reference (<= 1e-4
//   normwise per output), bit-identical on a second run, equal to its CUDA-graph replay, and a bad
//   label reported through the device error record with that task's outputs NaN.
// A deliberately broken variant (Fault) must fail the comparison: the harness can fail.
#include <doctest/doctest.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "gpu_available.h"
#include "kernels/cuda/fused_meta_gradient_task.h"
#include "kernels/fused_meta_gradient.h"
#ifdef METATAPE_WITH_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/graph.h"
#include "kernels/cuda/runtime.h"
#endif

using namespace metatape;
using kernels::FusedActivation;
using kernels::FusedLoss;
using kernels::FusedMetaGradientConfig;
using kernels::FusedRates;
using Fault = FusedMetaGradientConfig::Fault;

namespace {

struct Case {
  std::string name;
  FusedMetaGradientConfig config;
  std::int64_t tasks = 1, n = 4, m = 6;
  bool shared_init = true;
  bool query_out = true;
};

// The inputs of one case, f64, row-major.
struct Data {
  std::vector<double> init, rates, sx, sy, qx, qy;
  std::vector<std::int64_t> sl, ql;
};

// Every output, f64, row-major; empty when the case has no such output.
struct Outputs {
  std::vector<double> grad_init, grad_rates, grad_support_x, grad_query_x, losses, query_out;
};

std::int64_t param_count(const std::vector<std::int64_t>& sizes) {
  std::int64_t p = 0;
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l) p += sizes[l + 1] * (sizes[l] + 1);
  return p;
}

std::int64_t rate_count(const FusedMetaGradientConfig& c) {
  const auto layers = static_cast<std::int64_t>(c.sizes.size()) - 1;
  if (c.rates == FusedRates::per_tensor_step) return 2 * layers * c.steps;
  if (c.rates == FusedRates::per_parameter) return param_count(c.sizes);
  return 0;
}

Data make_data(const Case& k, std::uint64_t seed) {
  const FusedMetaGradientConfig& c = k.config;
  Generator gen(seed);
  Data d;
  const std::int64_t P = param_count(c.sizes), in = c.sizes.front(), out = c.sizes.back();
  std::vector<double> base;
  for (std::size_t l = 0; l + 1 < c.sizes.size(); ++l) {
    const double scale = 1.2 / std::sqrt(static_cast<double>(c.sizes[l]));
    for (std::int64_t i = 0; i < c.sizes[l + 1] * c.sizes[l]; ++i) base.push_back(scale * gen.normal());
    for (std::int64_t i = 0; i < c.sizes[l + 1]; ++i) base.push_back(0.2 * gen.normal());
  }
  if (k.shared_init) {
    d.init = base;
  } else {
    for (std::int64_t t = 0; t < k.tasks; ++t) {
      for (std::int64_t i = 0; i < P; ++i) d.init.push_back(base[static_cast<std::size_t>(i)] + 0.05 * gen.normal());
    }
  }
  for (std::int64_t i = 0; i < rate_count(c); ++i) d.rates.push_back(gen.uniform(0.1, 0.4));
  auto normals = [&](std::int64_t count) {
    std::vector<double> v(static_cast<std::size_t>(count));
    for (double& x : v) x = gen.normal();
    return v;
  };
  d.sx = normals(k.tasks * k.n * in);
  d.qx = normals(k.tasks * k.m * in);
  if (c.loss == FusedLoss::cross_entropy) {
    for (std::int64_t i = 0; i < k.tasks * k.n; ++i) d.sl.push_back(static_cast<std::int64_t>(gen.below(out)));
    for (std::int64_t i = 0; i < k.tasks * k.m; ++i) d.ql.push_back(static_cast<std::int64_t>(gen.below(out)));
  } else {
    d.sy = normals(k.tasks * k.n * out);
    d.qy = normals(k.tasks * k.m * out);
  }
  return d;
}

std::vector<double> weights_of(const FusedMetaGradientConfig& c) {
  if (!c.query_weights.empty()) return c.query_weights;
  std::vector<double> w(static_cast<std::size_t>(c.steps), 0.0);
  w.back() = 1.0;
  return w;
}

Tensor activate(FusedActivation a, const Tensor& z) {
  switch (a) {
    case FusedActivation::relu:
      return relu(z);
    case FusedActivation::tanh:
      return tanh(z);
    case FusedActivation::leaky_relu:
      return leaky_relu(z, kernels::fused_leaky_slope);
    case FusedActivation::elu:
      return elu(z, kernels::fused_elu_alpha);
    case FusedActivation::sigmoid:
      return sigmoid(z);
    case FusedActivation::gelu:
      return gelu(z);
    case FusedActivation::none:
      break;
  }
  return z;
}

std::vector<double> slice_of(const std::vector<double>& v, std::int64_t start, std::int64_t count) {
  return {v.begin() + start, v.begin() + start + count};
}

void append(std::vector<double>& dst, const Tensor& t, std::int64_t count) {
  if (!t.defined()) {
    dst.insert(dst.end(), static_cast<std::size_t>(count), 0.0);
    return;
  }
  const std::vector<double> v = t.to_vector<double>();
  REQUIRE(static_cast<std::int64_t>(v.size()) == count);
  dst.insert(dst.end(), v.begin(), v.end());
}

// The tape, task by task, f64.
Outputs tape_reference(const Case& k, const Data& d) {
  const FusedMetaGradientConfig& c = k.config;
  const int L = static_cast<int>(c.sizes.size()) - 1, K = c.steps;
  const std::int64_t P = param_count(c.sizes), in = c.sizes.front(), out = c.sizes.back();
  const std::vector<double> w = weights_of(c);
  const bool ce = c.loss == FusedLoss::cross_entropy;
  Outputs o;
  for (std::int64_t t = 0; t < k.tasks; ++t) {
    TapeScope scope;
    const std::vector<double> row = slice_of(d.init, k.shared_init ? 0 : t * P, P);
    std::vector<Tensor> theta0, rate_leaves;
    std::int64_t at = 0;
    for (int l = 0; l < L; ++l) {
      const std::int64_t i = c.sizes[static_cast<std::size_t>(l)], j = c.sizes[static_cast<std::size_t>(l) + 1];
      theta0.push_back(Tensor::from_vector(slice_of(row, at, j * i), Shape{j, i}, DType::f64).requires_grad_());
      at += j * i;
      theta0.push_back(Tensor::from_vector(slice_of(row, at, j), Shape{j}, DType::f64).requires_grad_());
      at += j;
    }
    if (c.rates == FusedRates::per_tensor_step) {
      for (std::int64_t r = 0; r < 2 * L * K; ++r) {
        rate_leaves.push_back(Tensor::from_vector(slice_of(d.rates, r, 1), Shape{1}, DType::f64).requires_grad_());
      }
    } else if (c.rates == FusedRates::per_parameter) {
      std::int64_t a = 0;
      for (const Tensor& th : theta0) {
        rate_leaves.push_back(
            Tensor::from_vector(slice_of(d.rates, a, th.numel()), th.shape(), DType::f64).requires_grad_());
        a += th.numel();
      }
    }
    const Tensor xs = Tensor::from_vector(slice_of(d.sx, t * k.n * in, k.n * in), Shape{k.n, in}, DType::f64)
                          .requires_grad_(c.input_grads);
    const Tensor xq = Tensor::from_vector(slice_of(d.qx, t * k.m * in, k.m * in), Shape{k.m, in}, DType::f64)
                          .requires_grad_(c.input_grads);
    Tensor ys, yq;
    if (ce) {
      ys = Tensor::indices(std::vector<std::int64_t>(d.sl.begin() + t * k.n, d.sl.begin() + (t + 1) * k.n));
      yq = Tensor::indices(std::vector<std::int64_t>(d.ql.begin() + t * k.m, d.ql.begin() + (t + 1) * k.m));
    } else {
      ys = Tensor::from_vector(slice_of(d.sy, t * k.n * out, k.n * out), Shape{k.n, out}, DType::f64);
      yq = Tensor::from_vector(slice_of(d.qy, t * k.m * out, k.m * out), Shape{k.m, out}, DType::f64);
    }
    auto forward = [&](const std::vector<Tensor>& th, const Tensor& x) {
      Tensor a = x;
      for (int l = 0; l < L; ++l) {
        a = linear(a, th[2 * static_cast<std::size_t>(l)], th[2 * static_cast<std::size_t>(l) + 1]);
        if (l + 1 < L) a = activate(c.activation, a);
      }
      return a;
    };
    auto loss = [&](const Tensor& prediction, const Tensor& y) {
      return ce ? cross_entropy(prediction, y) : mse(prediction, y);
    };
    std::vector<Tensor> th = theta0;
    const double loss0 = loss(forward(th, xs), ys).item();
    Tensor F;
    for (int s = 0; s < K; ++s) {
      GradOptions inner;
      inner.create_graph = c.second_order;
      inner.retain_graph = true;
      const std::vector<Tensor> g = grad({loss(forward(th, xs), ys)}, th, inner);
      for (std::size_t q = 0; q < th.size(); ++q) {
        Tensor step;
        if (c.rates == FusedRates::scalar) {
          step = affine(g[q], c.lr, 0.0);
        } else if (c.rates == FusedRates::per_tensor_step) {
          step = mul(rate_leaves[q * static_cast<std::size_t>(K) + static_cast<std::size_t>(s)], g[q]);
        } else {
          step = mul(rate_leaves[q], g[q]);
        }
        th[q] = sub(th[q], step);
      }
      if (w[static_cast<std::size_t>(s)] != 0.0) {
        const Tensor term = affine(loss(forward(th, xq), yq), w[static_cast<std::size_t>(s)], 0.0);
        F = F.defined() ? add(F, term) : term;
      }
    }
    const Tensor qout = forward(th, xq);
    o.losses.push_back(loss0);
    o.losses.push_back(loss(qout, yq).item());
    if (k.query_out) append(o.query_out, qout, k.m * out);
    std::vector<Tensor> inputs = theta0;
    inputs.insert(inputs.end(), rate_leaves.begin(), rate_leaves.end());
    if (c.input_grads) {
      inputs.push_back(xs);
      inputs.push_back(xq);
    }
    GradOptions outer;
    outer.allow_unused = true;
    const std::vector<Tensor> grads = grad({F}, inputs, outer);
    std::size_t q = 0;
    for (; q < theta0.size(); ++q) append(o.grad_init, grads[q], theta0[q].numel());
    if (c.rates == FusedRates::per_tensor_step) {
      // The tape's rate leaves are (tensor, step); the kernel's row is the same order.
      for (std::size_t r = 0; r < rate_leaves.size(); ++r) append(o.grad_rates, grads[q + r], 1);
    } else if (c.rates == FusedRates::per_parameter) {
      for (std::size_t r = 0; r < rate_leaves.size(); ++r) append(o.grad_rates, grads[q + r], rate_leaves[r].numel());
    }
    q += rate_leaves.size();
    if (c.input_grads) {
      append(o.grad_support_x, grads[q], k.n * in);
      append(o.grad_query_x, grads[q + 1], k.m * in);
    }
  }
  return o;
}

// ---- the kernel's body on host threads ---------------------------------------------------------

template <class T>
struct HostBlock {
  int id = 0, count = 1;
  std::barrier<>* barrier = nullptr;
  std::vector<T>* slots = nullptr;
  std::mutex* error_lock = nullptr;
  std::vector<long long>* first_error = nullptr;  // value, position, bound

  int tid() const { return id; }
  int threads() const { return count; }
  void sync() const { barrier->arrive_and_wait(); }
  T sum(T v) const {
    (*slots)[static_cast<std::size_t>(id)] = v;
    sync();
    T total = T(0);
    for (T x : *slots) total += x;
    sync();
    return total;
  }
  void report_label(long long value, long long position, long long bound) const {
    std::lock_guard<std::mutex> lock(*error_lock);
    if (first_error->empty()) *first_error = {value, position, bound};
  }
};

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return {v.begin(), v.end()};
}

template <class T>
std::vector<double> widen(const std::vector<T>& v) {
  return {v.begin(), v.end()};
}

// Runs fmg::TaskRun<T> for every task on `threads` host threads; `label_error` receives the first
// reported label error (empty if none).
template <class T>
Outputs emulate(const Case& k, const Data& d, int threads, std::vector<long long>* label_error = nullptr) {
  const FusedMetaGradientConfig& c = k.config;
  REQUIRE(kernels::fmg::config_problem(c, k.n, k.m).empty());
  const kernels::fmg::Layout layout = kernels::fmg::make_layout(c, k.n, k.m, k.shared_init, k.query_out);
  const std::int64_t P = param_count(c.sizes), in = c.sizes.front(), out = c.sizes.back(), R = rate_count(c);
  const T nan = std::numeric_limits<T>::quiet_NaN();
  const std::vector<T> init = cast<T>(d.init), rates = cast<T>(d.rates), sx = cast<T>(d.sx), sy = cast<T>(d.sy),
                       qx = cast<T>(d.qx), qy = cast<T>(d.qy);
  std::vector<T> grad_init(static_cast<std::size_t>(k.tasks * P), nan);
  std::vector<T> grad_rates(static_cast<std::size_t>(k.tasks * R), nan);
  std::vector<T> gsx(c.input_grads ? static_cast<std::size_t>(k.tasks * k.n * in) : 0, nan);
  std::vector<T> gqx(c.input_grads ? static_cast<std::size_t>(k.tasks * k.m * in) : 0, nan);
  std::vector<T> losses(static_cast<std::size_t>(k.tasks * 2), nan);
  std::vector<T> qout(k.query_out ? static_cast<std::size_t>(k.tasks * k.m * out) : 0, nan);
  std::vector<T> workspace(static_cast<std::size_t>(k.tasks * layout.workspace_floats), nan);
  kernels::fmg::Pointers<T> g;
  g.init = init.data();
  g.rates = rates.empty() ? nullptr : rates.data();
  g.support_x = sx.data();
  g.query_x = qx.data();
  if (c.loss == FusedLoss::cross_entropy) {
    g.support_labels = d.sl.data();
    g.query_labels = d.ql.data();
  } else {
    g.support_targets = sy.data();
    g.query_targets = qy.data();
  }
  g.grad_init = grad_init.data();
  g.grad_rates = R > 0 ? grad_rates.data() : nullptr;
  g.grad_support_x = c.input_grads ? gsx.data() : nullptr;
  g.grad_query_x = c.input_grads ? gqx.data() : nullptr;
  g.losses = losses.data();
  g.query_out = k.query_out ? qout.data() : nullptr;
  g.workspace = workspace.data();
  std::mutex error_lock;
  std::vector<long long> first_error;
  for (std::int64_t t = 0; t < k.tasks; ++t) {
    std::vector<T> shared(static_cast<std::size_t>(layout.shared_floats), nan);
    std::vector<T> slots(static_cast<std::size_t>(threads), T(0));
    std::barrier<> barrier(threads);
    std::vector<std::thread> pool;
    for (int id = 0; id < threads; ++id) {
      pool.emplace_back([&, id] {
        HostBlock<T> ctx{id, threads, &barrier, &slots, &error_lock, &first_error};
        kernels::fmg::TaskRun<T, HostBlock<T>> run(layout, ctx, g, shared.data(), t);
        run.run();
      });
    }
    for (std::thread& th : pool) th.join();
  }
  if (label_error) *label_error = first_error;
  Outputs o;
  o.grad_init = widen(grad_init);
  if (R > 0) o.grad_rates = widen(grad_rates);
  o.grad_support_x = widen(gsx);
  o.grad_query_x = widen(gqx);
  o.losses = widen(losses);
  o.query_out = widen(qout);
  return o;
}

// max |got - want| / max |want|, per output; NaN where `got` is not finite but `want` is.
double normwise(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  double scale = 1e-30, worst = 0.0;
  for (double v : want) scale = std::max(scale, std::abs(v));
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::isfinite(want[i]) && !std::isfinite(got[i])) return std::numeric_limits<double>::quiet_NaN();
    worst = std::max(worst, std::abs(got[i] - want[i]));
  }
  return worst / scale;
}

// The worst normwise error over the outputs; `report` names each.
double worst_error(const Outputs& got, const Outputs& want, std::string* report) {
  double worst = 0.0;
  auto one = [&](const char* name, const std::vector<double>& a, const std::vector<double>& b) {
    const double e = normwise(a, b);
    if (report) *report += std::string(name) + " " + std::to_string(e) + "  ";
    worst = std::isnan(e) || std::isnan(worst) ? std::numeric_limits<double>::quiet_NaN() : std::max(worst, e);
  };
  one("grad_init", got.grad_init, want.grad_init);
  one("grad_rates", got.grad_rates, want.grad_rates);
  one("grad_support_x", got.grad_support_x, want.grad_support_x);
  one("grad_query_x", got.grad_query_x, want.grad_query_x);
  one("losses", got.losses, want.losses);
  one("query_out", got.query_out, want.query_out);
  return worst;
}

FusedMetaGradientConfig config(std::vector<std::int64_t> sizes, FusedActivation a, FusedLoss loss, int steps,
                               bool second_order, FusedRates rates) {
  FusedMetaGradientConfig c;
  c.sizes = std::move(sizes);
  c.activation = a;
  c.loss = loss;
  c.steps = steps;
  c.second_order = second_order;
  c.rates = rates;
  c.lr = 0.3;
  return c;
}

const char* activation_name(FusedActivation a) {
  switch (a) {
    case FusedActivation::relu:
      return "relu";
    case FusedActivation::tanh:
      return "tanh";
    case FusedActivation::none:
      return "none";
    case FusedActivation::leaky_relu:
      return "leaky_relu";
    case FusedActivation::elu:
      return "elu";
    case FusedActivation::sigmoid:
      return "sigmoid";
    case FusedActivation::gelu:
      return "gelu";
  }
  return "?";
}

// The table: every activation x both losses; rates modes x first/second order; steps 1, 2, 5;
// depth 2-4; meta-batch 1 and 5 (shared and per-task init); input gradients; checkpoint_every 1, 2
// and 3 (a ragged last segment); MAML++ multi-step weights; W1 and W2 shapes.
std::vector<Case> table() {
  std::vector<Case> t;
  const FusedActivation acts[] = {FusedActivation::relu,       FusedActivation::tanh, FusedActivation::none,
                                  FusedActivation::leaky_relu, FusedActivation::elu,  FusedActivation::sigmoid,
                                  FusedActivation::gelu};
  const FusedRates rates[] = {FusedRates::scalar, FusedRates::per_tensor_step, FusedRates::per_parameter};
  int i = 0;
  for (FusedActivation a : acts) {
    for (FusedLoss loss : {FusedLoss::cross_entropy, FusedLoss::mse}) {
      Case k;
      const int depth = 2 + i % 3;
      std::vector<std::int64_t> sizes = {5};
      for (int h = 1; h < depth; ++h) sizes.push_back(6 + h);
      sizes.push_back(loss == FusedLoss::cross_entropy ? 4 : 2);
      k.config = config(sizes, a, loss, 2, true, rates[i % 3]);
      k.config.input_grads = i % 2 == 0;
      k.config.query_weights = {0.4, 1.0};
      k.name = std::string(activation_name(a)) + (loss == FusedLoss::cross_entropy ? " ce" : " mse") + " depth " +
               std::to_string(depth);
      t.push_back(k);
      ++i;
    }
  }
  for (FusedRates r : rates) {
    for (bool second : {true, false}) {
      for (int steps : {1, 2, 5}) {
        Case k;
        k.config = config({6, 9, 7, 3}, steps % 2 ? FusedActivation::tanh : FusedActivation::gelu,
                          FusedLoss::cross_entropy, steps, second, r);
        k.config.lr = 0.2;
        k.config.input_grads = steps != 2;
        k.config.checkpoint_every = steps == 5 ? 2 : 1;
        k.tasks = steps == 2 ? 5 : 1;
        k.shared_init = steps != 2 || r != FusedRates::scalar;
        k.name = std::string("rates ") + std::to_string(static_cast<int>(r)) + (second ? " second" : " first") +
                 " order, steps " + std::to_string(steps);
        t.push_back(k);
      }
    }
  }
  {
    Case k;
    k.config =
        config({4, 8, 8, 3}, FusedActivation::elu, FusedLoss::cross_entropy, 5, true, FusedRates::per_tensor_step);
    k.config.query_weights = {0.1, 0.2, 0.0, 0.3, 1.0};
    k.config.checkpoint_every = 3;
    k.config.input_grads = true;
    k.tasks = 5;
    k.shared_init = false;
    k.m = 9;  // three chunks of the 4 support rows, the last ragged
    k.name = "MAML++ multi-step, checkpoint_every 3, per-task init, meta-batch 5";
    t.push_back(k);
  }
  {
    Case k;
    k.config = config({5, 3}, FusedActivation::none, FusedLoss::cross_entropy, 3, true, FusedRates::per_parameter);
    k.config.checkpoint_every = 2;  // segments [0, 2) and [2, 3)
    k.config.input_grads = true;
    k.n = 6;
    k.m = 3;  // fewer query rows than support rows
    k.tasks = 2;
    k.name = "linear model (no hidden layer), m < n, checkpoint_every 2 of 3 steps";
    t.push_back(k);
  }
  {
    Case k;
    k.config = config({3, 10, 4}, FusedActivation::sigmoid, FusedLoss::mse, 5, true, FusedRates::per_tensor_step);
    k.config.checkpoint_every = 7;  // more than the steps: one segment, nothing replayed
    k.config.query_weights = {0.2, 0.2, 0.2, 0.2, 0.2};
    k.config.input_grads = true;
    k.name = "checkpoint_every beyond the steps, uniform multi-step weights";
    t.push_back(k);
  }
  {
    Case k;
    k.config = config({1, 40, 40, 1}, FusedActivation::relu, FusedLoss::mse, 1, true, FusedRates::scalar);
    k.config.lr = 0.01;
    k.tasks = 5;
    k.n = 10;
    k.m = 10;
    k.name = "W2 (1-40-40-1, mse, n = m = 10, K = 1)";
    t.push_back(k);
  }
  {
    Case k;
    k.config = config({50, 128, 128, 3}, FusedActivation::relu, FusedLoss::cross_entropy, 5, true, FusedRates::scalar);
    k.config.lr = 0.1;
    k.n = 15;
    k.m = 45;
    k.name = "W1 (50-128-128-3, cross-entropy, n = 15, m = 45, K = 5)";
    t.push_back(k);
  }
  return t;
}

std::uint64_t seed_of(std::size_t i) { return 20261202 + 97 * i; }

// METATAPE_FMG_CASES=a,b keeps the GPU table's cases whose name contains one of the comma-separated
// parts (scripts/gpu-check.sh keeps the racecheck run short with it).
[[maybe_unused]] bool selected(const std::string& name) {
  const char* env = std::getenv("METATAPE_FMG_CASES");
  if (env == nullptr || *env == 0) return true;
  const std::string list = env;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t end = std::min(list.find(',', start), list.size());
    const std::string part = list.substr(start, end - start);
    if (!part.empty() && name.find(part) != std::string::npos) return true;
    start = end + 1;
  }
  return false;
}

}  // namespace

TEST_CASE("fused meta-gradient kernel body emulated on host threads equals the tape (f64 and f32)") {
  const std::vector<Case> cases = table();
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& k = cases[i];
    CAPTURE(k.name);
    const Data d = make_data(k, seed_of(i));
    const Outputs want = tape_reference(k, d);
    const bool big = k.config.sizes[1] >= 128;
    std::string report;
    const double e64 = worst_error(emulate<double>(k, d, big ? 8 : 1 + static_cast<int>(i % 7)), want, &report);
    INFO("f64: " << report);
    CHECK(e64 <= 1e-9);
    report.clear();
    const double e32 = worst_error(emulate<float>(k, d, big ? 8 : 33), want, &report);
    INFO("f32: " << report);
    CHECK(e32 <= 1e-4);
  }
}

TEST_CASE("fused meta-gradient kernel body: a dropped Hessian term or rate gradient fails the comparison") {
  Case k;
  k.config =
      config({5, 7, 6, 3}, FusedActivation::tanh, FusedLoss::cross_entropy, 2, true, FusedRates::per_tensor_step);
  k.name = "fault";
  const Data d = make_data(k, 7);
  const Outputs want = tape_reference(k, d);
  CHECK(worst_error(emulate<double>(k, d, 3), want, nullptr) <= 1e-9);
  for (Fault f : {Fault::drop_hessian_term, Fault::drop_rate_gradient}) {
    CAPTURE(static_cast<int>(f));
    Case broken = k;
    broken.config.fault = f;
    const Outputs got = emulate<double>(broken, d, 3);
    CHECK(normwise(f == Fault::drop_hessian_term ? got.grad_init : got.grad_rates,
                   f == Fault::drop_hessian_term ? want.grad_init : want.grad_rates) > 1e-3);
  }
  // The GPU's fault case: the W1 row of the table.
  const std::vector<Case> cases = table();
  Case w1 = cases.back();
  const Data d1 = make_data(w1, seed_of(cases.size() - 1));
  const Outputs want1 = tape_reference(w1, d1);
  w1.config.fault = Fault::drop_hessian_term;
  CHECK(normwise(emulate<float>(w1, d1, 8).grad_init, want1.grad_init) > 1e-3);
}

TEST_CASE("fused meta-gradient kernel body: an out-of-range label is reported and NaNs that task only") {
  Case k;
  k.config = config({5, 7, 3}, FusedActivation::relu, FusedLoss::cross_entropy, 2, true, FusedRates::per_parameter);
  k.config.input_grads = true;
  k.tasks = 3;
  Data d = make_data(k, 11);
  const Outputs good = emulate<double>(k, d, 4);
  d.ql[static_cast<std::size_t>(1 * k.m + 2)] = 3;  // task 1, query row 2: classes are 0..2
  std::vector<long long> error;
  const Outputs bad = emulate<double>(k, d, 4, &error);
  REQUIRE(error.size() == 3);
  CHECK(error[0] == 3);
  CHECK(error[1] == 1 * k.m + 2);
  CHECK(error[2] == 3);
  const std::int64_t P = param_count(k.config.sizes);
  for (std::int64_t t = 0; t < k.tasks; ++t) {
    CAPTURE(t);
    for (std::int64_t i = 0; i < P; ++i) {
      const double v = bad.grad_init[static_cast<std::size_t>(t * P + i)];
      if (t == 1) {
        REQUIRE(std::isnan(v));
      } else {
        REQUIRE(v == good.grad_init[static_cast<std::size_t>(t * P + i)]);
      }
    }
    CHECK(std::isnan(bad.losses[static_cast<std::size_t>(2 * t)]) == (t == 1));
    CHECK(std::isnan(bad.query_out[static_cast<std::size_t>(t * k.m * 3)]) == (t == 1));
    CHECK(std::isnan(bad.grad_support_x[static_cast<std::size_t>(t * k.n * 5)]) == (t == 1));
  }
}

// ---- the kernel on the GPU ---------------------------------------------------------------------

#ifdef METATAPE_WITH_CUDA
namespace {

struct DeviceRun {
  Tensor init, rates, sx, sy, qx, qy, grad_init, grad_rates, gsx, gqx, losses, qout, workspace;
  kernels::FusedMetaGradientViews views;
};

Tensor device_floats(const std::vector<double>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape, DType::f32).to(Device::cuda);
}

// Inputs on the device and fresh (NaN-poisoned) outputs.
DeviceRun device_run(const Case& k, const Data& d) {
  const FusedMetaGradientConfig& c = k.config;
  const std::int64_t T = k.tasks, P = param_count(c.sizes), in = c.sizes.front(), out = c.sizes.back(),
                     R = rate_count(c);
  DeviceRun r;
  r.init = device_floats(d.init, k.shared_init ? Shape{P} : Shape{T, P});
  if (R > 0) r.rates = device_floats(d.rates, Shape{R});
  r.sx = device_floats(d.sx, Shape{T, k.n, in});
  r.qx = device_floats(d.qx, Shape{T, k.m, in});
  if (c.loss == FusedLoss::cross_entropy) {
    r.sy = reshape(Tensor::indices(d.sl), Shape{T, k.n}).to(Device::cuda);
    r.qy = reshape(Tensor::indices(d.ql), Shape{T, k.m}).to(Device::cuda);
  } else {
    r.sy = device_floats(d.sy, Shape{T, k.n, out});
    r.qy = device_floats(d.qy, Shape{T, k.m, out});
  }
  r.grad_init = Tensor::empty(Shape{T, P}, DType::f32, Device::cuda);
  if (R > 0) r.grad_rates = Tensor::empty(Shape{T, R}, DType::f32, Device::cuda);
  if (c.input_grads) {
    r.gsx = Tensor::empty(Shape{T, k.n, in}, DType::f32, Device::cuda);
    r.gqx = Tensor::empty(Shape{T, k.m, in}, DType::f32, Device::cuda);
  }
  r.losses = Tensor::empty(Shape{T, 2}, DType::f32, Device::cuda);
  if (k.query_out) r.qout = Tensor::empty(Shape{T, k.m, out}, DType::f32, Device::cuda);
  const std::int64_t W = kernels::cuda::fused_meta_gradient_workspace(c, k.n, k.m);
  r.workspace = Tensor::empty(Shape{T, W}, DType::f32, Device::cuda);
  auto view = [](const Tensor& t) { return t.defined() ? t.view() : kernels::View{}; };
  r.views.init = view(r.init);
  r.views.rates = view(r.rates);
  r.views.support_x = view(r.sx);
  r.views.support_y = view(r.sy);
  r.views.query_x = view(r.qx);
  r.views.query_y = view(r.qy);
  r.views.grad_init = view(r.grad_init);
  r.views.grad_rates = view(r.grad_rates);
  r.views.grad_support_x = view(r.gsx);
  r.views.grad_query_x = view(r.gqx);
  r.views.losses = view(r.losses);
  r.views.query_out = view(r.qout);
  r.views.workspace = view(r.workspace);
  return r;
}

std::vector<double> host(const Tensor& t) {
  return t.defined() ? t.to(Device::cpu).to_vector<double>() : std::vector<double>{};
}

Outputs outputs_of(const DeviceRun& r) {
  Outputs o;
  o.grad_init = host(r.grad_init);
  o.grad_rates = host(r.grad_rates);
  o.grad_support_x = host(r.gsx);
  o.grad_query_x = host(r.gqx);
  o.losses = host(r.losses);
  o.query_out = host(r.qout);
  return o;
}

bool bit_identical(const Outputs& a, const Outputs& b) {
  auto same = [](const std::vector<double>& x, const std::vector<double>& y) {
    return x.size() == y.size() && (x.empty() || std::memcmp(x.data(), y.data(), x.size() * sizeof(double)) == 0);
  };
  return same(a.grad_init, b.grad_init) && same(a.grad_rates, b.grad_rates) &&
         same(a.grad_support_x, b.grad_support_x) && same(a.grad_query_x, b.grad_query_x) && same(a.losses, b.losses) &&
         same(a.query_out, b.query_out);
}

struct PoisonGuard {
  PoisonGuard() { kernels::cuda::CachingAllocator::instance().set_poison(true); }
  ~PoisonGuard() { kernels::cuda::CachingAllocator::instance().set_poison(false); }
};

}  // namespace
#endif

TEST_CASE("GPU: fused meta-gradient kernel equals the tape over the table and runs bit-identically twice") {
  if (!gpu_available()) return;
#ifdef METATAPE_WITH_CUDA
  [[maybe_unused]] PoisonGuard poison;
  const std::vector<Case> cases = table();
  int ran = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& k = cases[i];
    if (!selected(k.name)) continue;
    ++ran;
    CAPTURE(k.name);
    const std::string limit = kernels::cuda::fused_meta_gradient_limit(k.config, k.n, k.m);
    REQUIRE_MESSAGE(limit.empty(), limit);
    const Data d = make_data(k, seed_of(i));
    const Outputs want = tape_reference(k, d);
    DeviceRun r = device_run(k, d);
    kernels::cuda::fused_meta_gradient(k.config, r.views);
    const Outputs got = outputs_of(r);
    std::string report;
    const double e = worst_error(got, want, &report);
    INFO(report);
    CHECK(e <= 1e-4);
    DeviceRun again = device_run(k, d);
    kernels::cuda::fused_meta_gradient(k.config, again.views);
    CHECK(bit_identical(outputs_of(again), got));
  }
  MESSAGE(ran << " of " << cases.size() << " cases compared on the GPU");
  CHECK(ran > 0);
#endif
}

TEST_CASE("GPU: fused meta-gradient kernel: a dropped Hessian term fails the comparison") {
  if (!gpu_available()) return;
#ifdef METATAPE_WITH_CUDA
  const std::vector<Case> cases = table();
  const Case& w1 = cases.back();
  Case broken = w1;
  broken.config.fault = Fault::drop_hessian_term;
  const Data d = make_data(w1, seed_of(cases.size() - 1));
  DeviceRun r = device_run(broken, d);
  kernels::cuda::fused_meta_gradient(broken.config, r.views);
  CHECK(normwise(outputs_of(r).grad_init, tape_reference(w1, d).grad_init) > 1e-3);
#endif
}

TEST_CASE("GPU: fused meta-gradient kernel replayed from a CUDA graph equals the eager launch") {
  if (!gpu_available()) return;
#ifdef METATAPE_WITH_CUDA
  const std::vector<Case> cases = table();
  for (std::size_t i : {cases.size() - 2, cases.size() - 1}) {  // W2, W1
    const Case& k = cases[i];
    CAPTURE(k.name);
    const Data d = make_data(k, seed_of(i));
    DeviceRun eager = device_run(k, d);
    kernels::cuda::fused_meta_gradient(k.config, eager.views);
    const Outputs want = outputs_of(eager);
    DeviceRun graphed = device_run(k, d);
    kernels::cuda::synchronize();
    cudaStream_t stream = nullptr;
    REQUIRE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess);
    cudaGraph_t graph = nullptr;
    {
      kernels::cuda::StreamGuard on(stream);
      kernels::cuda::GraphCapture capture(stream);
      kernels::cuda::fused_meta_gradient(k.config, graphed.views);
      graph = capture.end();
    }
    std::size_t nodes = 0;
    REQUIRE(cudaGraphGetNodes(graph, nullptr, &nodes) == cudaSuccess);
    CHECK(nodes == 1);  // one launch per call
    cudaGraphExec_t exec = nullptr;
    REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
    for (int replay = 0; replay < 2; ++replay) {
      REQUIRE(cudaGraphLaunch(exec, stream) == cudaSuccess);
      REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);
      CHECK(bit_identical(outputs_of(graphed), want));
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
  }
#endif
}

TEST_CASE("GPU: fused meta-gradient kernel reports an out-of-range label and NaNs that task's outputs") {
  if (!gpu_available()) return;
#ifdef METATAPE_WITH_CUDA
  Case k;
  k.config = config({5, 7, 3}, FusedActivation::relu, FusedLoss::cross_entropy, 2, true, FusedRates::per_parameter);
  k.tasks = 3;
  Data d = make_data(k, 13);
  d.sl[static_cast<std::size_t>(2 * k.n + 1)] = -1;  // task 2, support row 1
  DeviceRun r = device_run(k, d);
  kernels::cuda::fused_meta_gradient(k.config, r.views);
  CHECK_THROWS_AS(kernels::cuda::synchronize(), Error);
  const Outputs o = outputs_of(r);
  const std::int64_t P = param_count(k.config.sizes);
  for (std::int64_t t = 0; t < k.tasks; ++t) {
    CAPTURE(t);
    CHECK(std::isnan(o.grad_init[static_cast<std::size_t>(t * P)]) == (t == 2));
    CHECK(std::isnan(o.losses[static_cast<std::size_t>(2 * t + 1)]) == (t == 2));
    CHECK(std::isnan(o.grad_rates[static_cast<std::size_t>(t * P + 3)]) == (t == 2));
  }
  kernels::cuda::synchronize();  // the record was cleared by the throw
#endif
}

TEST_CASE("GPU: fused meta-gradient limits name the failing limit with its numbers") {
  if (!gpu_available()) return;
#ifdef METATAPE_WITH_CUDA
  FusedMetaGradientConfig c =
      config({50, 128, 128, 3}, FusedActivation::relu, FusedLoss::cross_entropy, 5, true, FusedRates::scalar);
  CHECK(kernels::cuda::fused_meta_gradient_limit(c, 15, 45).empty());
  c.sizes = {50, 2048, 2048, 3};
  const std::string wide = kernels::cuda::fused_meta_gradient_limit(c, 15, 45);
  CHECK(wide.find("bytes of shared memory per block") != std::string::npos);
  c.sizes = {50, 128, 3};
  c.steps = 65;
  CHECK(kernels::cuda::fused_meta_gradient_limit(c, 15, 45).find("at most 64") != std::string::npos);
  c.steps = 0;
  CHECK(kernels::cuda::fused_meta_gradient_limit(c, 15, 45).find("steps must be >= 1") != std::string::npos);
#endif
}
