// The Conv-4 backbone of the few-shot image benchmarks: `blocks` (default 4) blocks of a 3x3
// convolution with `channels` filters, batch normalisation, ReLU and a 2x downsampling, then an
// optional linear head. Two variants, as their papers' code builds them:
//   - Downsample::max_pool (ProtoNets; MAML on MiniImagenet): conv stride 1 padding 1 -> BN -> ReLU ->
//     2x2 max pool. 28x28 -> 14 -> 7 -> 3 -> 1; the readout flattens (64 features at 28x28).
//   - Downsample::stride (MAML on Omniglot): conv stride 2 padding 1 -> BN -> ReLU. 28x28 -> 14 -> 7 ->
//     4 -> 2; the readout averages over the remaining positions (64 features), as the MAML code does.
// Batch normalisation uses the batch's statistics in training and evaluation alike ("transductive",
// as in the MAML code; the statistics are differentiated through), so the model stays a pure function
// of (params, x). Its weight and bias are parameters and adapt in the inner loop like the rest.
//
// Input rows are flattened images, (rows, in_channels * image_size * image_size) channel-major, so a
// Conv4 is an nn::Model like the MLP and every learner runs on it. Parameters, in order, per block b:
// "block<b>.conv.weight" (channels, in, 3, 3), "block<b>.conv.bias", "block<b>.bn.weight",
// "block<b>.bn.bias"; then, with a head, "head.weight" (out_features, features) and "head.bias".
// Without a head (out_features = 0) the model is an embedding for ProtoNets and Matching Nets.
#pragma once

#include <cstdint>
#include <string>

#include "nn/init.h"
#include "nn/model.h"

namespace metatape::nn {

struct Conv4Spec {
  enum class Downsample { max_pool, stride };
  std::int64_t in_channels = 1;
  std::int64_t image_size = 28;  // square images
  std::int64_t channels = 64;
  std::int64_t blocks = 4;
  Downsample downsample = Downsample::max_pool;
  bool batch_norm = true;
  std::int64_t out_features = 0;  // 0: no head (an embedding)
  Init init = Init::uniform_fan_in;  // convolutions (fan_in = in * 9) and the head; BN starts at (1, 0)
  DType dtype = DType::f32;
  Device device = Device::cpu;
};
Conv4Spec::Downsample parse_downsample(const std::string& name);  // "max_pool" or "stride"
std::string downsample_name(Conv4Spec::Downsample downsample);

class Conv4 : public Model {
 public:
  // Throws naming the field when a size is not positive or the image is too small for the blocks.
  explicit Conv4(Conv4Spec spec);

  ParameterList init(Generator& gen) const override;
  Tensor forward(const ParameterList& params, const Tensor& x) const override;
  std::int64_t in_features() const override;
  std::int64_t out_features() const override;
  DType dtype() const override { return spec_.dtype; }
  // "conv4 1x28x28 c64 b4 max_pool bn out5 f32"
  std::string describe() const override;
  // Body: the conv blocks and the readout; head: the linear classifier (0 without a head).
  std::size_t head_parameter_start() const override;
  Tensor forward_body(const ParameterList& params, const Tensor& x) const override;
  Tensor forward_head(const ParameterList& params, const Tensor& features) const override;

  std::int64_t feature_count() const;  // the readout's width: channels (both variants at 28x28)
  // The spatial side after each block: out[b] for b = 0..blocks (out[0] = image_size).
  std::int64_t side_after(std::int64_t blocks) const;
  const Conv4Spec& spec() const { return spec_; }

 private:
  Conv4Spec spec_;
};

}  // namespace metatape::nn
