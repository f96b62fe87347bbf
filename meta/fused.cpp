// The fused executor (meta/fused.h): configuration from the algorithm's one definition
// (meta/algorithm.h), the kernel calls, and the reductions over tasks.
#include "meta/fused.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <thread>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "kernels/error.h"
#include "kernels/fused_meta_gradient.h"

namespace metatape::meta {
namespace {

std::vector<std::int64_t> adapted_sizes(const GradientAlgorithm& a, const nn::Mlp& mlp) {
  const auto& all = mlp.spec().sizes;
  return {all.begin() + static_cast<std::ptrdiff_t>(a.first_adapted_layer(mlp)), all.end()};
}

kernels::FusedMetaGradientConfig config_for(const GradientAlgorithm& a, std::int64_t meta_steps, const nn::Mlp& mlp,
                                            tasks::TaskKind kind) {
  kernels::FusedMetaGradientConfig c;
  c.sizes = adapted_sizes(a, mlp);
  c.activation = fused_activation_of(mlp.spec().activation);
  c.loss = kind == tasks::TaskKind::classification ? kernels::FusedLoss::cross_entropy : kernels::FusedLoss::mse;
  c.steps = a.inner_steps;
  c.second_order = a.second_order(meta_steps);
  switch (a.rates) {
    case InnerRates::fixed:
      c.rates = kernels::FusedRates::scalar;
      break;
    case InnerRates::per_layer_step:
      c.rates = kernels::FusedRates::per_tensor_step;
      break;
    case InnerRates::per_parameter:
      c.rates = kernels::FusedRates::per_parameter;
      break;
  }
  c.lr = a.inner_lr;
  c.query_weights = a.query_weights(meta_steps);
  c.checkpoint_every = a.checkpoint_every();
  c.input_grads = a.head_only;
  return c;
}

// The checks both overloads share, once the rows per task and the task's widths are known: the
// input features and the outputs (classes, or regression targets) must fit the model, else the tape
// path runs and reports the mismatch in the model's terms.
bool supported_rows(const GradientAlgorithm& a, const nn::Mlp& mlp, tasks::TaskKind kind, std::int64_t n,
                    std::int64_t m, std::int64_t features, std::int64_t outputs, DType dtype, Device device,
                    std::string* why) {
  auto no = [&](const std::string& reason) {
    if (why) *why = "fused meta-gradient: " + reason;
    return false;
  };
  if (!a.fused) return no("off (the fused option is false)");
  if (kind == tasks::TaskKind::portfolio) return no("portfolio tasks have no fused loss (the tape path runs them)");
  if (features != mlp.in_features() || outputs != mlp.out_features()) {
    return no("the tasks have " + std::to_string(features) + " features and " + std::to_string(outputs) +
              " outputs, the model " + mlp.describe() + " takes " + std::to_string(mlp.in_features()) + " and gives " +
              std::to_string(mlp.out_features()));
  }
  if (a.head_only && mlp.head_parameter_start() == 0) return no("no layer adapts");
  if (device == Device::cuda && dtype != DType::f32) {
    return no("the CUDA kernel runs in f32, the model is " + std::string(kernels::dtype_name(dtype)));
  }
  return kernels::fused_meta_gradient_supported(config_for(a, 0, mlp, kind), n, m, device, why);
}

// Rows [begin, end) of a view along its leading axis (contiguous).
kernels::View rows(const kernels::View& v, std::int64_t begin, std::int64_t end) {
  if (v.data == nullptr) return v;
  kernels::View out = v;
  const std::int64_t per_row = v.shape.numel() / v.shape[0];
  out.shape[0] = end - begin;
  out.data = static_cast<char*>(v.data) + begin * per_row * static_cast<std::int64_t>(kernels::dtype_size(v.dtype));
  return out;
}

kernels::View view_or_null(const Tensor& t) { return t.defined() ? t.view() : kernels::View{}; }

// The mean over tasks of a (T, N) tensor, cut into the shapes of `like` (their numels sum to N).
std::vector<Tensor> mean_split(const Tensor& per_task, const std::vector<Tensor>& like) {
  const Tensor mean_row = mean(per_task, 0);  // one reduction, in a fixed order (deterministic)
  std::vector<Tensor> out;
  std::int64_t at = 0;
  for (const Tensor& l : like) {
    out.push_back(mean_row.piece(at, l.shape()));  // views of the one reduced row, no copies
    at += l.numel();
  }
  return out;
}

}  // namespace

kernels::FusedActivation fused_activation_of(nn::Activation activation) {
  switch (activation) {
    case nn::Activation::relu:
      return kernels::FusedActivation::relu;
    case nn::Activation::tanh:
      return kernels::FusedActivation::tanh;
    case nn::Activation::sigmoid:
      return kernels::FusedActivation::sigmoid;
    case nn::Activation::gelu:
      return kernels::FusedActivation::gelu;
    case nn::Activation::leaky_relu:
      return kernels::FusedActivation::leaky_relu;
    case nn::Activation::elu:
      return kernels::FusedActivation::elu;
    case nn::Activation::none:
      return kernels::FusedActivation::none;
  }
  fail("fused: unknown activation");
}

bool fused_meta_gradient_supported(const GradientAlgorithm& a, const nn::Model& model, const tasks::TaskBatch& batch,
                                   std::string* why) {
  const auto* mlp = dynamic_cast<const nn::Mlp*>(&model);
  if (mlp == nullptr) {
    if (why) *why = "fused meta-gradient: the model (" + model.describe() + ") is not an MLP";
    return false;
  }
  if (batch.empty()) {
    if (why) *why = "fused meta-gradient: the task batch is empty";
    return false;
  }
  const tasks::Task& first = batch.front();
  for (std::size_t t = 1; t < batch.size(); ++t) {
    const tasks::Task& task = batch[t];
    if (task.kind != first.kind || task.support_x.shape() != first.support_x.shape() ||
        task.support_y.shape() != first.support_y.shape() || task.query_x.shape() != first.query_x.shape() ||
        task.query_y.shape() != first.query_y.shape() || task.support_x.dtype() != first.support_x.dtype()) {
      if (why) {
        *why = "fused meta-gradient: task " + std::to_string(t) + " (support " + describe(task.support_x) +
               ", query " + describe(task.query_x) + ") differs in kind or shape from task 0 (support " +
               describe(first.support_x) + ", query " + describe(first.query_x) + ")";
      }
      return false;
    }
  }
  if (first.support_x.rank() != 2 || first.query_x.rank() != 2) {
    if (why) *why = "fused meta-gradient: task inputs must be (rows, features), got " + describe(first.support_x);
    return false;
  }
  const std::int64_t outputs = first.kind == tasks::TaskKind::classification ? first.num_classes
                                : first.support_y.rank() == 2                ? first.support_y.dim(1)
                                                                             : -1;
  return supported_rows(a, *mlp, first.kind, first.support_x.dim(0), first.query_x.dim(0), first.support_x.dim(1),
                        outputs, first.support_x.dtype(), first.support_x.device(), why);
}

bool fused_meta_gradient_supported(const GradientAlgorithm& a, const nn::Mlp& mlp, const StackedTasks& tasks,
                                   std::string* why) {
  const std::int64_t outputs = tasks.kind == tasks::TaskKind::classification ? tasks.num_classes
                                : tasks.support_y.rank() == 3                ? tasks.support_y.dim(2)
                                                                             : -1;
  return supported_rows(a, mlp, tasks.kind, tasks.support_x.dim(1), tasks.query_x.dim(1), tasks.support_x.dim(2),
                        outputs, tasks.support_x.dtype(), tasks.support_x.device(), why);
}

FusedStep fused_meta_gradient(const GradientAlgorithm& a, std::int64_t meta_steps, const nn::Mlp& mlp,
                              const nn::ParameterList& meta, const StackedTasks& tasks, int threads,
                              const TaskRowGather& gather) {
  std::string why;
  if (!fused_meta_gradient_supported(a, mlp, tasks, &why)) fail(why);
  if (threads < 1) fail("fused meta-gradient: threads must be >= 1, got " + std::to_string(threads));
  const std::size_t count = 2 * mlp.layers(), body = 2 * a.first_adapted_layer(mlp);
  const std::size_t rate_count = (count - body) * static_cast<std::size_t>(a.rates_per_tensor());
  if (meta.size() != count + rate_count) {
    fail("fused meta-gradient: expected " + std::to_string(count + rate_count) + " meta-parameters (" +
         std::to_string(count) + " of " + mlp.describe() + " and " + std::to_string(rate_count) +
         " learned rates), got " + std::to_string(meta.size()));
  }
  GradModeGuard enable(true);  // ANIL's body runs on the tape, whatever the caller's grad mode
  TapeScope scope;
  const kernels::FusedMetaGradientConfig config = config_for(a, meta_steps, mlp, tasks.kind);
  const std::int64_t T = tasks.tasks(), n = tasks.support_x.dim(1), m = tasks.query_x.dim(1);
  const DType dtype = tasks.support_x.dtype();
  const Device device = tasks.support_x.device();

  std::vector<Tensor> body_leaves;
  Tensor fs = tasks.support_x, fq = tasks.query_x;
  if (body > 0) {
    // Per-task copies of the body's parameters (T, ...), so its backward below gives one gradient per
    // task: rows to gather and average like the head's (meta/task_rows.h), whatever the process count.
    for (std::size_t i = 0; i < body; ++i) {
      NoGradGuard no_grad;
      body_leaves.push_back(expand_tasks(meta[i].detach(), T).copy().requires_grad_());
    }
    fs = batched_forward(mlp, body_leaves, tasks.support_x, 0, a.first_adapted_layer(mlp));
    fq = batched_forward(mlp, body_leaves, tasks.query_x, 0, a.first_adapted_layer(mlp));
  }
  const std::vector<Tensor> head(meta.tensors().begin() + static_cast<std::ptrdiff_t>(body),
                                 meta.tensors().begin() + static_cast<std::ptrdiff_t>(count));
  const std::vector<Tensor> rates(meta.tensors().begin() + static_cast<std::ptrdiff_t>(count), meta.tensors().end());
  Tensor init, flat_rates, grad_init, grad_rates, grad_fs, grad_fq, losses, query_out, workspace;
  {
    NoGradGuard no_grad;
    init = flatten_parameters(head);
    if (!rates.empty()) flat_rates = flatten_parameters(rates);
    const std::int64_t P = init.numel();
    grad_init = Tensor::empty(Shape{T, P}, dtype, device);
    if (flat_rates.defined()) grad_rates = Tensor::empty(Shape{T, flat_rates.numel()}, dtype, device);
    if (config.input_grads) {
      grad_fs = Tensor::empty(fs.shape(), dtype, device);
      grad_fq = Tensor::empty(fq.shape(), dtype, device);
    }
    losses = Tensor::empty(Shape{T, 2}, dtype, device);
    query_out = Tensor::empty(Shape{T, m, config.sizes.back()}, dtype, device);
    if (device == Device::cuda) {
      workspace = Tensor::empty(Shape{T, kernels::fused_meta_gradient_workspace(config, n, m, device)}, dtype, device);
    }
  }
  const Tensor fs_value = fs.detach(), fq_value = fq.detach();
  auto run = [&](std::int64_t begin, std::int64_t end) {
    kernels::FusedMetaGradientViews v;
    v.init = init.view();
    v.rates = view_or_null(flat_rates);
    v.support_x = rows(fs_value.view(), begin, end);
    v.support_y = rows(tasks.support_y.view(), begin, end);
    v.query_x = rows(fq_value.view(), begin, end);
    v.query_y = rows(tasks.query_y.view(), begin, end);
    v.grad_init = rows(grad_init.view(), begin, end);
    v.grad_rates = rows(view_or_null(grad_rates), begin, end);
    v.grad_support_x = rows(view_or_null(grad_fs), begin, end);
    v.grad_query_x = rows(view_or_null(grad_fq), begin, end);
    v.losses = rows(losses.view(), begin, end);
    v.query_out = rows(query_out.view(), begin, end);
    v.workspace = rows(view_or_null(workspace), begin, end);
    kernels::fused_meta_gradient(config, v);
  };
  const int parts = device == Device::cpu ? static_cast<int>(std::min<std::int64_t>(threads, T)) : 1;
  if (parts <= 1) {
    run(0, T);
  } else {  // contiguous shares of the tasks; each writes its own rows, so the result is the same
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(parts));
    std::vector<std::thread> pool;
    auto share = [&](int k) {
      try {
        run(T * k / parts, T * (k + 1) / parts);
      } catch (...) {
        errors[static_cast<std::size_t>(k)] = std::current_exception();
      }
    };
    for (int k = 1; k < parts; ++k) pool.emplace_back(share, k);
    share(0);
    for (auto& t : pool) t.join();
    for (const auto& e : errors) {
      if (e) std::rethrow_exception(e);
    }
  }

  FusedStep out;
  out.grads.resize(meta.size());
  {
    NoGradGuard no_grad;
    auto whole_batch = [&](const Tensor& rows) { return gather ? gather(rows) : rows; };
    const std::vector<Tensor> g_head = mean_split(whole_batch(grad_init), head);
    for (std::size_t i = 0; i < g_head.size(); ++i) out.grads[body + i] = g_head[i];
    if (grad_rates.defined()) {
      const std::vector<Tensor> g_rates = mean_split(whole_batch(grad_rates), rates);
      for (std::size_t i = 0; i < g_rates.size(); ++i) out.grads[count + i] = g_rates[i];
    }
    const std::vector<Tensor> loss_means =
        mean_split(whole_batch(losses), {Tensor::scalar(0.0), Tensor::scalar(0.0)});
    out.support_loss = loss_means[0];
    out.query_loss = loss_means[1];
    out.query_out = query_out;
  }
  if (body > 0) {  // the features' gradients, through the body (the tape), one row per task
    GradOptions options;
    options.allow_unused = true;
    const std::vector<Tensor> g = grad({fs, fq}, body_leaves, options, {grad_fs, grad_fq});
    NoGradGuard no_grad;
    std::vector<Tensor> per_task;
    for (std::size_t i = 0; i < body; ++i) {
      const Tensor gi = g[i].defined() ? g[i] : Tensor::zeros(body_leaves[i].shape(), dtype, device);
      per_task.push_back(reshape(gi, Shape{T, meta[i].numel()}));
    }
    const Tensor rows = concat(per_task, 1);
    const std::vector<Tensor> body_params(meta.tensors().begin(),
                                          meta.tensors().begin() + static_cast<std::ptrdiff_t>(body));
    const std::vector<Tensor> g_body = mean_split(gather ? gather(rows) : rows, body_params);
    for (std::size_t i = 0; i < body; ++i) out.grads[i] = g_body[i];
  }
  if (a.rates == InnerRates::per_parameter) {  // Meta-SGD's penalty, from its one definition
    std::vector<Tensor> alphas;
    for (const Tensor& r : rates) alphas.push_back(r.detach().requires_grad_());
    if (const Tensor penalty = alpha_l2_penalty(alphas, a.alpha_l2); penalty.defined()) {
      const std::vector<Tensor> g = grad({penalty}, alphas);
      NoGradGuard no_grad;
      for (std::size_t i = 0; i < g.size(); ++i) out.grads[count + i] = add(out.grads[count + i], g[i]);
    }
  }
  return out;
}

}  // namespace metatape::meta
