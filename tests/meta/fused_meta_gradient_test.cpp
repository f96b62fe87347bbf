// The fused meta-gradient (kernels/fused_meta_gradient.h, CPU reference) equals the tape: per task,
// dF/dtheta_0, dF/d(rates), dF/d(inputs), the losses and the query outputs against a tape reference
// written here with autograd ops exactly as meta/gradient_learner.cpp's task_gradient_taped runs it
// (nn::Mlp forward, grad with create_graph = second order, the learner's inner update), for every
// rates mode (scalar = MAML, per_tensor_step with multi-step weights = MAML++, per_parameter =
// Meta-SGD) x second / first order x every activation x both losses x 2, 3 and 4 layers x 1, 2 and 5
// steps x meta-batch 1 and 3. f64 within 1e-11 (normwise relative, per output tensor), a subset in
// f32 within 1e-4 (against the same f64 tape: the kernel's own f32 error). The deliberately broken
// variants (Fault) must fail the same comparison, and the learners themselves (meta_train_step with
// outer SGD at lr 1) must agree with the kernel's task mean.
//
// Caveats: relu and leaky_relu have a kink at z = 0 where the tape and the kernel both take the
// derivative of the z <= 0 side; random inputs put no pre-activation there (measure zero), but in
// f32 a pre-activation within rounding of 0 could take the other side than the f64 reference, so the
// f32 rows use inputs whose pre-activations are not near 0 with overwhelming probability (smooth
// random data), and the tolerance 1e-4 covers the f32 rounding of K second-order steps.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "kernels/fused_meta_gradient.h"
#include "meta/learners.h"
#include "nn/losses.h"
#include "nn/mlp.h"
#include "nn/optimizer.h"
#include "tasks/task.h"

using namespace metatape;
using kernels::FusedActivation;
using kernels::FusedLoss;
using kernels::FusedMetaGradientConfig;
using kernels::FusedRates;
using Fault = FusedMetaGradientConfig::Fault;

namespace {

nn::Activation nn_activation(FusedActivation a) {
  switch (a) {
    case FusedActivation::relu:
      return nn::Activation::relu;
    case FusedActivation::tanh:
      return nn::Activation::tanh;
    case FusedActivation::none:
      return nn::Activation::none;
    case FusedActivation::leaky_relu:
      return nn::Activation::leaky_relu;
    case FusedActivation::elu:
      return nn::Activation::elu;
    case FusedActivation::sigmoid:
      return nn::Activation::sigmoid;
    case FusedActivation::gelu:
      return nn::Activation::gelu;
  }
  return nn::Activation::none;
}

std::string activation_name(FusedActivation a) { return nn::activation_name(nn_activation(a)); }

// One problem: the data of `tasks` tasks as f64 values already rounded to f32 (so the f32 kernel
// sees exactly the inputs of the f64 reference).
struct Problem {
  FusedMetaGradientConfig config;
  std::int64_t tasks = 1, n = 5, m = 7, P = 0, R = 0;
  bool shared_init = true;
  std::vector<double> init;   // P or tasks * P
  std::vector<double> rates;  // R (empty for scalar)
  std::vector<double> sx, qx, sy, qy;
  std::vector<std::int64_t> sl, ql;  // labels (cross-entropy)
};

double f32_round(double v) { return static_cast<double>(static_cast<float>(v)); }

std::vector<double> random_values(std::size_t count, double lo, double hi, Generator& gen, bool normal = false) {
  const Tensor t = normal ? Tensor::normal(Shape{static_cast<std::int64_t>(count)}, 0.0, 1.0, gen, DType::f64)
                          : Tensor::uniform(Shape{static_cast<std::int64_t>(count)}, lo, hi, gen, DType::f64);
  std::vector<double> v = t.to_vector<double>();
  for (double& x : v) x = f32_round(x);
  return v;
}

Problem make_problem(const FusedMetaGradientConfig& config, std::int64_t tasks, bool shared_init, Generator& gen,
                     std::int64_t n = 5, std::int64_t m = 7) {
  Problem p;
  p.config = config;
  p.tasks = tasks;
  p.n = n;
  p.m = m;
  p.shared_init = shared_init;
  p.P = kernels::fused_param_count(config.sizes);
  const std::int64_t L = static_cast<std::int64_t>(config.sizes.size()) - 1;
  p.R = config.rates == FusedRates::scalar          ? 0
        : config.rates == FusedRates::per_tensor_step ? 2 * L * config.steps
                                                      : p.P;
  const nn::Mlp mlp(nn::MlpSpec{config.sizes, nn_activation(config.activation), nn::Init::uniform_fan_in, DType::f64});
  const nn::ParameterList init = mlp.init(gen);
  std::vector<double> base;
  for (const Tensor& t : init.tensors()) {
    for (double x : t.to_vector<double>()) base.push_back(f32_round(x));
  }
  if (shared_init) {
    p.init = base;
  } else {
    for (std::int64_t t = 0; t < tasks; ++t) {
      const std::vector<double> noise = random_values(base.size(), -0.1, 0.1, gen);
      for (std::size_t i = 0; i < base.size(); ++i) p.init.push_back(f32_round(base[i] + noise[i]));
    }
  }
  p.rates = random_values(static_cast<std::size_t>(p.R), 0.1, 0.3, gen);
  const std::int64_t in = config.sizes.front(), out = config.sizes.back();
  p.sx = random_values(static_cast<std::size_t>(tasks * p.n * in), 0, 0, gen, true);
  p.qx = random_values(static_cast<std::size_t>(tasks * p.m * in), 0, 0, gen, true);
  if (config.loss == FusedLoss::cross_entropy) {
    for (double u : random_values(static_cast<std::size_t>(tasks * p.n), 0.0, 1.0, gen)) {
      p.sl.push_back(std::min<std::int64_t>(out - 1, static_cast<std::int64_t>(u * static_cast<double>(out))));
    }
    for (double u : random_values(static_cast<std::size_t>(tasks * p.m), 0.0, 1.0, gen)) {
      p.ql.push_back(std::min<std::int64_t>(out - 1, static_cast<std::int64_t>(u * static_cast<double>(out))));
    }
  } else {
    p.sy = random_values(static_cast<std::size_t>(tasks * p.n * out), 0, 0, gen, true);
    p.qy = random_values(static_cast<std::size_t>(tasks * p.m * out), 0, 0, gen, true);
  }
  return p;
}

// Per-task results, as f64, in the kernel's layouts.
struct Result {
  std::vector<double> grad_init, grad_rates, grad_sx, grad_qx, losses, query_out;
};

std::vector<double> part(const std::vector<double>& v, std::int64_t t, std::int64_t per) {
  return {v.begin() + t * per, v.begin() + (t + 1) * per};
}

// The tape reference for task t (meta/gradient_learner.cpp's task_gradient_taped, one task).
Result tape_reference(const Problem& p, std::int64_t t) {
  const FusedMetaGradientConfig& c = p.config;
  const nn::Mlp mlp(nn::MlpSpec{c.sizes, nn_activation(c.activation), nn::Init::uniform_fan_in, DType::f64});
  const std::size_t L = c.sizes.size() - 1;
  const std::int64_t in = c.sizes.front(), out = c.sizes.back();
  const int K = c.steps;
  TapeScope scope;
  const std::vector<double> theta = p.shared_init ? p.init : part(p.init, t, p.P);
  std::vector<Tensor> leaves, rate_leaves;
  std::vector<std::string> names;
  std::int64_t at = 0;
  for (std::size_t l = 0; l < L; ++l) {
    const std::int64_t i = c.sizes[l], o = c.sizes[l + 1];
    for (const Shape& shape : {Shape{o, i}, Shape{o}}) {
      const std::vector<double> values(theta.begin() + at, theta.begin() + at + shape.numel());
      leaves.push_back(Tensor::from_vector(values, shape, DType::f64).requires_grad_());
      if (c.rates == FusedRates::per_parameter) {
        const std::vector<double> r(p.rates.begin() + at, p.rates.begin() + at + shape.numel());
        rate_leaves.push_back(Tensor::from_vector(r, shape, DType::f64).requires_grad_());
      }
      at += shape.numel();
    }
    names.push_back(nn::Mlp::weight_name(l));
    names.push_back(nn::Mlp::bias_name(l));
  }
  if (c.rates == FusedRates::per_tensor_step) {
    for (double r : p.rates) rate_leaves.push_back(Tensor::scalar(r, DType::f64).requires_grad_());
  }
  Tensor sx = Tensor::from_vector(part(p.sx, t, p.n * in), Shape{p.n, in}, DType::f64);
  Tensor qx = Tensor::from_vector(part(p.qx, t, p.m * in), Shape{p.m, in}, DType::f64);
  if (c.input_grads) {
    sx.requires_grad_();
    qx.requires_grad_();
  }
  const bool ce = c.loss == FusedLoss::cross_entropy;
  const Tensor sy = ce ? Tensor::indices(std::vector<std::int64_t>(p.sl.begin() + t * p.n, p.sl.begin() + (t + 1) * p.n))
                       : Tensor::from_vector(part(p.sy, t, p.n * out), Shape{p.n, out}, DType::f64);
  const Tensor qy = ce ? Tensor::indices(std::vector<std::int64_t>(p.ql.begin() + t * p.m, p.ql.begin() + (t + 1) * p.m))
                       : Tensor::from_vector(part(p.qy, t, p.m * out), Shape{p.m, out}, DType::f64);
  auto model = [&](const std::vector<Tensor>& phi, const Tensor& x) {
    nn::ParameterList list;
    for (std::size_t k = 0; k < phi.size(); ++k) list.add(names[k], phi[k]);
    return mlp.forward(list, x);
  };
  auto loss_of = [&](const Tensor& output, const Tensor& y) {
    return ce ? nn::cross_entropy_loss(output, y) : nn::mse_loss(output, y);
  };
  auto weight = [&](int s) {  // w_s, s = 1..K
    if (c.query_weights.empty()) return s == K ? 1.0 : 0.0;
    return c.query_weights[static_cast<std::size_t>(s - 1)];
  };
  Result r;
  std::vector<Tensor> phi = leaves;
  Tensor outer;
  GradOptions inner;
  inner.create_graph = c.second_order;
  inner.retain_graph = true;
  for (int s = 0; s < K; ++s) {
    const Tensor loss = loss_of(model(phi, sx), sy);
    if (s == 0) r.losses.push_back(loss.item());
    const std::vector<Tensor> g = grad({loss}, phi, inner);
    for (std::size_t k = 0; k < phi.size(); ++k) {
      const Tensor gk = c.second_order ? g[k] : g[k].detach();
      switch (c.rates) {
        case FusedRates::scalar:
          phi[k] = sub(phi[k], affine(gk, c.lr, 0.0));
          break;
        case FusedRates::per_tensor_step:
          phi[k] = sub(phi[k], mul(gk, rate_leaves[k * static_cast<std::size_t>(K) + static_cast<std::size_t>(s)]));
          break;
        case FusedRates::per_parameter:
          phi[k] = sub(phi[k], mul(gk, rate_leaves[k]));
          break;
      }
    }
    const double w = weight(s + 1);
    if (w != 0.0 || s == K - 1) {
      const Tensor output = model(phi, qx);
      const Tensor q = loss_of(output, qy);
      if (s == K - 1) {
        r.losses.push_back(q.item());
        r.query_out = output.to_vector<double>();
      }
      if (w != 0.0) {
        const Tensor term = w == 1.0 ? q : affine(q, w, 0.0);
        outer = outer.defined() ? add(outer, term) : term;
      }
    }
  }
  std::vector<Tensor> inputs = leaves;
  inputs.insert(inputs.end(), rate_leaves.begin(), rate_leaves.end());
  if (c.input_grads) {
    inputs.push_back(sx);
    inputs.push_back(qx);
  }
  GradOptions options;
  options.allow_unused = true;
  const std::vector<Tensor> g = grad({outer}, inputs, options);
  for (std::size_t k = 0; k < leaves.size(); ++k) {
    for (double x : g[k].to_vector<double>()) r.grad_init.push_back(x);
  }
  for (std::size_t k = 0; k < rate_leaves.size(); ++k) {
    for (double x : g[leaves.size() + k].to_vector<double>()) r.grad_rates.push_back(x);
  }
  if (c.input_grads) {
    r.grad_sx = g[g.size() - 2].to_vector<double>();
    r.grad_qx = g[g.size() - 1].to_vector<double>();
  }
  return r;
}

// A float view `shift` elements into its own storage (shift 1: misaligned for every vector width).
struct Buffer {
  Tensor storage;
  kernels::View view;
  std::vector<double> values() const {
    const Tensor t = slice(storage, 0, storage.numel() - view.numel(), storage.numel());
    return t.to(DType::f64).to_vector<double>();
  }
};

Buffer buffer(const std::vector<double>& v, const Shape& shape, DType dtype, int shift) {
  std::vector<double> padded(static_cast<std::size_t>(shift), 0.0);
  padded.insert(padded.end(), v.begin(), v.end());
  padded.resize(static_cast<std::size_t>(shape.numel() + shift), 0.0);
  Buffer b;
  b.storage = Tensor::from_vector(padded, Shape{shape.numel() + shift}, dtype);
  b.view = b.storage.view();
  b.view.data = static_cast<char*>(b.view.data) + shift * kernels::dtype_size(dtype);
  b.view.shape = shape;
  return b;
}

// The kernel on the problem in `dtype`; one Result per task.
std::vector<Result> run_kernel(const Problem& p, DType dtype, const FusedMetaGradientConfig& config, int shift = 0) {
  const std::int64_t T = p.tasks, in = config.sizes.front(), out = config.sizes.back();
  const bool ce = config.loss == FusedLoss::cross_entropy;
  auto in_buffer = [&](const std::vector<double>& v, const Shape& shape) { return buffer(v, shape, dtype, shift); };
  auto out_buffer = [&](const Shape& shape) { return buffer({}, shape, dtype, shift); };
  const Buffer init = p.shared_init ? in_buffer(p.init, Shape{p.P}) : in_buffer(p.init, Shape{T, p.P});
  const Buffer sx = in_buffer(p.sx, Shape{T, p.n, in}), qx = in_buffer(p.qx, Shape{T, p.m, in});
  const Tensor sl = ce ? reshape(Tensor::indices(p.sl), Shape{T, p.n}) : Tensor();
  const Tensor ql = ce ? reshape(Tensor::indices(p.ql), Shape{T, p.m}) : Tensor();
  const Buffer sy = ce ? Buffer{sl, sl.view()} : in_buffer(p.sy, Shape{T, p.n, out});
  const Buffer qy = ce ? Buffer{ql, ql.view()} : in_buffer(p.qy, Shape{T, p.m, out});
  const Buffer grad_init = out_buffer(Shape{T, p.P}), losses = out_buffer(Shape{T, 2});
  const Buffer query_out = out_buffer(Shape{T, p.m, out});
  Buffer rates, grad_rates, gsx, gqx;
  kernels::FusedMetaGradientViews v;
  if (p.R) {
    rates = in_buffer(p.rates, Shape{p.R});
    grad_rates = out_buffer(Shape{T, p.R});
    v.rates = rates.view;
    v.grad_rates = grad_rates.view;
  }
  if (config.input_grads) {
    gsx = out_buffer(Shape{T, p.n, in});
    gqx = out_buffer(Shape{T, p.m, in});
    v.grad_support_x = gsx.view;
    v.grad_query_x = gqx.view;
  }
  v.init = init.view;
  v.support_x = sx.view;
  v.support_y = sy.view;
  v.query_x = qx.view;
  v.query_y = qy.view;
  v.grad_init = grad_init.view;
  v.losses = losses.view;
  v.query_out = query_out.view;
  kernels::fused_meta_gradient(config, v);
  std::vector<Result> results(static_cast<std::size_t>(T));
  for (std::int64_t t = 0; t < T; ++t) {
    Result& r = results[static_cast<std::size_t>(t)];
    r.grad_init = part(grad_init.values(), t, p.P);
    if (p.R) r.grad_rates = part(grad_rates.values(), t, p.R);
    if (config.input_grads) {
      r.grad_sx = part(gsx.values(), t, p.n * in);
      r.grad_qx = part(gqx.values(), t, p.m * in);
    }
    r.losses = part(losses.values(), t, 2);
    r.query_out = part(query_out.values(), t, p.m * out);
  }
  return results;
}

// ||a - b|| / ||b|| (||a - b|| when b is zero).
double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff += (a[i] - b[i]) * (a[i] - b[i]);
    norm += b[i] * b[i];
  }
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

// The largest relative error over the output tensors of one task.
struct Errors {
  double init = 0, rates = 0, inputs = 0, losses = 0, query_out = 0;
  double worst() const { return std::max({init, rates, inputs, losses, query_out}); }
};

Errors compare(const Result& got, const Result& want, bool input_grads) {
  Errors e;
  e.init = rel_err(got.grad_init, want.grad_init);
  e.rates = rel_err(got.grad_rates, want.grad_rates);
  if (input_grads) e.inputs = std::max(rel_err(got.grad_sx, want.grad_sx), rel_err(got.grad_qx, want.grad_qx));
  e.losses = rel_err(got.losses, want.losses);
  e.query_out = rel_err(got.query_out, want.query_out);
  return e;
}

const std::vector<FusedActivation> all_activations = {
    FusedActivation::relu, FusedActivation::leaky_relu, FusedActivation::elu, FusedActivation::tanh,
    FusedActivation::sigmoid, FusedActivation::gelu, FusedActivation::none};
const std::vector<std::vector<std::int64_t>> all_sizes = {{3, 5, 4}, {3, 6, 5, 4}, {3, 5, 6, 4, 3}};

// MAML++'s multi-step weights for K steps (any positive, non-uniform weights summing to 1).
std::vector<double> multi_step_weights(int K) {
  std::vector<double> w;
  double total = 0.0;
  for (int s = 1; s <= K; ++s) total += s;
  for (int s = 1; s <= K; ++s) w.push_back(s / total);
  return w;
}

FusedMetaGradientConfig make_config(FusedRates rates, bool second, FusedActivation act, FusedLoss loss,
                                    const std::vector<std::int64_t>& sizes, int steps) {
  FusedMetaGradientConfig c;
  c.sizes = sizes;
  c.activation = act;
  c.loss = loss;
  c.steps = steps;
  c.second_order = second;
  c.rates = rates;
  c.lr = 0.2;
  if (rates == FusedRates::per_tensor_step) c.query_weights = multi_step_weights(steps);
  return c;
}

}  // namespace

TEST_CASE("fused meta-gradient equals the tape: rates x order x activation x loss x depth x steps x meta-batch") {
  Generator gen(1301);
  int row = 0, f32_rows = 0, per_task_rows = 0, input_grad_rows = 0;
  for (const FusedRates rates : {FusedRates::scalar, FusedRates::per_tensor_step, FusedRates::per_parameter}) {
    for (const bool second : {true, false}) {
      for (const FusedActivation act : all_activations) {
        for (const FusedLoss loss : {FusedLoss::cross_entropy, FusedLoss::mse}) {
          for (const auto& sizes : all_sizes) {
            for (const int steps : {1, 2, 5}) {
              for (const std::int64_t tasks : {1, 3}) {
                ++row;
                FusedMetaGradientConfig c = make_config(rates, second, act, loss, sizes, steps);
                c.input_grads = (row / 2) % 2 == 1;
                const bool shared = tasks == 1 || (row / 4) % 2 == 0;
                per_task_rows += !shared;
                input_grad_rows += c.input_grads;
                CAPTURE(row);
                CAPTURE(static_cast<int>(rates));
                CAPTURE(second);
                const std::string act_name = activation_name(act);
                CAPTURE(act_name);
                CAPTURE(loss == FusedLoss::mse);
                CAPTURE(sizes.size());
                CAPTURE(steps);
                CAPTURE(tasks);
                CAPTURE(shared);
                CAPTURE(c.input_grads);
                const Problem p = make_problem(c, tasks, shared, gen);
                std::vector<Result> want;
                for (std::int64_t t = 0; t < tasks; ++t) want.push_back(tape_reference(p, t));
                const std::vector<Result> got = run_kernel(p, DType::f64, c);
                for (std::int64_t t = 0; t < tasks; ++t) {
                  CAPTURE(t);
                  const Errors e = compare(got[static_cast<std::size_t>(t)], want[static_cast<std::size_t>(t)],
                                           c.input_grads);
                  CAPTURE(e.init);
                  CAPTURE(e.rates);
                  CAPTURE(e.inputs);
                  CAPTURE(e.losses);
                  CAPTURE(e.query_out);
                  CHECK(e.worst() <= 1e-11);
                }
                // Checkpointing replays the same operations: equal to keeping every step.
                if (steps > 1 && row % 3 == 0) {
                  for (const int every : {2, 3}) {
                    CAPTURE(every);
                    FusedMetaGradientConfig cc = c;
                    cc.checkpoint_every = every;
                    const std::vector<Result> again = run_kernel(p, DType::f64, cc);
                    for (std::int64_t t = 0; t < tasks; ++t) {
                      const auto ti = static_cast<std::size_t>(t);
                      CHECK(compare(again[ti], got[ti], c.input_grads).worst() <= 1e-14);
                    }
                  }
                }
                // f32: one row in five, against the same f64 reference.
                if (row % 5 == 0) {
                  ++f32_rows;
                  const std::vector<Result> single = run_kernel(p, DType::f32, c);
                  for (std::int64_t t = 0; t < tasks; ++t) {
                    CAPTURE(t);
                    const auto ti = static_cast<std::size_t>(t);
                    const Errors e = compare(single[ti], want[ti], c.input_grads);
                    CAPTURE(e.init);
                    CAPTURE(e.rates);
                    CAPTURE(e.inputs);
                    CHECK(e.worst() <= 1e-4);
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  CHECK(row == 3 * 2 * 7 * 2 * 3 * 3 * 2);
  CHECK(f32_rows > 200);
  CHECK(per_task_rows > 300);
  CHECK(input_grad_rows > 700);
}

TEST_CASE("fused meta-gradient: the broken variants fail the comparison") {
  Generator gen(1302);
  int row = 0;
  for (const FusedActivation act : all_activations) {
    for (const FusedLoss loss : {FusedLoss::cross_entropy, FusedLoss::mse}) {
      for (const auto& sizes : {all_sizes[0], all_sizes[1]}) {
        for (const int steps : {1, 2}) {
          ++row;
          const std::string act_name = activation_name(act);
          CAPTURE(act_name);
          CAPTURE(loss == FusedLoss::mse);
          CAPTURE(sizes.size());
          CAPTURE(steps);
          // A dropped Hessian term (second order, every rates mode).
          for (const FusedRates rates : {FusedRates::scalar, FusedRates::per_tensor_step, FusedRates::per_parameter}) {
            CAPTURE(static_cast<int>(rates));
            FusedMetaGradientConfig c = make_config(rates, true, act, loss, sizes, steps);
            c.input_grads = row % 2 == 0;
            const Problem p = make_problem(c, 1, true, gen);
            const Result want = tape_reference(p, 0);
            CHECK(compare(run_kernel(p, DType::f64, c)[0], want, c.input_grads).worst() <= 1e-11);
            c.fault = Fault::drop_hessian_term;
            const Errors broken = compare(run_kernel(p, DType::f64, c)[0], want, c.input_grads);
            CAPTURE(broken.init);
            CHECK(broken.init > 1e-3);
            if (rates != FusedRates::scalar) {
              // A dropped rate gradient (second and first order).
              for (const bool second : {true, false}) {
                CAPTURE(second);
                FusedMetaGradientConfig r = make_config(rates, second, act, loss, sizes, steps);
                const Problem q = make_problem(r, 1, true, gen);
                const Result rw = tape_reference(q, 0);
                CHECK(compare(run_kernel(q, DType::f64, r)[0], rw, false).worst() <= 1e-11);
                r.fault = Fault::drop_rate_gradient;
                const Errors e = compare(run_kernel(q, DType::f64, r)[0], rw, false);
                CHECK(e.rates > 1e-3);
                CHECK(e.init <= 1e-11);  // only the rate gradient is broken
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("fused meta-gradient: checkpointed replay over long inner loops, and its sub-linear workspace") {
  Generator gen(1303);
  for (const FusedActivation act : {FusedActivation::tanh, FusedActivation::relu}) {
    FusedMetaGradientConfig c = make_config(FusedRates::per_tensor_step, true, act, FusedLoss::cross_entropy,
                                            all_sizes[1], 16);
    c.lr = 0.05;
    c.input_grads = true;
    for (double& r : c.query_weights) r = f32_round(r);
    const Problem p = make_problem(c, 2, false, gen);
    const std::vector<Result> kept = run_kernel(p, DType::f64, c);
    for (std::int64_t t = 0; t < 2; ++t) {
      CHECK(compare(kept[static_cast<std::size_t>(t)], tape_reference(p, t), true).worst() <= 1e-11);
    }
    for (const int every : {2, 4, 5, 15, 16, 40}) {  // even and uneven segments, one segment, longer than K
      CAPTURE(every);
      FusedMetaGradientConfig cc = c;
      cc.checkpoint_every = every;
      const std::vector<Result> again = run_kernel(p, DType::f64, cc);
      for (std::size_t t = 0; t < 2; ++t) CHECK(compare(again[t], kept[t], true).worst() <= 1e-14);
    }
  }
  // Workspace: every step kept grows by a step's state per step; ceil(sqrt(K)) grows like sqrt(K).
  FusedMetaGradientConfig c = make_config(FusedRates::scalar, true, FusedActivation::tanh, FusedLoss::mse,
                                          {50, 128, 128, 3}, 16);
  auto ws = [&](int steps, int every) {
    FusedMetaGradientConfig x = c;
    x.steps = steps;
    x.checkpoint_every = every;
    return kernels::fused_meta_gradient_workspace(x, 15, 45, Device::cpu);
  };
  // With every = c: theta at ceil(K / c) - 1 checkpoints, c - 1 more steps of the segment and theta_K
  // ((K / c + c) P), and c steps' slots; every = 1 keeps every step (c = K, one segment).
  const std::int64_t P = kernels::fused_param_count(c.sizes);
  const std::int64_t step = ws(17, 1) - ws(16, 1), slot = step - P;
  CHECK(slot > 0);
  CHECK(ws(64, 1) - ws(16, 1) == 48 * step);
  CHECK(ws(16, 16) == ws(16, 1));
  CHECK(ws(16, 4) == ws(16, 1) - (16 - 7) * P - (16 - 4) * slot);
  CHECK(ws(16, 5) == ws(16, 1) - (16 - 8) * P - (16 - 5) * slot);
  CHECK(ws(64, 8) == ws(64, 1) - (64 - 15) * P - (64 - 8) * slot);
  CHECK(ws(64, 8) - ws(16, 4) < (ws(64, 1) - ws(16, 1)) / 4);  // 4x the steps: 8 more P, 48 more without
  // First order keeps no f'' and needs no R buffers; learned rates keep g_s per step.
  FusedMetaGradientConfig first = c;
  first.second_order = false;
  CHECK(kernels::fused_meta_gradient_workspace(first, 15, 45, Device::cpu) < ws(16, 1));
  FusedMetaGradientConfig learned = c;
  learned.rates = FusedRates::per_parameter;
  CHECK(kernels::fused_meta_gradient_workspace(learned, 15, 45, Device::cpu) - ws(16, 1) == 16 * P);
}

bool identical(const Result& a, const Result& b) {
  return a.grad_init == b.grad_init && a.grad_rates == b.grad_rates && a.grad_sx == b.grad_sx &&
         a.grad_qx == b.grad_qx && a.losses == b.losses && a.query_out == b.query_out;
}

TEST_CASE("fused meta-gradient: bit-identical across threads and view addresses, f32 beside f64") {
  Generator gen(1304);
  struct Row {
    std::vector<std::int64_t> sizes;
    FusedLoss loss;
    FusedRates rates;
  };
  // W1- and W2-shaped (a 3-wide output layer, a 1-wide input layer: the loop products).
  for (const Row& row : {Row{{50, 32, 32, 3}, FusedLoss::cross_entropy, FusedRates::scalar},
                         Row{{50, 32, 32, 3}, FusedLoss::cross_entropy, FusedRates::per_tensor_step},
                         Row{{1, 40, 40, 1}, FusedLoss::mse, FusedRates::per_parameter}}) {
    CAPTURE(row.sizes[0]);
    CAPTURE(static_cast<int>(row.rates));
    FusedMetaGradientConfig c = make_config(row.rates, true, FusedActivation::relu, row.loss, row.sizes, 5);
    c.lr = 0.05;
    c.input_grads = true;
    Problem p = make_problem(c, 4, true, gen);
    for (double& r : p.rates) r = f32_round(r / 4);
    for (const DType dtype : {DType::f32, DType::f64}) {
      const std::string dtype_name = kernels::dtype_name(dtype);
      CAPTURE(dtype_name);
      const std::vector<Result> first = run_kernel(p, dtype, c);
      std::vector<std::vector<Result>> threaded(2);
      {
        std::vector<std::thread> pool;
        for (std::size_t k = 0; k < 2; ++k) {
          pool.emplace_back([&, k] { threaded[k] = run_kernel(p, dtype, c, static_cast<int>(k)); });
        }
        for (auto& th : pool) th.join();
      }
      const std::vector<Result> shifted = run_kernel(p, dtype, c, 3);
      for (std::size_t t = 0; t < 4; ++t) {
        CHECK(identical(threaded[0][t], first[t]));
        CHECK(identical(threaded[1][t], first[t]));
        CHECK(identical(shifted[t], first[t]));
        const Result want = tape_reference(p, static_cast<std::int64_t>(t));
        CHECK(compare(first[t], want, true).worst() <= (dtype == DType::f64 ? 1e-11 : 1e-4));
      }
    }
  }
}

namespace {

tasks::TaskBatch tasks_of(const Problem& p) {
  const std::int64_t in = p.config.sizes.front(), out = p.config.sizes.back();
  const bool ce = p.config.loss == FusedLoss::cross_entropy;
  tasks::TaskBatch batch;
  for (std::int64_t t = 0; t < p.tasks; ++t) {
    tasks::Task task;
    task.kind = ce ? tasks::TaskKind::classification : tasks::TaskKind::regression;
    task.num_classes = ce ? out : 0;
    task.support_x = Tensor::from_vector(part(p.sx, t, p.n * in), Shape{p.n, in}, DType::f64);
    task.query_x = Tensor::from_vector(part(p.qx, t, p.m * in), Shape{p.m, in}, DType::f64);
    if (ce) {
      task.support_y = Tensor::indices(std::vector<std::int64_t>(p.sl.begin() + t * p.n, p.sl.begin() + (t + 1) * p.n));
      task.query_y = Tensor::indices(std::vector<std::int64_t>(p.ql.begin() + t * p.m, p.ql.begin() + (t + 1) * p.m));
    } else {
      task.support_y = Tensor::from_vector(part(p.sy, t, p.n * out), Shape{p.n, out}, DType::f64);
      task.query_y = Tensor::from_vector(part(p.qy, t, p.m * out), Shape{p.m, out}, DType::f64);
    }
    batch.push_back(task);
  }
  return batch;
}

nn::ParameterList parameters_of(const nn::Mlp& mlp, const std::vector<double>& flat) {
  nn::ParameterList list;
  std::int64_t at = 0;
  for (std::size_t l = 0; l < mlp.layers(); ++l) {
    const std::int64_t i = mlp.spec().sizes[l], o = mlp.spec().sizes[l + 1];
    for (const Shape& shape : {Shape{o, i}, Shape{o}}) {
      list.add(shape.rank == 2 ? nn::Mlp::weight_name(l) : nn::Mlp::bias_name(l),
               Tensor::from_vector(std::vector<double>(flat.begin() + at, flat.begin() + at + shape.numel()), shape,
                                   DType::f64));
      at += shape.numel();
    }
  }
  return list;
}

// The learner's meta-gradient: one meta_train_step with outer SGD at lr 1, flattened.
std::vector<double> learner_gradient(meta::Learner& learner, const tasks::TaskBatch& batch) {
  const nn::ParameterList before = learner.meta_parameters().clone();
  learner.meta_train_step(batch, {false});
  std::vector<double> g;
  for (std::size_t i = 0; i < before.size(); ++i) {
    const auto b = before[i].to_vector<double>(), a = learner.meta_parameters()[i].to_vector<double>();
    for (std::size_t k = 0; k < a.size(); ++k) g.push_back(b[k] - a[k]);
  }
  return g;
}

std::vector<double> task_mean(const std::vector<Result>& r, std::vector<double> Result::*field) {
  std::vector<double> mean((r[0].*field).size(), 0.0);
  for (const Result& x : r) {
    for (std::size_t i = 0; i < mean.size(); ++i) mean[i] += (x.*field)[i] / static_cast<double>(r.size());
  }
  return mean;
}

std::vector<double> joined(std::vector<double> a, const std::vector<double>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

TEST_CASE("fused meta-gradient: the task mean equals the learners' own meta-gradient (MAML, FOMAML, MAML++, "
          "Meta-SGD, ANIL)") {
  Generator gen(1305);
  const std::vector<std::int64_t> sizes = {3, 6, 5, 4};
  for (const FusedLoss loss : {FusedLoss::cross_entropy, FusedLoss::mse}) {
    CAPTURE(loss == FusedLoss::mse);
    const auto mlp = std::make_shared<nn::Mlp>(nn::MlpSpec{sizes, nn::Activation::tanh, nn::Init::uniform_fan_in,
                                                           DType::f64});
    nn::OptimizerOptions sgd;
    sgd.lr = 1.0;
    const int K = 3;
    const double lr = 0.125;  // exact in f32 and f64: the learners hold it in the rates' dtype
    for (const std::string kind : {"maml", "fomaml", "maml++", "meta-sgd"}) {
      CAPTURE(kind);
      const bool second = kind != "fomaml";
      const FusedRates rates = kind == "maml++"     ? FusedRates::per_tensor_step
                               : kind == "meta-sgd" ? FusedRates::per_parameter
                                                    : FusedRates::scalar;
      FusedMetaGradientConfig c = make_config(rates, second, FusedActivation::tanh, loss, sizes, K);
      c.lr = lr;
      c.query_weights = kind == "maml++" ? std::vector<double>(K, 1.0 / K) : std::vector<double>{};
      Problem p = make_problem(c, 3, true, gen);
      std::fill(p.rates.begin(), p.rates.end(), lr);  // the learners start every rate at inner_lr / alpha_init
      meta::MamlOptions maml;
      maml.inner_steps = K;
      maml.inner_lr = lr;
      maml.first_order = !second;
      maml.multi_step_loss = maml.learn_inner_lrs = kind == "maml++";
      meta::MetaSgdOptions msgd;
      msgd.inner_steps = K;
      msgd.alpha_init = lr;
      const nn::ParameterList init = parameters_of(*mlp, p.init).clone(true);
      auto learner = kind == "meta-sgd" ? meta::make_meta_sgd(mlp, init, nn::make_sgd(sgd), msgd)
                                        : meta::make_maml(mlp, init, nn::make_sgd(sgd), maml);
      const std::vector<double> want = learner_gradient(*learner, tasks_of(p));
      const std::vector<Result> got = run_kernel(p, DType::f64, c);
      CHECK(rel_err(joined(task_mean(got, &Result::grad_init), task_mean(got, &Result::grad_rates)), want) <= 1e-11);
    }
    // ANIL: the kernel adapts the head on the body's features; the body gets the features' gradients.
    FusedMetaGradientConfig c = make_config(FusedRates::scalar, true, FusedActivation::tanh, loss, {5, 4}, K);
    c.lr = lr;
    c.input_grads = true;
    Problem whole = make_problem(make_config(FusedRates::scalar, true, FusedActivation::tanh, loss, sizes, K), 3,
                                 true, gen);
    const nn::ParameterList init = parameters_of(*mlp, whole.init);
    const std::int64_t body = kernels::fused_param_count({3, 6, 5});
    Problem head = whole;
    head.config = c;
    head.P = kernels::fused_param_count(c.sizes);
    head.init.assign(whole.init.begin() + body, whole.init.end());
    head.sx.clear();
    head.qx.clear();
    const tasks::TaskBatch batch = tasks_of(whole);
    std::vector<Tensor> fs, fq;
    for (const tasks::Task& task : batch) {
      NoGradGuard no_grad;
      fs.push_back(mlp->forward_layers(init, task.support_x, 0, 2));
      fq.push_back(mlp->forward_layers(init, task.query_x, 0, 2));
      for (double x : fs.back().to_vector<double>()) head.sx.push_back(x);
      for (double x : fq.back().to_vector<double>()) head.qx.push_back(x);
    }
    const std::vector<Result> got = run_kernel(head, DType::f64, c);
    std::vector<double> body_grad(static_cast<std::size_t>(body), 0.0);
    for (std::size_t t = 0; t < batch.size(); ++t) {
      TapeScope scope;
      nn::ParameterList leaves = init.clone(true);
      const std::vector<Tensor> body_params(leaves.tensors().begin(), leaves.tensors().begin() + 4);
      const Tensor s = mlp->forward_layers(leaves, batch[t].support_x, 0, 2);
      const Tensor q = mlp->forward_layers(leaves, batch[t].query_x, 0, 2);
      const std::vector<Tensor> g =
          grad({s, q}, body_params, {},
               {Tensor::from_vector(got[t].grad_sx, s.shape(), DType::f64),
                Tensor::from_vector(got[t].grad_qx, q.shape(), DType::f64)});
      std::size_t at = 0;
      for (const Tensor& x : g) {
        for (double v : x.to_vector<double>()) body_grad[at++] += v / static_cast<double>(batch.size());
      }
    }
    meta::AnilOptions anil;
    anil.inner_steps = K;
    anil.inner_lr = lr;
    auto learner = meta::make_anil(mlp, init.clone(true), nn::make_sgd(sgd), anil);
    const std::vector<double> want = learner_gradient(*learner, batch);
    CHECK(rel_err(joined(body_grad, task_mean(got, &Result::grad_init)), want) <= 1e-11);
  }
}

TEST_CASE("fused meta-gradient: bad input is refused naming the view or option and the fix") {
  Generator gen(1306);
  FusedMetaGradientConfig c = make_config(FusedRates::scalar, true, FusedActivation::relu, FusedLoss::cross_entropy,
                                          {3, 5, 4}, 2);
  const Problem p = make_problem(c, 2, true, gen);
  const std::int64_t P = p.P;
  const Tensor init = Tensor::from_vector(p.init, Shape{P}, DType::f64);
  const Tensor sx = Tensor::from_vector(p.sx, Shape{2, p.n, 3}, DType::f64);
  const Tensor qx = Tensor::from_vector(p.qx, Shape{2, p.m, 3}, DType::f64);
  Tensor sy = reshape(Tensor::indices(p.sl), Shape{2, p.n});
  const Tensor qy = reshape(Tensor::indices(p.ql), Shape{2, p.m});
  Tensor grad_init = Tensor::empty(Shape{2, P}, DType::f64), losses = Tensor::empty(Shape{2, 2}, DType::f64);
  kernels::FusedMetaGradientViews v;
  v.init = init.view();
  v.support_x = sx.view();
  v.support_y = sy.view();
  v.query_x = qx.view();
  v.query_y = qy.view();
  v.grad_init = grad_init.view();
  v.losses = losses.view();
  kernels::fused_meta_gradient(c, v);  // valid

  auto refused = [&](const FusedMetaGradientConfig& config, const kernels::FusedMetaGradientViews& views,
                     const std::string& what) {
    CAPTURE(what);
    CHECK_THROWS_WITH_AS(kernels::fused_meta_gradient(config, views), doctest::Contains(what.c_str()), Error);
  };
  {
    kernels::FusedMetaGradientViews x = v;
    const Tensor wrong = Tensor::empty(Shape{3, P}, DType::f64);
    x.grad_init = wrong.view();
    refused(c, x, "grad_init must be (2, " + std::to_string(P) + ")");
    const Tensor single = Tensor::empty(Shape{2, P}, DType::f32);
    x.grad_init = single.view();
    refused(c, x, "grad_init is (2, " + std::to_string(P) + ") f32, support_x is f64 (use one float dtype)");
  }
  {
    FusedMetaGradientConfig x = c;
    x.query_weights = {1.0};
    refused(x, v, "query_weights holds 1 weights for 2 steps");
    x = c;
    x.checkpoint_every = 0;
    refused(x, v, "checkpoint_every must be >= 1, got 0");
    x = c;
    x.steps = 0;
    refused(x, v, "steps must be >= 1");
    x = c;
    x.rates = FusedRates::per_parameter;
    refused(x, v, "rates is missing (data == nullptr) with FusedRates::per_parameter");
    x.input_grads = true;
    const Tensor rates = Tensor::full(Shape{P - 1}, 0.1, DType::f64);
    kernels::FusedMetaGradientViews y = v;
    y.rates = rates.view();
    refused(x, y, "rates must be (" + std::to_string(P) + "), one rate per parameter");
  }
  {
    kernels::FusedMetaGradientViews x = v;
    x.rates = init.view();
    refused(c, x, "rates must be empty (data == nullptr) with FusedRates::scalar");
    FusedMetaGradientConfig y = c;
    y.input_grads = true;
    refused(y, v, "grad_support_x is missing");
    x = v;
    x.grad_support_x = sx.view();
    refused(c, x, "only with config.input_grads");
  }
  {  // An output on top of an input or of another output.
    kernels::FusedMetaGradientViews x = v;
    const Tensor both = Tensor::empty(Shape{2, P}, DType::f64);
    kernels::View first = both.view();
    first.shape = Shape{P};
    x.init = first;
    x.grad_init = both.view();
    refused(c, x, "grad_init overlaps the input init (give every output its own memory)");
    x = v;
    kernels::View tail = grad_init.view();
    tail.data = grad_init.data<double>() + P;
    tail.shape = Shape{2, 2};
    x.losses = tail;
    refused(c, x, "losses overlaps the output grad_init");
  }
  {  // Out-of-range labels name the task and row; nothing is written.
    Tensor labels = sy.copy();
    labels.data<std::int64_t>()[p.n + 3] = 4;
    kernels::FusedMetaGradientViews x = v;
    x.support_y = labels.view();
    refused(c, x, "support label 4 of task 1 row 3 is outside [0, 4)");
    kernels::FusedMetaGradientViews y = v;
    y.support_y = qy.view();
    refused(c, y, "cross-entropy support_y must be i64 labels (2, 5)");
  }
  std::string why;
  CHECK(kernels::fused_meta_gradient_supported(c, p.n, p.m, Device::cpu, &why));
  FusedMetaGradientConfig deep = c;
  deep.sizes.assign(9, 3);
  CHECK_FALSE(kernels::fused_meta_gradient_supported(deep, p.n, p.m, Device::cpu, &why));
  CHECK(why.find("fused_meta_gradient: needs 2..8 layer sizes") == 0);
#ifndef METATAPE_WITH_CUDA
  CHECK_FALSE(kernels::fused_meta_gradient_supported(c, p.n, p.m, Device::cuda, &why));
  CHECK(why.find("no CUDA backend") != std::string::npos);
  kernels::FusedMetaGradientViews gpu = v;
  for (kernels::View* view : {&gpu.init, &gpu.support_x, &gpu.support_y, &gpu.query_x, &gpu.query_y, &gpu.grad_init,
                              &gpu.losses}) {
    view->device = Device::cuda;
  }
  refused(c, gpu, "got CUDA views but this build has no CUDA backend");
  CHECK_THROWS_WITH_AS(kernels::fused_meta_gradient_workspace(c, p.n, p.m, Device::cuda),
                       doctest::Contains("no CUDA backend"), Error);
#endif
}

TEST_CASE("fused meta-gradient: a single linear layer, zero query weights, wide and long rows") {
  Generator gen(1307);
  struct Edge {
    std::vector<std::int64_t> sizes;
    std::vector<double> weights;
    std::int64_t n, m;
  };
  for (const Edge& edge : {Edge{{3, 4}, {}, 5, 7},                 // no hidden layer
                           Edge{{3, 5, 4}, {0.7, 0.0, 0.0}, 5, 7},  // w_K = 0: v_K = 0
                           Edge{{3, 5, 4}, {0.0, 0.4, 0.6}, 5, 7},
                           Edge{{2, 7, 3}, {}, 40, 70}}) {          // more rows than a vector's lanes
    for (const FusedRates rates : {FusedRates::scalar, FusedRates::per_tensor_step, FusedRates::per_parameter}) {
      for (const FusedLoss loss : {FusedLoss::cross_entropy, FusedLoss::mse}) {
        for (const bool second : {true, false}) {
          CAPTURE(edge.sizes.size());
          CAPTURE(edge.n);
          CAPTURE(static_cast<int>(rates));
          CAPTURE(loss == FusedLoss::mse);
          CAPTURE(second);
          FusedMetaGradientConfig c = make_config(rates, second, FusedActivation::tanh, loss, edge.sizes, 3);
          c.query_weights = edge.weights;
          c.input_grads = true;
          const Problem p = make_problem(c, 2, true, gen, edge.n, edge.m);
          const std::vector<Result> got = run_kernel(p, DType::f64, c);
          const std::vector<Result> single = run_kernel(p, DType::f32, c);
          for (std::int64_t t = 0; t < 2; ++t) {
            const Result want = tape_reference(p, t);
            const auto ti = static_cast<std::size_t>(t);
            CHECK(compare(got[ti], want, true).worst() <= 1e-11);
            CHECK(compare(single[ti], want, true).worst() <= 1e-4);
          }
        }
      }
    }
  }
}
