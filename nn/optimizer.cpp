// Updates run as ops under NoGradGuard (so they work on any device) and are written into the
// parameter and state tensors in place with assign(). The formulas follow PyTorch's (torch.optim.SGD,
// Adam, AdamW) operation for operation, so results agree to rounding.
#include "nn/optimizer.h"

#include <cmath>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "kernels/error.h"

namespace metatape::nn {

double LrSchedule::lr_at(double base_lr, std::int64_t step) const {
  if (warmup_steps > 0 && step < warmup_steps) {
    return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  }
  const std::int64_t t = step - warmup_steps;
  switch (kind) {
    case Kind::constant:
      return base_lr;
    case Kind::step:
      return base_lr * std::pow(gamma, static_cast<double>(t / std::max<std::int64_t>(1, step_size)));
    case Kind::cosine: {
      if (total_steps <= 0) return base_lr;
      const double p = std::min(1.0, static_cast<double>(t) / static_cast<double>(total_steps));
      return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + std::cos(M_PI * p));
    }
  }
  return base_lr;
}

Tensor global_norm(const std::vector<Tensor>& tensors) {
  Tensor total;
  for (const auto& t : tensors) {
    if (!t.defined()) continue;
    Tensor s = sum(square(t.dtype() == DType::f64 ? t : t.to(DType::f64)));
    total = total.defined() ? add(total, s) : s;
  }
  if (!total.defined()) return Tensor::scalar(0.0, DType::f64);
  return sqrt(total);
}

std::vector<Tensor> clip_by_global_norm(const std::vector<Tensor>& grads, double max_norm) {
  if (!(max_norm > 0.0)) fail("clip_by_global_norm: max_norm must be positive, got " + std::to_string(max_norm));
  const Tensor norm = global_norm(grads);
  const Tensor coef = clamp(div(Tensor::scalar(max_norm, DType::f64), affine(norm, 1.0, 1e-6)), 0.0, 1.0);
  std::vector<Tensor> out;
  out.reserve(grads.size());
  for (const auto& g : grads) {
    if (!g.defined()) {
      out.push_back(g);
      continue;
    }
    out.push_back(mul(g, g.dtype() == DType::f64 ? coef : coef.to(g.dtype())));
  }
  return out;
}

Optimizer::Optimizer(OptimizerOptions options) : options_(std::move(options)) {
  if (!(options_.lr >= 0.0)) fail("optimizer: lr must be >= 0, got " + std::to_string(options_.lr));
  if (options_.accumulation_steps < 1) {
    fail("optimizer: accumulation_steps must be >= 1, got " + std::to_string(options_.accumulation_steps));
  }
  if (options_.clip_norm < 0.0) fail("optimizer: clip_norm must be >= 0 (0 = off)");
}

bool Optimizer::step(ParameterList& params, const std::vector<Tensor>& grads_in) {
  if (grads_in.size() != params.size()) {
    fail(name() + ": step got " + std::to_string(grads_in.size()) + " gradients for " + std::to_string(params.size()) +
         " parameters");
  }
  NoGradGuard no_grad;
  std::vector<Tensor> grads(grads_in.size());
  for (std::size_t i = 0; i < grads_in.size(); ++i) {
    const Tensor& p = params[i];
    if (!grads_in[i].defined()) {
      grads[i] = Tensor::zeros(p.shape(), p.dtype(), p.device());
      continue;
    }
    if (grads_in[i].shape() != p.shape() || grads_in[i].dtype() != p.dtype()) {
      fail(name() + ": gradient " + describe(grads_in[i]) + " does not match parameter '" + params.name(i) + "' " +
           describe(p));
    }
    grads[i] = grads_in[i].detach();
  }
  if (options_.accumulation_steps > 1) {
    if (accumulated_.empty()) {
      for (auto& g : grads) accumulated_.push_back(g.copy());
    } else {
      if (accumulated_.size() != grads.size()) fail(name() + ": the parameter list changed while accumulating");
      for (std::size_t i = 0; i < grads.size(); ++i) accumulated_[i].assign(add(accumulated_[i], grads[i]));
    }
    if (++pending_ < options_.accumulation_steps) return false;
    const double inv = 1.0 / static_cast<double>(options_.accumulation_steps);
    for (std::size_t i = 0; i < grads.size(); ++i) grads[i] = affine(accumulated_[i], inv, 0.0);
    accumulated_.clear();
    pending_ = 0;
  }
  last_grads_ = grads;
  if (options_.clip_norm > 0.0) grads = clip_by_global_norm(grads, options_.clip_norm);
  const double lr = current_lr();
  for (std::size_t i = 0; i < params.size(); ++i) update(i, params[i], grads[i], lr);
  ++steps_;
  return true;
}

double Optimizer::last_grad_norm() const {
  if (last_grads_.empty()) return 0.0;
  NoGradGuard no_grad;
  return global_norm(last_grads_).item();
}

ParameterList Optimizer::state() const {
  ParameterList out;
  out.add("step", Tensor::scalar(static_cast<double>(steps_), DType::f64));
  out.add("pending", Tensor::scalar(static_cast<double>(pending_), DType::f64));
  for (std::size_t i = 0; i < accumulated_.size(); ++i) {
    out.add("accumulated." + std::to_string(i), accumulated_[i]);
  }
  save_slots(out);
  return out;
}

void Optimizer::load_state(const ParameterList& state) {
  steps_ = static_cast<std::int64_t>(state.get("step").item());
  pending_ = static_cast<std::int64_t>(state.get("pending").item());
  accumulated_.clear();
  for (std::size_t i = 0; state.contains("accumulated." + std::to_string(i)); ++i) {
    accumulated_.push_back(state.get("accumulated." + std::to_string(i)).copy());
  }
  if (static_cast<std::int64_t>(accumulated_.empty() ? 0 : 1) != (pending_ > 0 ? 1 : 0)) {
    fail(name() + ": optimizer state has " + std::to_string(pending_) + " pending accumulation steps but " +
         std::to_string(accumulated_.size()) + " accumulated gradients");
  }
  last_grads_.clear();
  load_slots(state);
}

namespace {

// Per-parameter state slots named "<role>.<index>", created on first use.
class Slots {
 public:
  Tensor& get(std::size_t index, const Tensor& like) {
    if (index >= slots_.size()) slots_.resize(index + 1);
    Tensor& s = slots_[index];
    if (!s.defined()) {
      s = Tensor::zeros(like.shape(), like.dtype(), like.device());
    } else if (s.shape() != like.shape() || s.dtype() != like.dtype()) {
      fail("optimizer: state for parameter #" + std::to_string(index) + " is " + describe(s) +
           " but the parameter is " + describe(like) + " (was the parameter list changed?)");
    }
    return s;
  }
  void save(const std::string& role, ParameterList& out) const {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].defined()) out.add(role + "." + std::to_string(i), slots_[i]);
    }
  }
  void load(const std::string& role, const ParameterList& in) {
    slots_.clear();
    const std::string prefix = role + ".";
    for (std::size_t k = 0; k < in.size(); ++k) {
      const std::string& n = in.name(k);
      if (n.compare(0, prefix.size(), prefix) != 0) continue;
      const std::size_t index = std::stoul(n.substr(prefix.size()));
      if (index >= slots_.size()) slots_.resize(index + 1);
      slots_[index] = in[k].copy();
    }
  }
  bool has(std::size_t index) const { return index < slots_.size() && slots_[index].defined(); }

 private:
  std::vector<Tensor> slots_;
};

class Sgd final : public Optimizer {
 public:
  using Optimizer::Optimizer;
  std::string name() const override { return "sgd"; }

 protected:
  // PyTorch: g += wd p; buf = momentum buf + g (buf = g on the first step); g = nesterov ? g +
  // momentum buf : buf; p -= lr g.
  void update(std::size_t i, Tensor& p, const Tensor& grad, double lr) override {
    Tensor g = grad;
    if (options_.weight_decay != 0.0) g = add(g, affine(p, options_.weight_decay, 0.0));
    if (options_.momentum != 0.0) {
      const bool first = !momentum_.has(i);
      Tensor& buf = momentum_.get(i, p);
      buf.assign(first ? g : add(affine(buf, options_.momentum, 0.0), g));
      g = options_.nesterov ? add(g, affine(buf, options_.momentum, 0.0)) : buf;
    }
    p.assign(sub(p, affine(g, lr, 0.0)));
  }
  void save_slots(ParameterList& out) const override { momentum_.save("momentum", out); }
  void load_slots(const ParameterList& in) override { momentum_.load("momentum", in); }

 private:
  Slots momentum_;
};

class Adam final : public Optimizer {
 public:
  Adam(OptimizerOptions options, bool decoupled) : Optimizer(std::move(options)), decoupled_(decoupled) {}
  std::string name() const override { return decoupled_ ? "adamw" : "adam"; }

 protected:
  // PyTorch: t = step + 1; (AdamW: p *= 1 - lr wd; Adam: g += wd p); m = b1 m + (1 - b1) g;
  // v = b2 v + (1 - b2) g^2; p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps).
  void update(std::size_t i, Tensor& p, const Tensor& grad, double lr) override {
    const double b1 = options_.beta1, b2 = options_.beta2;
    Tensor g = grad;
    if (options_.weight_decay != 0.0) {
      if (decoupled_) {
        p.assign(affine(p, 1.0 - lr * options_.weight_decay, 0.0));
      } else {
        g = add(g, affine(p, options_.weight_decay, 0.0));
      }
    }
    Tensor& m = m_.get(i, p);
    Tensor& v = v_.get(i, p);
    m.assign(add(affine(m, b1, 0.0), affine(g, 1.0 - b1, 0.0)));
    v.assign(add(affine(v, b2, 0.0), affine(square(g), 1.0 - b2, 0.0)));
    const double t = static_cast<double>(steps_ + 1);
    const double bc1 = 1.0 - std::pow(b1, t);
    const double bc2 = 1.0 - std::pow(b2, t);
    const Tensor denom = affine(sqrt(v), 1.0 / std::sqrt(bc2), options_.eps);
    p.assign(sub(p, affine(div(m, denom), lr / bc1, 0.0)));
  }
  void save_slots(ParameterList& out) const override {
    m_.save("exp_avg", out);
    v_.save("exp_avg_sq", out);
  }
  void load_slots(const ParameterList& in) override {
    m_.load("exp_avg", in);
    v_.load("exp_avg_sq", in);
  }

 private:
  bool decoupled_;
  Slots m_, v_;
};

}  // namespace

std::unique_ptr<Optimizer> make_sgd(OptimizerOptions options) {
  if (options.nesterov && options.momentum <= 0.0) fail("sgd: nesterov needs momentum > 0");
  return std::make_unique<Sgd>(std::move(options));
}
std::unique_ptr<Optimizer> make_adam(OptimizerOptions options) {
  return std::make_unique<Adam>(std::move(options), false);
}
std::unique_ptr<Optimizer> make_adamw(OptimizerOptions options) {
  return std::make_unique<Adam>(std::move(options), true);
}
std::unique_ptr<Optimizer> make_optimizer(const std::string& kind, OptimizerOptions options) {
  if (kind == "sgd") return make_sgd(std::move(options));
  if (kind == "adam") return make_adam(std::move(options));
  if (kind == "adamw") return make_adamw(std::move(options));
  fail("optimizer: unknown kind '" + kind + "' (choose sgd, adam or adamw)");
}

}  // namespace metatape::nn
