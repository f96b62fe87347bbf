// The temporal convolution encoder: shapes and names, the layer formula against a direct loop,
// causality and the receptive field, gradcheck of the whole model in f64, and the describe text
// through a checkpoint.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "kernels/error.h"
#include "nn/checkpoint.h"
#include "nn/temporal_encoder.h"

using namespace metatape;

namespace {
nn::TemporalSpec small_spec(DType dtype = DType::f32) {
  nn::TemporalSpec s;
  s.in_channels = 2;
  s.window = 8;
  s.channels = 3;
  s.layers = 2;
  s.kernel = 3;
  s.out_features = 4;
  s.activation = nn::Activation::tanh;
  s.dtype = dtype;
  return s;
}

// h_L of the conv stack by direct loops over (row, out channel, time, in channel, tap), f64.
std::vector<double> reference_stack(const nn::TemporalSpec& s, const nn::ParameterList& p, const std::vector<double>& x,
                                    std::int64_t rows) {
  std::vector<double> h = x;  // (rows, C, W)
  std::int64_t cin = s.in_channels;
  for (std::int64_t l = 0; l < s.layers; ++l) {
    const auto w = p[static_cast<std::size_t>(2 * l)].to_vector<double>();
    const auto b = p[static_cast<std::size_t>(2 * l + 1)].to_vector<double>();
    const std::int64_t d = std::int64_t{1} << l, O = s.channels, W = s.window, k = s.kernel;
    std::vector<double> out(static_cast<std::size_t>(rows * O * W));
    for (std::int64_t n = 0; n < rows; ++n)
      for (std::int64_t o = 0; o < O; ++o)
        for (std::int64_t t = 0; t < W; ++t) {
          double acc = b[static_cast<std::size_t>(o)];
          for (std::int64_t c = 0; c < cin; ++c)
            for (std::int64_t j = 0; j < k; ++j) {
              const std::int64_t u = t - d * (k - 1 - j);  // tap j reads time t - d (k-1-j); zeros before 0
              if (u < 0) continue;
              acc += w[static_cast<std::size_t>((o * cin + c) * k + j)] *
                     h[static_cast<std::size_t>((n * cin + c) * W + u)];
            }
          out[static_cast<std::size_t>((n * O + o) * W + t)] = std::tanh(acc);
        }
    h = out;
    cin = O;
  }
  return h;
}
}  // namespace

TEST_CASE("temporal encoder: shapes, names, head and embedding variants, errors name the fix") {
  Generator gen(3);
  const nn::TemporalEncoder model(small_spec());
  const auto p = model.init(gen);
  CHECK(p.names() == std::vector<std::string>{"conv0.weight", "conv0.bias", "conv1.weight", "conv1.bias", "head.weight",
                                              "head.bias"});
  CHECK(p[0].shape() == Shape{3, 2, 3});
  CHECK(p[2].shape() == Shape{3, 3, 3});
  CHECK(p[4].shape() == Shape{4, 3});
  for (const Tensor& t : p.tensors()) CHECK(t.requires_grad());
  // uniform_fan_in: |conv0.weight| <= 1 / sqrt(2 * 3)
  for (float v : p[0].to_vector<float>()) REQUIRE(std::fabs(v) <= 1.0f / std::sqrt(6.0f));
  CHECK(model.in_features() == 16);
  CHECK(model.out_features() == 4);
  CHECK(model.receptive_field() == 7);
  const Tensor x = Tensor::uniform(Shape{5, 16}, -1, 1, gen);
  CHECK(model.forward(p, x).shape() == Shape{5, 4});
  CHECK(model.conv_stack(p, x).shape() == Shape{5, 3, 8});

  nn::TemporalSpec es = small_spec();
  es.out_features = 0;
  const nn::TemporalEncoder embed(es);
  const auto ep = embed.init(gen);
  CHECK(ep.size() == 4);
  CHECK(embed.out_features() == 3);
  CHECK(embed.forward(ep, x).shape() == Shape{5, 3});

  // The body/head split ANIL adapts across: the conv stack and readout, then the linear head.
  CHECK(model.head_parameter_start() == 4);
  CHECK(model.forward_head(p, model.forward_body(p, x)).to_vector<float>() == model.forward(p, x).to_vector<float>());
  CHECK(model.forward_body(p, x).shape() == Shape{5, 3});
  CHECK(embed.head_parameter_start() == 0);
  CHECK_THROWS_WITH_AS(embed.forward_head(ep, x), doctest::Contains("has no head"), Error);

  CHECK_THROWS_WITH_AS(model.forward(p, Tensor::zeros(Shape{5, 15})), doctest::Contains("raw_window.length"), Error);
  CHECK_THROWS_WITH_AS(model.forward(ep, x), doctest::Contains("forward got 4 parameters"), Error);
  nn::TemporalSpec bad = small_spec();
  bad.channels = 0;
  CHECK_THROWS_WITH_AS(nn::TemporalEncoder{bad}, doctest::Contains("temporal.channels"), Error);
}

TEST_CASE("temporal encoder: forward equals causal dilated convolutions, then the head on the last step") {
  Generator gen(11);
  const nn::TemporalSpec spec = small_spec(DType::f64);
  const nn::TemporalEncoder model(spec);
  const auto p = model.init(gen);
  const Tensor x = Tensor::uniform(Shape{3, 16}, -1, 1, gen, DType::f64);
  const auto expect = reference_stack(spec, p, x.to_vector<double>(), 3);
  const auto got = model.conv_stack(p, x).to_vector<double>();
  REQUIRE(got.size() == expect.size());
  for (std::size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == doctest::Approx(expect[i]).epsilon(1e-12));
  // The same through autograd's conv1d with causal left padding (the op's own im2col executor), also
  // when a dilation reaches past the window (W = 3, dilation 4: that tap reads only padding).
  for (const std::int64_t window : {8, 3}) {
    CAPTURE(window);
    nn::TemporalSpec s = spec;
    s.window = window;
    s.layers = window == 8 ? 2 : 3;
    const nn::TemporalEncoder m(s);
    const auto q = m.init(gen);
    const Tensor in = Tensor::uniform(Shape{3, 2 * window}, -1, 1, gen, DType::f64);
    Tensor h = reshape(in, Shape{3, 2, window});
    for (std::int64_t l = 0; l < s.layers; ++l) {
      const std::int64_t d = std::int64_t{1} << l, pad = d * 2;
      h = tanh(conv1d(pad_axis(h, Shape{3, h.dim(1), window + pad}, 2, pad), q[static_cast<std::size_t>(2 * l)],
                      q[static_cast<std::size_t>(2 * l + 1)], 1, 0, d));
    }
    const auto via_conv1d = h.to_vector<double>(), stack = m.conv_stack(q, in).to_vector<double>();
    REQUIRE(stack.size() == via_conv1d.size());
    for (std::size_t i = 0; i < stack.size(); ++i) REQUIRE(stack[i] == doctest::Approx(via_conv1d[i]).epsilon(1e-12));
  }
  const auto y = model.forward(p, x).to_vector<double>();
  const auto hw = p[4].to_vector<double>(), hb = p[5].to_vector<double>();
  for (std::int64_t n = 0; n < 3; ++n)
    for (std::int64_t o = 0; o < 4; ++o) {
      double acc = hb[static_cast<std::size_t>(o)];
      for (std::int64_t c = 0; c < 3; ++c)
        acc += hw[static_cast<std::size_t>(o * 3 + c)] * expect[static_cast<std::size_t>((n * 3 + c) * 8 + 7)];
      CHECK(y[static_cast<std::size_t>(n * 4 + o)] == doctest::Approx(acc).epsilon(1e-12));
    }
}

TEST_CASE("temporal encoder: causal; the last step sees exactly the receptive field") {
  Generator gen(5);
  const nn::TemporalSpec spec = small_spec(DType::f64);  // W = 8, receptive field 7
  const nn::TemporalEncoder model(spec);
  const auto p = model.init(gen);
  const auto base = Tensor::uniform(Shape{2, 16}, -1, 1, gen, DType::f64).to_vector<double>();
  const auto stack = [&](const std::vector<double>& v) {
    return model.conv_stack(p, Tensor::from_vector(v, Shape{2, 16}, DType::f64)).to_vector<double>();
  };
  const auto h0 = stack(base);
  const std::int64_t W = 8, O = 3;
  for (std::int64_t t = 0; t < W - 1; ++t) {
    CAPTURE(t);
    std::vector<double> changed = base;  // every channel of every row at times > t
    for (std::int64_t n = 0; n < 2; ++n)
      for (std::int64_t c = 0; c < 2; ++c)
        for (std::int64_t u = t + 1; u < W; ++u) changed[static_cast<std::size_t>((n * 2 + c) * W + u)] += 0.7;
    const auto h1 = stack(changed);
    bool later_changed = false;
    for (std::int64_t n = 0; n < 2; ++n)
      for (std::int64_t o = 0; o < O; ++o)
        for (std::int64_t u = 0; u < W; ++u) {
          const auto i = static_cast<std::size_t>((n * O + o) * W + u);
          if (u <= t) REQUIRE(h1[i] == h0[i]);
          later_changed = later_changed || h1[i] != h0[i];
        }
    CHECK(later_changed);
  }
  // The last step reads times W-7 .. W-1: time 0 is outside it, time 1 inside.
  const auto y0 = model.forward(p, Tensor::from_vector(base, Shape{2, 16}, DType::f64)).to_vector<double>();
  for (std::int64_t u : {0, 1}) {
    std::vector<double> changed = base;
    changed[static_cast<std::size_t>(u)] += 0.7;
    const auto y1 = model.forward(p, Tensor::from_vector(changed, Shape{2, 16}, DType::f64)).to_vector<double>();
    CHECK((y1[0] != y0[0]) == (u >= W - model.receptive_field()));
  }
}

TEST_CASE("temporal encoder: gradcheck and gradgradcheck of the whole model in f64") {
  Generator gen(9);
  nn::TemporalSpec spec = small_spec(DType::f64);
  spec.window = 5;
  spec.channels = 2;
  spec.out_features = 2;
  const nn::TemporalEncoder model(spec);
  const auto p = model.init(gen);
  std::vector<Tensor> inputs = {Tensor::uniform(Shape{2, 10}, -1, 1, gen, DType::f64).requires_grad_()};
  for (const Tensor& t : p.tensors()) inputs.push_back(t);
  const auto f = [&](const std::vector<Tensor>& in) {
    const std::vector<Tensor> params(in.begin() + 1, in.end());
    return model.forward(p.with_tensors(params), in[0]);
  };
  const GradcheckResult first = gradcheck(f, inputs);
  CHECK_MESSAGE(first.ok, first.message);
  const GradcheckResult second = gradgradcheck(f, inputs);
  CHECK_MESSAGE(second.ok, second.message);
}

TEST_CASE("temporal encoder: describe survives a checkpoint and rebuilds the same model") {
  for (const bool embedding : {false, true}) {
    CAPTURE(embedding);
    nn::TemporalSpec spec = small_spec();
    spec.out_features = embedding ? 0 : 4;
    const nn::TemporalEncoder model(spec);
    CHECK(model.describe() == (embedding ? "temporal 2x8 channels=3 layers=2 kernel=3 tanh head=none f32"
                                         : "temporal 2x8 channels=3 layers=2 kernel=3 tanh head=4 f32"));
    Generator gen(4);
    nn::Checkpoint cp;
    cp.config_json = nlohmann::json{{"model", model.describe()}}.dump();
    cp.sections["params"] = model.init(gen);
    const auto path = (std::filesystem::temp_directory_path() /
                       ("metatape_temporal_" + std::to_string(::getpid()) + (embedding ? "_e" : "_h") + ".ckpt"))
                          .string();
    nn::save_checkpoint(path, cp);
    const nn::Checkpoint loaded = nn::load_checkpoint(path);
    std::filesystem::remove(path);
    const std::string text = nlohmann::json::parse(loaded.config_json)["model"].get<std::string>();
    CHECK(nn::is_temporal_description(text));
    const nn::TemporalEncoder rebuilt(nn::parse_temporal_spec(text));
    CHECK(rebuilt.describe() == model.describe());
    Generator other(99);
    nn::ParameterList params = rebuilt.init(other);
    nn::restore_section(loaded, "params", params);
    const Tensor x = Tensor::uniform(Shape{3, 16}, -1, 1, gen);
    CHECK(rebuilt.forward(params, x).to_vector<float>() ==
          model.forward(cp.sections.at("params"), x).to_vector<float>());
  }
  CHECK_FALSE(nn::is_temporal_description("mlp 3-4-2 tanh f32"));
  CHECK_THROWS_WITH_AS(nn::parse_temporal_spec("temporal 5x32 channels=16 layers=4 relu head=3 f32"),
                       doctest::Contains("is not 'temporal <C>x<W>"), Error);
  CHECK_THROWS_WITH_AS(nn::parse_temporal_spec("temporal 5x0 channels=16 layers=4 kernel=3 relu head=3 f32"),
                       doctest::Contains("is not 'temporal"), Error);
}
