// Linear layers and the MLP builder. Parameter names: "layer<i>.weight" (out, in) and "layer<i>.bias"
// (out), i from 0; the activation follows every layer except the last.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "autograd/random.h"
#include "autograd/tensor.h"
#include "nn/init.h"
#include "nn/model.h"
#include "nn/parameters.h"

namespace metatape::nn {

enum class Activation { relu, tanh, sigmoid, gelu, leaky_relu, elu, none };
Activation parse_activation(const std::string& name);  // "relu", "tanh", ...; throws listing choices
std::string activation_name(Activation activation);
Tensor activate(const Tensor& x, Activation activation);

// x W^T + b; x (rows, in), W (out, in), b (out) or undefined.
Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor& bias);

struct MlpSpec {
  std::vector<std::int64_t> sizes;  // in, hidden..., out (at least two entries)
  Activation activation = Activation::relu;
  Init init = Init::uniform_fan_in;  // applied to weights and biases as nn/init.h documents
  DType dtype = DType::f32;
  Device device = Device::cpu;
};

class Mlp : public Model {
 public:
  explicit Mlp(MlpSpec spec);  // throws on fewer than two sizes or a non-positive size

  ParameterList init(Generator& gen) const override;
  Tensor forward(const ParameterList& params, const Tensor& x) const override;
  std::int64_t in_features() const override { return spec_.sizes.front(); }
  std::int64_t out_features() const override { return spec_.sizes.back(); }
  DType dtype() const override { return spec_.dtype; }
  std::string describe() const override;
  // Body: every layer but the last (with its activation); head: the last layer.
  std::size_t head_parameter_start() const override { return spec_.sizes.size() > 2 ? 2 * (layers() - 1) : 0; }
  Tensor forward_body(const ParameterList& params, const Tensor& x) const override;
  Tensor forward_head(const ParameterList& params, const Tensor& features) const override;

  // Layers [first, last) only; the activation follows every layer of the range except the model's
  // last layer. forward == forward_layers(params, x, 0, layers()). Used by ANIL (body / head split).
  Tensor forward_layers(const ParameterList& params, const Tensor& x, std::size_t first, std::size_t last) const;
  std::size_t layers() const { return spec_.sizes.size() - 1; }
  const MlpSpec& spec() const { return spec_; }
  static std::string weight_name(std::size_t layer);
  static std::string bias_name(std::size_t layer);

 private:
  MlpSpec spec_;
};

}  // namespace metatape::nn
