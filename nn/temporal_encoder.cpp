#include "nn/temporal_encoder.h"

#include <sstream>
#include <vector>

#include "autograd/ops.h"
#include "kernels/error.h"

namespace metatape::nn {

namespace {
void require_positive(const char* field, std::int64_t value) {
  if (value < 1)
    fail(std::string("temporal: ") + field + " must be >= 1, got " + std::to_string(value) + " (temporal." + field +
         " in a config)");
}
[[noreturn]] void bad_description(const std::string& description) {
  fail("temporal: model '" + description +
       "' is not 'temporal <C>x<W> channels=<n> layers=<n> kernel=<n> <activation> head=<n|none> <f32|f64>'");
}
}  // namespace

TemporalEncoder::TemporalEncoder(TemporalSpec spec) : spec_(std::move(spec)) {
  require_positive("in_channels", spec_.in_channels);
  require_positive("window", spec_.window);
  require_positive("channels", spec_.channels);
  require_positive("layers", spec_.layers);
  require_positive("kernel", spec_.kernel);
  if (spec_.out_features < 0)
    fail("temporal: out_features must be >= 0 (0: no head, an embedding), got " + std::to_string(spec_.out_features));
  if (spec_.layers > 30)
    fail("temporal: layers is " + std::to_string(spec_.layers) +
         ", at most 30 (the dilation 2^(layers-1) of the last layer would overflow)");
  if (spec_.dtype == DType::i64) fail("temporal: parameters must be f32 or f64");
}

std::string TemporalEncoder::weight_name(std::int64_t layer) { return "conv" + std::to_string(layer) + ".weight"; }
std::string TemporalEncoder::bias_name(std::int64_t layer) { return "conv" + std::to_string(layer) + ".bias"; }

std::int64_t TemporalEncoder::receptive_field() const {
  return 1 + (spec_.kernel - 1) * ((std::int64_t{1} << spec_.layers) - 1);
}

ParameterList TemporalEncoder::init(Generator& gen) const {
  ParameterList params;
  const std::int64_t k = spec_.kernel;
  for (std::int64_t l = 0; l < spec_.layers; ++l) {
    const std::int64_t in = l == 0 ? spec_.in_channels : spec_.channels, out = spec_.channels;
    // Drawn as (out, in * k), the layout of (out, in, k) row-major, then viewed as (out, in, k).
    Tensor w = reshape(init_weight(spec_.init, out, in * k, gen, spec_.dtype, spec_.device), Shape{out, in, k});
    Tensor b = init_bias(spec_.init, out, in * k, gen, spec_.dtype, spec_.device);
    params.add(weight_name(l), w.requires_grad_());
    params.add(bias_name(l), b.requires_grad_());
  }
  if (!embedding()) {
    Tensor w = init_weight(spec_.init, spec_.out_features, spec_.channels, gen, spec_.dtype, spec_.device);
    Tensor b = init_bias(spec_.init, spec_.out_features, spec_.channels, gen, spec_.dtype, spec_.device);
    params.add(kHeadWeight, w.requires_grad_());
    params.add(kHeadBias, b.requires_grad_());
  }
  return params;
}

const Tensor& TemporalEncoder::parameter(const ParameterList& params, std::size_t i, const std::string& name) const {
  return params.size() == parameter_count() ? params[i] : params.get(name);
}

Tensor TemporalEncoder::time_major_stack(const ParameterList& params, const Tensor& x) const {
  const std::int64_t C = spec_.in_channels, W = spec_.window, k = spec_.kernel;
  if (x.rank() != 2 || x.dim(1) != in_features()) {
    fail("temporal: input " + metatape::describe(x) + " has " + std::to_string(x.rank() ? x.dim(-1) : 0) +
         " features, the model " + this->describe() + " expects " + std::to_string(in_features()) + " = " +
         std::to_string(C) + " channels x " + std::to_string(W) +
         " bars (rows laid out channel-major; check tasks.features: raw_window and tasks.raw_window.length)");
  }
  const std::int64_t N = x.dim(0);
  Tensor h = transpose(reshape(x, Shape{N, C, W}));  // (N, W, C)
  for (std::int64_t l = 0; l < spec_.layers; ++l) {
    const std::int64_t dilation = std::int64_t{1} << l, in = h.dim(2);
    const auto i = static_cast<std::size_t>(2 * l);
    const Tensor& w = parameter(params, i, weight_name(l));
    const Tensor& b = parameter(params, i + 1, bias_name(l));
    // Tap j reads time t - dilation * (k - 1 - j): h shifted later in time by that much, zeros first.
    std::vector<Tensor> taps;
    taps.reserve(static_cast<std::size_t>(k));
    for (std::int64_t j = 0; j < k; ++j) {
      const std::int64_t shift = dilation * (k - 1 - j);
      if (shift == 0)
        taps.push_back(h);
      else if (shift >= W)
        taps.push_back(Tensor::zeros(Shape{N, W, in}, h.dtype(), h.device()));
      else
        taps.push_back(pad_axis(slice(h, 1, 0, W - shift), Shape{N, W, in}, 1, shift));
    }
    // Columns (N*W, k*in) ordered (tap, channel); the weight (out, in, k) viewed as (out, k, in) to match.
    const Tensor cols = reshape(concat(taps, 2), Shape{N * W, k * in});
    const Tensor weight = reshape(transpose(w), Shape{spec_.channels, k * in});
    h = reshape(activate(linear_forward(cols, weight, b), spec_.activation), Shape{N, W, spec_.channels});
  }
  return h;
}

Tensor TemporalEncoder::conv_stack(const ParameterList& params, const Tensor& x) const {
  return transpose(time_major_stack(params, x));
}

Tensor TemporalEncoder::encode(const ParameterList& params, const Tensor& x) const {
  const Tensor h = time_major_stack(params, x);
  return reshape(slice(h, 1, spec_.window - 1, spec_.window), Shape{h.dim(0), spec_.channels});
}

std::size_t TemporalEncoder::head_parameter_start() const {
  return embedding() ? 0 : 2 * static_cast<std::size_t>(spec_.layers);
}

Tensor TemporalEncoder::forward_body(const ParameterList& params, const Tensor& x) const { return encode(params, x); }

Tensor TemporalEncoder::forward_head(const ParameterList& params, const Tensor& features) const {
  if (embedding()) fail("temporal: the model " + describe() + " has no head (it is an embedding)");
  const std::size_t head = head_parameter_start();
  return linear_forward(features, parameter(params, head, kHeadWeight), parameter(params, head + 1, kHeadBias));
}

Tensor TemporalEncoder::forward(const ParameterList& params, const Tensor& x) const {
  if (params.size() != parameter_count()) {
    fail("temporal: forward got " + std::to_string(params.size()) + " parameters, the model " + describe() + " has " +
         std::to_string(parameter_count()));
  }
  const Tensor z = encode(params, x);
  return embedding() ? z : forward_head(params, z);
}

std::string TemporalEncoder::describe() const {
  std::ostringstream s;
  s << "temporal " << spec_.in_channels << "x" << spec_.window << " channels=" << spec_.channels
    << " layers=" << spec_.layers << " kernel=" << spec_.kernel << " " << activation_name(spec_.activation)
    << " head=" << (embedding() ? std::string("none") : std::to_string(spec_.out_features)) << " "
    << kernels::dtype_name(spec_.dtype);
  return s.str();
}

bool is_temporal_description(const std::string& description) { return description.rfind("temporal ", 0) == 0; }

TemporalSpec parse_temporal_spec(const std::string& description) {
  std::istringstream in(description);
  std::string word, shape, channels, layers, kernel, activation, head, dtype, extra;
  const bool words =
      static_cast<bool>(in >> word >> shape >> channels >> layers >> kernel >> activation >> head >> dtype);
  if (!words || (in >> extra) || word != "temporal") bad_description(description);
  const auto number = [&](const std::string& text) {
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(text, &used);
    } catch (const std::exception&) {
      bad_description(description);
    }
    if (used != text.size() || v < 1) bad_description(description);
    return static_cast<std::int64_t>(v);
  };
  const auto value = [&](const std::string& field, const std::string& key) {
    if (field.rfind(key + "=", 0) != 0) bad_description(description);
    return field.substr(key.size() + 1);
  };
  TemporalSpec spec;
  const auto x = shape.find('x');
  if (x == std::string::npos) bad_description(description);
  spec.in_channels = number(shape.substr(0, x));
  spec.window = number(shape.substr(x + 1));
  spec.channels = number(value(channels, "channels"));
  spec.layers = number(value(layers, "layers"));
  spec.kernel = number(value(kernel, "kernel"));
  spec.activation = parse_activation(activation);
  const std::string h = value(head, "head");
  spec.out_features = h == "none" ? 0 : number(h);
  if (dtype == "f32")
    spec.dtype = DType::f32;
  else if (dtype == "f64")
    spec.dtype = DType::f64;
  else
    bad_description(description);
  return spec;
}

}  // namespace metatape::nn
