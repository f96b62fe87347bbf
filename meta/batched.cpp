// Task-batched meta-steps (meta/batched.h). The per-task loop this must equal lives in
// meta/gradient_learner.cpp (MAML, FOMAML, Meta-SGD, ANIL) and meta/reptile.cpp.
#include "meta/batched.h"

#include <algorithm>
#include <exception>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "autograd/update_ops.h"
#include "kernels/error.h"
#include "kernels/fused_adapt.h"
#include "kernels/kernels.h"
#include "meta/algorithm.h"
#include "meta/fused.h"
#include "meta/registry.h"

namespace metatape::meta {

Tensor expand_tasks(const Tensor& theta, std::int64_t tasks) {
  if (theta.rank() == 2) {
    return expand(reshape(theta, Shape{1, theta.dim(0), theta.dim(1)}), Shape{tasks, theta.dim(0), theta.dim(1)});
  }
  if (theta.rank() == 1) {
    return expand(reshape(theta, Shape{1, 1, theta.dim(0)}), Shape{tasks, 1, theta.dim(0)});
  }
  fail("batched: MLP parameters must be weights (out, in) or biases (out), got " + describe(theta));
}

namespace {

// Values-only concatenation and slicing along `axis` for any dtype (labels are i64, which the
// differentiable concat and slice refuse). Parts share dtype and device.
Tensor join(const std::vector<Tensor>& parts, int axis) {
  Shape shape = parts.front().shape();
  shape[axis] = 0;
  for (const Tensor& p : parts) {
    if (p.dtype() != parts.front().dtype() || p.device() != parts.front().device()) {
      fail("stack_tasks: tasks hold tensors of different dtypes or devices (" + describe(p) + ", " +
           describe(parts.front()) + ")");
    }
    shape[axis] += p.dim(axis);
  }
  Tensor out = Tensor::empty(shape, parts.front().dtype(), parts.front().device());
  std::int64_t at = 0;
  for (const Tensor& p : parts) {
    kernels::copy_axis_block(p.view(), 0, out.view(), at, axis, p.dim(axis));
    at += p.dim(axis);
  }
  return out;
}

Tensor cut(const Tensor& x, int axis, std::int64_t begin, std::int64_t end) {
  Shape shape = x.shape();
  shape[axis] = end - begin;
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  kernels::copy_axis_block(x.view(), begin, out.view(), 0, axis, end - begin);
  return out;
}

// Sum over tasks of a per-task tensor, in theta's shape.
Tensor sum_tasks_as(const Tensor& per_task, const Tensor& theta) { return reshape(sum(per_task, 0), theta.shape()); }

// The batched options as the algorithm's one definition (meta/algorithm.h), for the fused executor.
GradientAlgorithm algorithm_of(const BatchedOptions& o) {
  GradientAlgorithm a;
  a.name = learner_info(o.algorithm).name;
  a.inner_steps = o.inner_steps;
  a.inner_lr = o.inner_lr;
  a.fused = o.fused;
  switch (o.algorithm) {
    case BatchedAlgorithm::maml:
      break;
    case BatchedAlgorithm::fomaml:
      a.first_order = true;
      break;
    case BatchedAlgorithm::meta_sgd:
      a.rates = InnerRates::per_parameter;
      a.alpha_l2 = o.alpha_l2;
      a.first_order = o.first_order;
      break;
    case BatchedAlgorithm::anil:
      a.head_only = true;
      a.first_order = o.first_order;
      break;
    case BatchedAlgorithm::reptile:
      a.fused = false;  // Reptile's pseudo-gradient has no outer loss to differentiate
      break;
  }
  return a;
}

void check_meta(const nn::Mlp& mlp, const nn::ParameterList& meta, const BatchedOptions& o) {
  const std::size_t count = 2 * mlp.layers();
  const std::size_t want = o.algorithm == BatchedAlgorithm::meta_sgd ? 2 * count : count;
  if (meta.size() != want) {
    fail("batched " + learner_info(o.algorithm).name + ": expected " + std::to_string(want) + " meta-parameters for " +
         mlp.describe() + ", got " + std::to_string(meta.size()));
  }
  if (o.inner_steps < 1) {
    fail("batched: inner_steps must be >= 1, got " + std::to_string(o.inner_steps));
  }
  if (o.threads < 1) fail("batched: threads must be >= 1, got " + std::to_string(o.threads));
  if (o.algorithm == BatchedAlgorithm::anil && mlp.layers() < 2) {
    fail("batched anil: the MLP needs at least two layers (a body and a head)");
  }
}

// One thread's meta-gradient over all of `tasks`.
BatchedStep meta_gradient_single(const nn::Mlp& mlp, const nn::ParameterList& meta, const StackedTasks& tasks,
                                 const BatchedOptions& o) {
  GradModeGuard enable(true);  // the step differentiates whatever the caller's grad mode
  const std::size_t layers = mlp.layers(), count = 2 * layers;
  const std::int64_t T = tasks.tasks();
  const double inv = 1.0 / static_cast<double>(T);
  const std::vector<Tensor> theta(meta.tensors().begin(), meta.tensors().begin() + count);
  BatchedStep result;
  result.grads.resize(meta.size());

  if (o.algorithm == BatchedAlgorithm::reptile) {
    StackedTasks inner = tasks;
    if (o.use_query_in_inner) {
      NoGradGuard no_grad;
      inner.support_x = join({tasks.support_x, tasks.query_x}, 1);
      inner.support_y = join({tasks.support_y, tasks.query_y}, 1);
    }
    const std::vector<Tensor> phi = batched_adapt(mlp, theta, inner, o.inner_steps, o.inner_lr, {}, o.fused);
    NoGradGuard no_grad;
    for (std::size_t i = 0; i < count; ++i) {
      result.grads[i] = sub(theta[i].detach(), affine(sum_tasks_as(phi[i], theta[i]), inv, 0.0));
    }
    result.query_loss =
        affine(batched_loss_sum(tasks, batched_forward(mlp, phi, tasks.query_x, 0, layers), tasks.query_y), inv, 0.0);
    return result;
  }

  if (o.algorithm == BatchedAlgorithm::fomaml) {
    // The inner loop has no history (d phi_S / d theta taken as the identity), so it can run fused;
    // the outer gradient is the query-loss gradient at phi_S, summed over tasks (the loss is a mean).
    const std::vector<Tensor> adapted = batched_adapt(mlp, theta, tasks, o.inner_steps, o.inner_lr, {}, o.fused);
    TapeScope scope;
    std::vector<Tensor> leaves;
    for (const Tensor& p : adapted) leaves.push_back(p.detach().requires_grad_());
    const Tensor outer = affine(
        batched_loss_sum(tasks, batched_forward(mlp, leaves, tasks.query_x, 0, layers), tasks.query_y), inv, 0.0);
    const std::vector<Tensor> g = grad({outer}, leaves);
    NoGradGuard no_grad;
    for (std::size_t i = 0; i < count; ++i) result.grads[i] = sum_tasks_as(g[i], theta[i]);
    result.query_loss = outer.detach();
    return result;
  }

  // MAML (second order), Meta-SGD and ANIL: the inner loop on the tape, per-task parameters as one
  // leading dimension.
  // The semantics from the algorithm's one definition (meta/algorithm.h).
  const GradientAlgorithm a = algorithm_of(o);
  const bool meta_sgd = a.rates == InnerRates::per_parameter;
  const bool second = a.second_order(0);
  const std::size_t head_first = a.first_adapted_layer(mlp);
  TapeScope scope;
  const Tensor fs = head_first ? batched_forward(mlp, theta, tasks.support_x, 0, head_first) : tasks.support_x;
  const Tensor fq = head_first ? batched_forward(mlp, theta, tasks.query_x, 0, head_first) : tasks.query_x;
  std::vector<Tensor> phi = theta;
  std::vector<std::size_t> adapted;
  for (std::size_t i = 2 * head_first; i < count; ++i) {
    adapted.push_back(i);
    phi[i] = expand_tasks(theta[i], T);
  }
  GradOptions inner;
  inner.create_graph = second;
  inner.retain_graph = true;
  for (int s = 0; s < o.inner_steps; ++s) {
    const Tensor loss = batched_loss_sum(tasks, batched_forward(mlp, phi, fs, head_first, layers), tasks.support_y);
    std::vector<Tensor> wrt;
    for (std::size_t i : adapted) wrt.push_back(phi[i]);
    const std::vector<Tensor> g = grad({loss}, wrt, inner);
    for (std::size_t k = 0; k < adapted.size(); ++k) {
      const std::size_t i = adapted[k];
      const Tensor gk = second ? g[k] : g[k].detach();
      phi[i] = meta_sgd ? sub(phi[i], mul(gk, meta[count + i])) : inner_update(phi[i], gk, o.inner_lr);
    }
  }
  Tensor outer =
      affine(batched_loss_sum(tasks, batched_forward(mlp, phi, fq, head_first, layers), tasks.query_y), inv, 0.0);
  result.query_loss = outer.detach();
  if (meta_sgd) {
    const std::vector<Tensor> alphas(meta.tensors().begin() + static_cast<std::ptrdiff_t>(count), meta.tensors().end());
    if (const Tensor penalty = alpha_l2_penalty(alphas, o.alpha_l2); penalty.defined()) outer = add(outer, penalty);
  }
  GradOptions outer_options;
  outer_options.allow_unused = true;
  result.grads = grad({outer}, meta.tensors(), outer_options);
  return result;
}

}  // namespace

BatchedAlgorithm parse_batched_algorithm(const std::string& name) {
  if (const LearnerInfo* l = find_learner(name); l && l->batched) return *l->batched;
  fail("batched: unknown algorithm '" + name + "' (choose " + learner_names_text(", ", " or ", batched_learner) + ")");
}

StackedTasks stack_tasks(const tasks::TaskBatch& batch, Device device) {
  if (batch.empty()) fail("stack_tasks: the task batch is empty");
  const tasks::Task& first = batch.front();
  if (first.kind == tasks::TaskKind::portfolio) {
    fail("stack_tasks: portfolio tasks have no batched loss; use the per-task learners");
  }
  auto unsqueeze = [](const Tensor& t) {
    Shape s = Shape::of_rank(t.rank() + 1);
    s[0] = 1;
    for (int i = 0; i < t.rank(); ++i) s[i + 1] = t.dim(i);
    return reshape(t, s);
  };
  std::vector<Tensor> sx, sy, qx, qy;
  for (std::size_t t = 0; t < batch.size(); ++t) {
    const tasks::Task& task = batch[t];
    auto same = [&](const Tensor& a, const Tensor& b, const char* what) {
      if (a.shape() != b.shape() || a.dtype() != b.dtype()) {
        fail("stack_tasks: task " + std::to_string(t) + "'s " + what + " is " + describe(a) + ", task 0's is " +
             describe(b) +
             " (a batched step needs equal shapes; resample or "
             "use the per-task learners)");
      }
    };
    if (task.kind != first.kind || task.num_classes != first.num_classes) {
      fail("stack_tasks: task " + std::to_string(t) + " is of another kind or class count than task 0");
    }
    same(task.support_x, first.support_x, "support_x");
    same(task.support_y, first.support_y, "support_y");
    same(task.query_x, first.query_x, "query_x");
    same(task.query_y, first.query_y, "query_y");
    sx.push_back(unsqueeze(task.support_x.detach()));
    sy.push_back(unsqueeze(task.support_y.detach()));
    qx.push_back(unsqueeze(task.query_x.detach()));
    qy.push_back(unsqueeze(task.query_y.detach()));
  }
  NoGradGuard no_grad;
  StackedTasks s;
  s.support_x = join(sx, 0).to(device);
  s.support_y = join(sy, 0).to(device);
  s.query_x = join(qx, 0).to(device);
  s.query_y = join(qy, 0).to(device);
  s.kind = first.kind;
  s.num_classes = first.num_classes;
  return s;
}

StackedTasks slice_tasks(const StackedTasks& tasks, std::int64_t begin, std::int64_t end) {
  NoGradGuard no_grad;
  StackedTasks s = tasks;
  if (begin < 0 || end > tasks.tasks() || begin >= end) {
    fail("slice_tasks: [" + std::to_string(begin) + ", " + std::to_string(end) +
         ") is not a non-empty range of the batch's " + std::to_string(tasks.tasks()) + " tasks");
  }
  s.support_x = cut(tasks.support_x, 0, begin, end);
  s.support_y = cut(tasks.support_y, 0, begin, end);
  s.query_x = cut(tasks.query_x, 0, begin, end);
  s.query_y = cut(tasks.query_y, 0, begin, end);
  return s;
}

Tensor batched_forward(const nn::Mlp& mlp, const std::vector<Tensor>& params, const Tensor& x, std::size_t first,
                       std::size_t last) {
  const std::size_t layers = mlp.layers();
  if (first > last || last > layers) {
    fail("batched_forward: layer range [" + std::to_string(first) + ", " + std::to_string(last) +
         ") is outside the model's " + std::to_string(layers) + " layers");
  }
  const bool full = params.size() == 2 * layers;
  if (!full && params.size() != 2 * (last - first)) {
    fail("batched_forward: got " + std::to_string(params.size()) + " parameters for layers [" + std::to_string(first) +
         ", " + std::to_string(last) + ") of " + mlp.describe());
  }
  Tensor h = x;
  for (std::size_t l = first; l < last; ++l) {
    const std::size_t at = full ? 2 * l : 2 * (l - first);
    h = linear(h, params[at], params[at + 1]);
    if (l + 1 < layers) h = nn::activate(h, mlp.spec().activation);
  }
  return h;
}

Tensor batched_loss_sum(const StackedTasks& tasks, const Tensor& output, const Tensor& y) {
  const double t = static_cast<double>(output.dim(0));
  if (tasks.kind == tasks::TaskKind::classification) {
    const std::int64_t rows = output.dim(0) * output.dim(1);
    return affine(cross_entropy(reshape(output, Shape{rows, output.dim(2)}), reshape(y, Shape{rows})), t, 0.0);
  }
  return affine(mse(output, y), t, 0.0);
}

Tensor flatten_parameters(const std::vector<Tensor>& params) {
  std::vector<Tensor> flat;
  for (const Tensor& p : params) flat.push_back(reshape(p.detach(), Shape{p.numel()}));
  NoGradGuard no_grad;
  return concat(flat, 0);
}

std::vector<Tensor> unflatten_parameters(const nn::Mlp& mlp, const Tensor& flat) {
  const auto& sizes = mlp.spec().sizes;
  const std::int64_t T = flat.dim(0);
  if (flat.rank() != 2 || flat.dim(1) != kernels::fused_param_count(sizes)) {
    fail("unflatten_parameters: expected (tasks, " + std::to_string(kernels::fused_param_count(sizes)) + ") for " +
         mlp.describe() + ", got " + describe(flat));
  }
  NoGradGuard no_grad;
  std::vector<Tensor> out;
  std::int64_t at = 0;
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
    const std::int64_t in = sizes[l], o = sizes[l + 1];
    out.push_back(reshape(slice(flat, 1, at, at + o * in), Shape{T, o, in}));
    at += o * in;
    out.push_back(reshape(slice(flat, 1, at, at + o), Shape{T, 1, o}));
    at += o;
  }
  return out;
}

std::vector<Tensor> batched_adapt(const nn::Mlp& mlp, const std::vector<Tensor>& params, const StackedTasks& tasks,
                                  int steps, double lr, const std::vector<Tensor>& rates, bool fused) {
  const std::size_t count = 2 * mlp.layers();
  if (params.size() != count) {
    fail("batched_adapt: expected " + std::to_string(count) + " parameters for " + mlp.describe() + ", got " +
         std::to_string(params.size()));
  }
  if (!rates.empty() && rates.size() != count) {
    fail("batched_adapt: expected one rate tensor per parameter (" + std::to_string(count) + "), got " +
         std::to_string(rates.size()));
  }
  if (steps < 0) fail("batched_adapt: steps must be >= 0, got " + std::to_string(steps));
  const std::int64_t T = tasks.tasks();
  const Device device = tasks.support_x.device();
  if (fused && (device == Device::cpu || tasks.support_x.dtype() == DType::f32)) {
    kernels::FusedAdaptConfig c;
    c.sizes = mlp.spec().sizes;
    c.activation = fused_activation_of(mlp.spec().activation);
    c.loss =
        tasks.kind == tasks::TaskKind::classification ? kernels::FusedLoss::cross_entropy : kernels::FusedLoss::mse;
    c.steps = steps;
    c.lr = lr;
    if (kernels::fused_adapt_supported(c, tasks.support_x.dim(1), device)) {
      const Tensor init = flatten_parameters(params);
      const Tensor flat_rates = rates.empty() ? Tensor() : flatten_parameters(rates);
      Tensor adapted = Tensor::empty(Shape{T, init.numel()}, init.dtype(), device);
      kernels::fused_adapt(c, init.view(), flat_rates.defined() ? flat_rates.view() : kernels::View{},
                           tasks.support_x.view(), tasks.support_y.view(), adapted.view(), kernels::View{},
                           kernels::View{});
      return unflatten_parameters(mlp, adapted);
    }
  }
  std::vector<Tensor> phi;
  {
    NoGradGuard no_grad;
    for (const Tensor& p : params) phi.push_back(expand_tasks(p.detach(), T));
  }
  const std::size_t layers = mlp.layers();
  for (int s = 0; s < steps; ++s) {
    std::vector<Tensor> g;
    {
      GradModeGuard enable(true);  // also when called under NoGradGuard
      TapeScope scope;
      for (Tensor& p : phi) p = p.detach().requires_grad_();
      const Tensor loss =
          batched_loss_sum(tasks, batched_forward(mlp, phi, tasks.support_x, 0, layers), tasks.support_y);
      g = grad({loss}, phi);
    }
    NoGradGuard no_grad;
    for (std::size_t i = 0; i < count; ++i) {
      phi[i] =
          rates.empty() ? inner_update(phi[i].detach(), g[i], lr) : sub(phi[i].detach(), mul(g[i], rates[i].detach()));
    }
  }
  for (Tensor& p : phi) p = p.detach();
  return phi;
}

BatchedStep batched_meta_gradient(const nn::Mlp& mlp, const nn::ParameterList& meta, const StackedTasks& tasks,
                                  const BatchedOptions& options) {
  check_meta(mlp, meta, options);
  if (options.chunk < 0) fail("batched: chunk must be >= 0, got " + std::to_string(options.chunk));
  if (const GradientAlgorithm a = algorithm_of(options); fused_meta_gradient_supported(a, mlp, tasks)) {
    FusedStep step = fused_meta_gradient(a, 0, mlp, meta, tasks, options.threads);
    return BatchedStep{std::move(step.grads), step.query_loss};
  }
  const std::int64_t T = tasks.tasks();
  const bool cpu = tasks.support_x.device() == Device::cpu;
  std::int64_t chunk = options.chunk;
  if (chunk == 0 && !cpu) chunk = T;
  if (chunk == 0) {
    // Per-task bytes: the parameters plus one activation row set of the support and query rows.
    const auto& sizes = mlp.spec().sizes;
    std::int64_t widths = 0;
    for (auto s : sizes) widths += s;
    const std::int64_t rows = tasks.support_x.dim(1) + tasks.query_x.dim(1);
    const auto per_task = static_cast<std::size_t>(kernels::fused_param_count(sizes) + rows * widths) *
                          kernels::dtype_size(tasks.support_x.dtype());
    chunk = std::max<std::int64_t>(1, static_cast<std::int64_t>(cpu_chunk_bytes / per_task));
  }
  const std::int64_t chunks = (T + chunk - 1) / chunk;
  if (chunks <= 1) {
    // Own leaf handles: the caller's parameters need not require grad and keep no state from here.
    nn::ParameterList local = meta.detached();
    local.requires_grad_();
    return meta_gradient_single(mlp, local, tasks, options);
  }
  const int threads = cpu ? static_cast<int>(std::min<std::int64_t>(options.threads, chunks)) : 1;

  // Thread k runs chunks k, k + threads, ... and sums their results weighted by T_chunk / T. Each
  // thread other than the caller uses its own detached leaf handles (the tape and the leaves'
  // autograd state are per thread).
  std::vector<BatchedStep> parts(static_cast<std::size_t>(threads));
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(threads));
  auto work = [&](int k) {
    try {
      nn::ParameterList local = meta.detached();
      local.requires_grad_();
      BatchedStep& sum_k = parts[static_cast<std::size_t>(k)];
      sum_k.grads.resize(meta.size());
      for (std::int64_t c = k; c < chunks; c += threads) {
        const std::int64_t begin = c * chunk, end = std::min(T, begin + chunk);
        const BatchedStep part = meta_gradient_single(mlp, local, slice_tasks(tasks, begin, end), options);
        NoGradGuard no_grad;
        const double w = static_cast<double>(end - begin) / static_cast<double>(T);
        for (std::size_t i = 0; i < meta.size(); ++i) {
          if (!part.grads[i].defined()) continue;
          const Tensor scaled = affine(part.grads[i], w, 0.0);
          sum_k.grads[i] = sum_k.grads[i].defined() ? add(sum_k.grads[i], scaled) : scaled;
        }
        const Tensor q = affine(part.query_loss, w, 0.0);
        sum_k.query_loss = sum_k.query_loss.defined() ? add(sum_k.query_loss, q) : q;
      }
    } catch (...) {
      errors[static_cast<std::size_t>(k)] = std::current_exception();
    }
  };
  {
    std::vector<std::thread> pool;
    for (int k = 1; k < threads; ++k) pool.emplace_back(work, k);
    work(0);
    for (auto& t : pool) t.join();
  }
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  NoGradGuard no_grad;
  BatchedStep total = std::move(parts[0]);
  for (std::size_t k = 1; k < parts.size(); ++k) {
    for (std::size_t i = 0; i < meta.size(); ++i) {
      const Tensor& g = parts[k].grads[i];
      if (!g.defined()) continue;
      total.grads[i] = total.grads[i].defined() ? add(total.grads[i], g) : g;
    }
    total.query_loss = add(total.query_loss, parts[k].query_loss);
  }
  return total;
}

namespace {

class BatchedLearner final : public Learner {
 public:
  BatchedLearner(std::string kind, std::shared_ptr<const nn::Mlp> model, nn::ParameterList init,
                 std::unique_ptr<nn::Optimizer> outer, const LearnerOptions& lo, BatchedOptions bo)
      : kind_(std::move(kind)), model_(std::move(model)), optimizer_(std::move(outer)), options_(lo), batched_(bo) {
    if (!model_) fail("batched " + kind_ + ": no model given");
    if (!optimizer_) fail("batched " + kind_ + ": no outer optimizer given");
    batched_.algorithm = parse_batched_algorithm(kind_);
    const bool recompute = (batched_.algorithm == BatchedAlgorithm::maml && lo.maml.recompute_inner) ||
                           (batched_.algorithm == BatchedAlgorithm::fomaml && lo.maml.recompute_inner) ||
                           (batched_.algorithm == BatchedAlgorithm::meta_sgd && lo.meta_sgd.recompute_inner) ||
                           (batched_.algorithm == BatchedAlgorithm::anil && lo.anil.recompute_inner);
    if (recompute) {
      fail("batched " + kind_ +
           ": recompute_inner (checkpointing over inner steps) has no batched path; "
           "use make_learner, or turn recompute_inner off");
    }
    switch (batched_.algorithm) {
      case BatchedAlgorithm::maml:
      case BatchedAlgorithm::fomaml:
        if (lo.maml.multi_step_loss || lo.maml.learn_inner_lrs || lo.maml.first_order_until > 0) {
          fail("batched " + kind_ + ": the MAML++ options have no batched path; use make_learner");
        }
        batched_.inner_steps = lo.maml.inner_steps;
        batched_.inner_lr = lo.maml.inner_lr;
        batched_.fused = batched_.fused && lo.maml.fused;
        break;
      case BatchedAlgorithm::meta_sgd:
        batched_.inner_steps = lo.meta_sgd.inner_steps;
        batched_.first_order = lo.meta_sgd.first_order;
        batched_.alpha_l2 = lo.meta_sgd.alpha_l2;
        batched_.fused = batched_.fused && lo.meta_sgd.fused;
        break;
      case BatchedAlgorithm::reptile:
        if (lo.reptile.inner_adam) fail("batched reptile: inner Adam has no batched path; use make_learner");
        batched_.inner_steps = lo.reptile.inner_steps;
        batched_.inner_lr = lo.reptile.inner_lr;
        batched_.use_query_in_inner = lo.reptile.use_query_in_inner;
        break;
      case BatchedAlgorithm::anil:
        batched_.inner_steps = lo.anil.inner_steps;
        batched_.inner_lr = lo.anil.inner_lr;
        batched_.first_order = lo.anil.first_order;
        batched_.fused = batched_.fused && lo.anil.fused;
        break;
    }
    if (init.size() != 2 * model_->layers()) {
      fail("batched " + kind_ + ": expected the MLP's " + std::to_string(2 * model_->layers()) + " parameters, got " +
           std::to_string(init.size()));
    }
    count_ = init.size();
    meta_ = init;
    meta_.requires_grad_();
    if (batched_.algorithm == BatchedAlgorithm::meta_sgd) {
      for (std::size_t i = 0; i < count_; ++i) {
        meta_.add(
            "alpha." + init.name(i),
            Tensor::full(init[i].shape(), lo.meta_sgd.alpha_init, init[i].dtype(), init[i].device()).requires_grad_());
      }
    }
    check_meta(*model_, meta_, batched_);
  }

  std::string name() const override { return kind_; }
  int default_adapt_steps() const override { return batched_.inner_steps; }
  nn::ParameterList& meta_parameters() override { return meta_; }
  nn::Optimizer& optimizer() override { return *optimizer_; }
  std::string config_json() const override {
    return nlohmann::json{{"batched", true},
                          {"inner_steps", batched_.inner_steps},
                          {"inner_lr", batched_.inner_lr},
                          {"first_order", batched_.first_order},
                          {"alpha_l2", batched_.alpha_l2},
                          {"use_query_in_inner", batched_.use_query_in_inner},
                          {"fused", batched_.fused},
                          {"threads", batched_.threads},
                          {"model", model_->describe()}}
        .dump();
  }

  MetaGradient meta_gradient(const tasks::TaskBatch& batch, const StepOptions& options) override {
    if (batch.empty()) fail("batched " + kind_ + ": meta_gradient got an empty task batch");
    const StackedTasks tasks = stack_tasks(batch, meta_[0].device());
    BatchedStep step = batched_meta_gradient(*model_, meta_, tasks, batched_);
    MetaGradient out;
    for (std::size_t i = 0; i < meta_.size(); ++i) {
      if (!step.grads[i].defined()) step.grads[i] = Tensor::zeros(meta_[i].shape(), meta_[i].dtype(), meta_[i].device());
    }
    if (options.metrics) {
      out.metrics = metrics(tasks, step);
      NoGradGuard no_grad;
      out.metrics.grad_norm = nn::global_norm(step.grads).item();
    }
    out.metrics.step = meta_steps_;
    out.grads = std::move(step.grads);
    return out;
  }

  void prepare_outer_step() override {
    if (batched_.algorithm == BatchedAlgorithm::reptile) optimizer_->set_lr(reptile_epsilon(options_.reptile, meta_steps_));
  }

  nn::ParameterList adapt(const tasks::Task& task, int steps) override {
    const StackedTasks one = stack_tasks({task}, meta_[0].device());
    const int s = steps < 0 ? batched_.inner_steps : steps;
    const std::vector<Tensor> adapted = adapt_all(one, s);
    std::vector<Tensor> out;
    NoGradGuard no_grad;
    for (std::size_t i = 0; i < count_; ++i) out.push_back(reshape(adapted[i], meta_[i].shape()).copy());
    nn::ParameterList layout;
    for (std::size_t i = 0; i < count_; ++i) layout.add(meta_.name(i), out[i]);
    return layout;
  }

  Tensor predict(const nn::ParameterList& adapted, const Tensor& x) override { return model_->forward(adapted, x); }

 private:
  std::vector<Tensor> theta() const {
    std::vector<Tensor> t;
    for (std::size_t i = 0; i < count_; ++i) t.push_back(meta_[i].detach());
    return t;
  }

  // Per-task adapted parameters of every task (no history): the fused kernel or the tape; ANIL
  // adapts its head only.
  std::vector<Tensor> adapt_all(const StackedTasks& tasks, int steps) {
    std::vector<Tensor> rates;
    if (batched_.algorithm == BatchedAlgorithm::meta_sgd) {
      for (std::size_t i = count_; i < meta_.size(); ++i) rates.push_back(meta_[i].detach());
    }
    if (batched_.algorithm != BatchedAlgorithm::anil) {
      return batched_adapt(*model_, theta(), tasks, steps, batched_.inner_lr, rates, batched_.fused);
    }
    const std::size_t layers = model_->layers(), head = layers - 1;
    std::vector<Tensor> phi = theta();
    Tensor fs;
    {
      NoGradGuard no_grad;
      fs = batched_forward(*model_, phi, tasks.support_x, 0, head);
      for (std::size_t i = 2 * head; i < count_; ++i) phi[i] = expand_tasks(phi[i], tasks.tasks());
    }
    for (int s = 0; s < steps; ++s) {
      std::vector<Tensor> g;
      {
        GradModeGuard enable(true);  // also when called under NoGradGuard (metrics)
        TapeScope scope;
        std::vector<Tensor> wrt;
        for (std::size_t i = 2 * head; i < count_; ++i) wrt.push_back(phi[i] = phi[i].detach().requires_grad_());
        g = grad({batched_loss_sum(tasks, batched_forward(*model_, phi, fs, head, layers), tasks.support_y)}, wrt);
      }
      NoGradGuard no_grad;
      for (std::size_t i = 2 * head; i < count_; ++i) {
        phi[i] = inner_update(phi[i].detach(), g[i - 2 * head], batched_.inner_lr);
      }
    }
    for (std::size_t i = 0; i < 2 * head; ++i) phi[i] = expand_tasks(phi[i], tasks.tasks());
    for (Tensor& p : phi) p = p.detach();
    return phi;
  }

  StepMetrics metrics(const StackedTasks& tasks, const BatchedStep& step) {
    NoGradGuard no_grad;
    StepMetrics m;
    m.computed = true;
    const double inv = 1.0 / static_cast<double>(tasks.tasks());
    const std::size_t layers = model_->layers();
    m.support_loss =
        batched_loss_sum(tasks, batched_forward(*model_, theta(), tasks.support_x, 0, layers), tasks.support_y).item() *
        inv;
    m.query_loss = step.query_loss.item();
    if (tasks.kind == tasks::TaskKind::classification) {
      const std::vector<Tensor> phi = adapt_all(tasks, batched_.inner_steps);
      const Tensor out = batched_forward(*model_, phi, tasks.query_x, 0, layers);
      const std::int64_t rows = out.dim(0) * out.dim(1);
      m.query_accuracy = accuracy(reshape(out, Shape{rows, out.dim(2)}), reshape(tasks.query_y, Shape{rows}));
    }
    return m;
  }

  std::string kind_;
  std::shared_ptr<const nn::Mlp> model_;
  std::unique_ptr<nn::Optimizer> optimizer_;
  LearnerOptions options_;
  BatchedOptions batched_;
  nn::ParameterList meta_;
  std::size_t count_ = 0;
};

}  // namespace

std::unique_ptr<Learner> make_batched_learner(const std::string& kind, std::shared_ptr<const nn::Mlp> model,
                                              nn::ParameterList init, std::unique_ptr<nn::Optimizer> outer,
                                              const LearnerOptions& options, BatchedOptions batched) {
  return std::make_unique<BatchedLearner>(kind, std::move(model), std::move(init), std::move(outer), options, batched);
}

}  // namespace metatape::meta
