#include "nn/conv4.h"

#include <string>

#include "autograd/ops.h"
#include "kernels/error.h"

namespace metatape::nn {
namespace {

constexpr std::int64_t kernel = 3;
constexpr std::size_t per_block = 4;  // conv weight, conv bias, bn weight, bn bias

std::string block_name(std::int64_t b, const char* what) { return "block" + std::to_string(b) + "." + what; }

}  // namespace

Conv4Spec::Downsample parse_downsample(const std::string& name) {
  if (name == "max_pool") return Conv4Spec::Downsample::max_pool;
  if (name == "stride") return Conv4Spec::Downsample::stride;
  fail("conv4: unknown downsampling '" + name + "' (choose max_pool, as ProtoNets, or stride, as MAML on Omniglot)");
}

std::string downsample_name(Conv4Spec::Downsample d) { return d == Conv4Spec::Downsample::stride ? "stride" : "max_pool"; }

Conv4::Conv4(Conv4Spec spec) : spec_(spec) {
  auto positive = [](const char* field, std::int64_t v) {
    if (v <= 0) fail(std::string("conv4: ") + field + " must be positive, got " + std::to_string(v));
  };
  positive("in_channels", spec_.in_channels);
  positive("image_size", spec_.image_size);
  positive("channels", spec_.channels);
  positive("blocks", spec_.blocks);
  if (spec_.out_features < 0) fail("conv4: out_features must be >= 0 (0: no head), got " + std::to_string(spec_.out_features));
  if (spec_.dtype == DType::i64) fail("conv4: parameters must be f32 or f64");
  if (side_after(spec_.blocks) < 1) {
    fail("conv4: a " + std::to_string(spec_.image_size) + "x" + std::to_string(spec_.image_size) + " image is too small for " +
         std::to_string(spec_.blocks) + " " + downsample_name(spec_.downsample) +
         " blocks (each halves the side); use fewer blocks or a larger image");
  }
}

std::int64_t Conv4::side_after(std::int64_t blocks) const {
  std::int64_t side = spec_.image_size;
  for (std::int64_t b = 0; b < blocks; ++b) {
    // stride 2, padding 1, kernel 3: (s + 2 - 3) / 2 + 1; max pool 2 after a same-size conv: s / 2.
    side = spec_.downsample == Conv4Spec::Downsample::stride ? (side - 1) / 2 + 1 : side / 2;
  }
  return side;
}

std::int64_t Conv4::in_features() const { return spec_.in_channels * spec_.image_size * spec_.image_size; }

std::int64_t Conv4::feature_count() const {
  const std::int64_t side = side_after(spec_.blocks);
  return spec_.downsample == Conv4Spec::Downsample::stride ? spec_.channels : spec_.channels * side * side;
}

std::int64_t Conv4::out_features() const { return spec_.out_features > 0 ? spec_.out_features : feature_count(); }

std::size_t Conv4::head_parameter_start() const {
  return spec_.out_features > 0 ? per_block * static_cast<std::size_t>(spec_.blocks) : 0;
}

ParameterList Conv4::init(Generator& gen) const {
  ParameterList params;
  auto leaf = [](Tensor t) { return t.requires_grad_(); };
  std::int64_t in = spec_.in_channels;
  for (std::int64_t b = 0; b < spec_.blocks; ++b) {
    const std::int64_t fan_in = in * kernel * kernel;
    const Tensor w = init_weight(spec_.init, spec_.channels, fan_in, gen, spec_.dtype, spec_.device);
    params.add(block_name(b, "conv.weight"), leaf(reshape(w, Shape{spec_.channels, in, kernel, kernel}).copy()));
    params.add(block_name(b, "conv.bias"), leaf(init_bias(spec_.init, spec_.channels, fan_in, gen, spec_.dtype, spec_.device)));
    params.add(block_name(b, "bn.weight"), leaf(Tensor::ones(Shape{spec_.channels}, spec_.dtype, spec_.device)));
    params.add(block_name(b, "bn.bias"), leaf(Tensor::zeros(Shape{spec_.channels}, spec_.dtype, spec_.device)));
    in = spec_.channels;
  }
  if (spec_.out_features > 0) {
    const std::int64_t f = feature_count();
    params.add("head.weight", leaf(init_weight(spec_.init, spec_.out_features, f, gen, spec_.dtype, spec_.device)));
    params.add("head.bias", leaf(init_bias(spec_.init, spec_.out_features, f, gen, spec_.dtype, spec_.device)));
  }
  return params;
}

Tensor Conv4::forward_body(const ParameterList& params, const Tensor& x) const {
  const std::size_t expected = per_block * static_cast<std::size_t>(spec_.blocks) + (spec_.out_features > 0 ? 2 : 0);
  if (params.size() != expected) {
    fail("conv4: forward got " + std::to_string(params.size()) + " parameters, the model " + describe() + " has " +
         std::to_string(expected));
  }
  if (x.rank() != 2 || x.dim(1) != in_features()) {
    fail("conv4: input must be (rows, " + std::to_string(in_features()) + ") flattened " +
         std::to_string(spec_.in_channels) + "x" + std::to_string(spec_.image_size) + "x" +
         std::to_string(spec_.image_size) + " images, got " + metatape::describe(x) + " (check the image size)");
  }
  const bool strided = spec_.downsample == Conv4Spec::Downsample::stride;
  Tensor h = reshape(x, Shape{x.dim(0), spec_.in_channels, spec_.image_size, spec_.image_size});
  for (std::int64_t b = 0; b < spec_.blocks; ++b) {
    const std::size_t p = per_block * static_cast<std::size_t>(b);
    h = conv2d(h, params[p], params[p + 1], strided ? 2 : 1, 1, 1);
    if (spec_.batch_norm) h = batch_norm(h, params[p + 2], params[p + 3]);
    h = relu(h);
    if (!strided) h = max_pool2d(h, 2);
  }
  if (strided) {
    // Mean over the remaining positions: (rows, C, s, s) -> (rows, C).
    const std::int64_t side = h.dim(2);
    return mean(reshape(h, Shape{h.dim(0), h.dim(1), side * side}), 2);
  }
  return flatten(h);
}

Tensor Conv4::forward_head(const ParameterList& params, const Tensor& features) const {
  if (spec_.out_features == 0) fail("conv4: the model " + describe() + " has no head (it is an embedding)");
  const std::size_t head = head_parameter_start();
  return linear(features, params[head], params[head + 1]);
}

Tensor Conv4::forward(const ParameterList& params, const Tensor& x) const {
  const Tensor f = forward_body(params, x);
  return spec_.out_features > 0 ? forward_head(params, f) : f;
}

std::string Conv4::describe() const {
  return "conv4 " + std::to_string(spec_.in_channels) + "x" + std::to_string(spec_.image_size) + "x" +
         std::to_string(spec_.image_size) + " c" + std::to_string(spec_.channels) + " b" + std::to_string(spec_.blocks) +
         " " + downsample_name(spec_.downsample) + (spec_.batch_norm ? " bn" : " nobn") + " out" +
         std::to_string(spec_.out_features) + " " + kernels::dtype_name(spec_.dtype);
}

}  // namespace metatape::nn
