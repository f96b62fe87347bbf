#include "nn/mlp.h"

#include "autograd/ops.h"
#include "kernels/error.h"

namespace metatape::nn {
namespace {
const char* const activation_names[] = {"relu", "tanh", "sigmoid", "gelu", "leaky_relu", "elu", "none"};
}

Activation parse_activation(const std::string& name) {
  for (int i = 0; i < 7; ++i) {
    if (name == activation_names[i]) return static_cast<Activation>(i);
  }
  fail("mlp: unknown activation '" + name + "' (choose relu, tanh, sigmoid, gelu, leaky_relu, elu or none)");
}

std::string activation_name(Activation activation) { return activation_names[static_cast<int>(activation)]; }

Tensor activate(const Tensor& x, Activation activation) {
  switch (activation) {
    case Activation::relu:
      return relu(x);
    case Activation::tanh:
      return tanh(x);
    case Activation::sigmoid:
      return sigmoid(x);
    case Activation::gelu:
      return gelu(x);
    case Activation::leaky_relu:
      return leaky_relu(x);
    case Activation::elu:
      return elu(x);
    case Activation::none:
      return x;
  }
  return x;
}

Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (x.rank() < 1 || x.dim(-1) != weight.dim(-1)) {
    fail("linear: input " + describe(x) + " has " + std::to_string(x.rank() ? x.dim(-1) : 0) + " features, weight " +
         describe(weight) + " expects " + std::to_string(weight.dim(-1)) + " (check the model's input size)");
  }
  return linear(x, weight, bias);
}

Mlp::Mlp(MlpSpec spec) : spec_(std::move(spec)) {
  if (spec_.sizes.size() < 2) {
    fail("mlp: needs at least two sizes (inputs and outputs), got " + std::to_string(spec_.sizes.size()));
  }
  for (auto s : spec_.sizes) {
    if (s <= 0) fail("mlp: layer sizes must be positive, got " + std::to_string(s));
  }
  if (spec_.dtype == DType::i64) fail("mlp: parameters must be f32 or f64");
}

std::string Mlp::weight_name(std::size_t layer) { return "layer" + std::to_string(layer) + ".weight"; }
std::string Mlp::bias_name(std::size_t layer) { return "layer" + std::to_string(layer) + ".bias"; }

ParameterList Mlp::init(Generator& gen) const {
  ParameterList params;
  for (std::size_t l = 0; l < layers(); ++l) {
    const auto in = spec_.sizes[l], out = spec_.sizes[l + 1];
    Tensor w = init_weight(spec_.init, out, in, gen, spec_.dtype, spec_.device);
    Tensor b = init_bias(spec_.init, out, in, gen, spec_.dtype, spec_.device);
    w.requires_grad_();
    b.requires_grad_();
    params.add(weight_name(l), w);
    params.add(bias_name(l), b);
  }
  return params;
}

Tensor Mlp::forward_layers(const ParameterList& params, const Tensor& x, std::size_t first, std::size_t last) const {
  if (first > last || last > layers()) {
    fail("mlp: layer range [" + std::to_string(first) + ", " + std::to_string(last) + ") is outside the model's " +
         std::to_string(layers()) + " layers");
  }
  // Parameters are looked up by position when the list has the model's layout (fast path), and by
  // name otherwise (e.g. a list holding only the head).
  const bool positional = params.size() == 2 * layers();
  Tensor h = x;
  for (std::size_t l = first; l < last; ++l) {
    const Tensor& w = positional ? params[2 * l] : params.get(weight_name(l));
    const Tensor& b = positional ? params[2 * l + 1] : params.get(bias_name(l));
    h = linear_forward(h, w, b);
    if (l + 1 < layers()) h = activate(h, spec_.activation);
  }
  return h;
}

Tensor Mlp::forward(const ParameterList& params, const Tensor& x) const {
  if (params.size() != 2 * layers()) {
    fail("mlp: forward got " + std::to_string(params.size()) + " parameters, the model " + describe() + " has " +
         std::to_string(2 * layers()));
  }
  return forward_layers(params, x, 0, layers());
}

Tensor Mlp::forward_body(const ParameterList& params, const Tensor& x) const {
  return forward_layers(params, x, 0, layers() - 1);
}

Tensor Mlp::forward_head(const ParameterList& params, const Tensor& features) const {
  return forward_layers(params, features, layers() - 1, layers());
}

std::string Mlp::describe() const {
  std::string s = "mlp ";
  for (std::size_t i = 0; i < spec_.sizes.size(); ++i) {
    s += (i ? "-" : "") + std::to_string(spec_.sizes[i]);
  }
  return s + " " + activation_name(spec_.activation) + " " + kernels::dtype_name(spec_.dtype);
}

}  // namespace metatape::nn
