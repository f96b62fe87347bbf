// A temporal convolution encoder over raw windows (tasks/raw_window.h): a stack of causal dilated
// conv1d layers, then a linear head on the last time step.
//
//   x (rows, C * W), each row channel-major (channel c, then time, oldest first)
//   h_0 = reshape(x, (rows, C, W))
//   h_i = act(conv1d(left_pad(h_{i-1}, d_i * (k - 1)), conv<i>.weight, conv<i>.bias, dilation d_i))
//         i = 0 .. layers-1, d_i = 2^i, conv<i>.weight (channels, C or channels, k), bias (channels)
//   z   = h_L[:, :, W - 1]                        (rows, channels): the last time step
//   y   = z head.weight^T + head.bias             (rows, out_features); head.weight (out, channels)
//
// Causal: h_i[:, :, t] reads inputs at times <= t only (left padding with zeros, no right padding), so
// the output is a function of the window's bars and z sees the last receptive_field() bars of it:
// 1 + (k - 1) * (2^layers - 1) (31 with k = 3 and 4 layers; bars older than that do not reach z).
// The readout is the last time step, not a global average, so the newest bar counts most and the
// encoder does not average away where in the window a move happened.
// The embedding variant (out_features = 0, as nn::Conv4) has no head: forward returns z and
// out_features() = channels (for ProtoNets and Matching Networks).
// Body / head split (ANIL, nn/model.h): the body is the conv stack and the readout (forward_body = z),
// the head the linear layer; the embedding variant has no split.
// Parameters, in order: conv0.weight, conv0.bias, ..., conv<L-1>.bias, then head.weight, head.bias.
// Initialised as nn/init.h says for spec.init, with fan_in = input channels * k for a conv layer.
//
// Executor: the layers are computed time-major, h as (rows, W, channels): the k taps are h shifted
// later in time by d * (k - 1 - j) (slice + pad_axis, zeros first), concatenated on the channel axis,
// and one linear applies the weight viewed as (out, k * in). That is the same function as
// conv1d(pad_axis(h, left d * (k - 1)), w, b, dilation d) on (rows, channels, W) (tested equal to
// autograd's conv1d, which builds im2col columns per call), with dense block copies and one GEMM per
// layer: a MAML meta-step (8 tasks of 35 rows, 5x32 windows, 16 channels, 4 layers, one inner step,
// second order) took 12-15 ms against 26-31 ms through conv1d (47 ms before conv's im2col kernels) on
// the shared 2-core development machine, and 20-24 ms against 53-59 ms after conv2d got its own
// kernels (main at 86e9d07, the machine busier); an MLP 160-64-64-3 on the same rows: 1.2-1.4 ms.
#pragma once

#include <cstdint>
#include <string>

#include "autograd/random.h"
#include "autograd/tensor.h"
#include "nn/init.h"
#include "nn/mlp.h"
#include "nn/model.h"
#include "nn/parameters.h"

namespace metatape::nn {

struct TemporalSpec {
  std::int64_t in_channels = 5;  // C (tasks/raw_window.h: 5 per series)
  std::int64_t window = 32;      // W, time steps per row
  std::int64_t channels = 16;    // width of every conv layer
  std::int64_t layers = 4;       // dilations 1, 2, 4, ..., 2^(layers-1)
  std::int64_t kernel = 3;
  std::int64_t out_features = 1;  // head outputs; 0: no head, forward returns the (rows, channels) z
  Activation activation = Activation::relu;
  Init init = Init::uniform_fan_in;
  DType dtype = DType::f32;
  Device device = Device::cpu;
};

class TemporalEncoder : public Model {
 public:
  // Throws naming the field when a size is not positive or 2^(layers-1) overflows.
  explicit TemporalEncoder(TemporalSpec spec);

  ParameterList init(Generator& gen) const override;
  Tensor forward(const ParameterList& params, const Tensor& x) const override;
  std::int64_t in_features() const override { return spec_.in_channels * spec_.window; }
  std::int64_t out_features() const override { return embedding() ? spec_.channels : spec_.out_features; }
  DType dtype() const override { return spec_.dtype; }
  // "temporal 5x32 channels=16 layers=4 kernel=3 relu head=3 f32" (head=none for the embedding
  // variant); parse_temporal_spec reads it back.
  std::string describe() const override;
  // Body: parameters conv0.weight .. conv<L-1>.bias; head: head.weight, head.bias (0: no head).
  std::size_t head_parameter_start() const override;
  Tensor forward_body(const ParameterList& params, const Tensor& x) const override;  // = encode
  Tensor forward_head(const ParameterList& params, const Tensor& features) const override;

  // h_L (rows, channels, W): the conv stack's output at every time step, before the readout.
  Tensor conv_stack(const ParameterList& params, const Tensor& x) const;
  // h_L time-major, (rows, W, channels): what encode reads its last step from.
  Tensor time_major_stack(const ParameterList& params, const Tensor& x) const;
  // z (rows, channels): the last time step of conv_stack.
  Tensor encode(const ParameterList& params, const Tensor& x) const;
  std::int64_t receptive_field() const;
  const TemporalSpec& spec() const { return spec_; }
  bool embedding() const { return spec_.out_features == 0; }
  std::size_t parameter_count() const { return 2 * static_cast<std::size_t>(spec_.layers) + (embedding() ? 0 : 2); }
  static std::string weight_name(std::int64_t layer);  // "conv<i>.weight"
  static std::string bias_name(std::int64_t layer);    // "conv<i>.bias"
  static constexpr const char* kHeadWeight = "head.weight";
  static constexpr const char* kHeadBias = "head.bias";

 private:
  // Parameter i of the model's layout: by position when `params` has exactly the model's layout, by
  // name otherwise (e.g. a list holding adapted head parameters only).
  const Tensor& parameter(const ParameterList& params, std::size_t i, const std::string& name) const;
  TemporalSpec spec_;
};

// Whether `description` is a temporal encoder's describe() text (starts with "temporal ").
bool is_temporal_description(const std::string& description);
// The spec describe() wrote (device cpu, init uniform_fan_in: neither is in the text). Throws naming
// the text and the expected form when it is not one.
TemporalSpec parse_temporal_spec(const std::string& description);

}  // namespace metatape::nn
