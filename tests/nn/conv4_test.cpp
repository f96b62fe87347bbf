// The Conv-4 backbone (nn/conv4.h): shapes of both variants at the benchmark size, the body/head split,
// the whole model's first and second derivatives in f64 on a small instance, and its errors.
#include <doctest/doctest.h>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "kernels/error.h"
#include "nn/conv4.h"

using namespace metatape;

TEST_CASE("Conv-4 at 28x28: the ProtoNet variant flattens 1x1x64, the MAML variant averages 2x2x64") {
  Generator gen(7);
  for (const auto d : {nn::Conv4Spec::Downsample::max_pool, nn::Conv4Spec::Downsample::stride}) {
    nn::Conv4Spec spec;
    spec.downsample = d;
    spec.out_features = 5;
    const nn::Conv4 model(spec);
    CAPTURE(model.describe());
    CHECK(model.in_features() == 784);
    CHECK(model.feature_count() == 64);
    CHECK(model.side_after(4) == (d == nn::Conv4Spec::Downsample::stride ? 2 : 1));
    const nn::ParameterList p = model.init(gen);
    CHECK(p.size() == 18);
    CHECK(p.name(0) == "block0.conv.weight");
    CHECK(p[0].shape() == Shape{64, 1, 3, 3});
    CHECK(p.get("block3.bn.bias").shape() == Shape{64});
    CHECK(p.get("head.weight").shape() == Shape{5, 64});
    CHECK(model.head_parameter_start() == 16);
    const Tensor x = Tensor::uniform(Shape{6, 784}, 0.0, 1.0, gen);
    const Tensor y = model.forward(p, x);
    CHECK(y.shape() == Shape{6, 5});
    // forward == head(body): the split ANIL adapts across.
    const Tensor split = model.forward_head(p, model.forward_body(p, x));
    CHECK(max(abs(sub(y, split)), 0).to_vector<float>() == std::vector<float>(5, 0.0f));
  }
  nn::Conv4Spec embedding;
  embedding.out_features = 0;
  const nn::Conv4 model(embedding);
  CHECK(model.out_features() == 64);
  CHECK(model.head_parameter_start() == 0);
  CHECK(model.describe() == "conv4 1x28x28 c64 b4 max_pool bn out0 f32");
}

TEST_CASE("Conv-4's forward passes gradcheck and gradgradcheck in f64 (both variants, with and without BN)") {
  Generator gen(11);
  for (const auto d : {nn::Conv4Spec::Downsample::max_pool, nn::Conv4Spec::Downsample::stride}) {
    for (const bool bn : {true, false}) {
      nn::Conv4Spec spec;
      spec.image_size = 8;
      spec.channels = 2;
      spec.blocks = 2;
      spec.downsample = d;
      spec.batch_norm = bn;
      spec.out_features = 3;
      spec.dtype = DType::f64;
      const nn::Conv4 model(spec);
      CAPTURE(model.describe());
      const nn::ParameterList p = model.init(gen);
      std::vector<Tensor> inputs = {Tensor::uniform(Shape{4, 64}, 0.0, 1.0, gen, DType::f64).requires_grad_()};
      for (const Tensor& t : p.tensors()) inputs.push_back(t);
      const auto f = [&](const std::vector<Tensor>& in) {
        const nn::ParameterList q = p.with_tensors({in.begin() + 1, in.end()});
        return tanh(model.forward(q, in[0]));
      };
      const GradcheckResult first = gradcheck(f, inputs);
      CHECK_MESSAGE(first.ok, first.message);
      const GradcheckResult second = gradgradcheck(f, inputs);
      CHECK_MESSAGE(second.ok, second.message);
    }
  }
}

TEST_CASE("Conv-4 rejects bad specs and inputs, naming the fix") {
  nn::Conv4Spec small;
  small.image_size = 8;
  small.blocks = 4;
  CHECK_THROWS_WITH_AS(nn::Conv4{small}, doctest::Contains("too small for 4 max_pool blocks"), Error);
  nn::Conv4Spec zero;
  zero.channels = 0;
  CHECK_THROWS_WITH_AS(nn::Conv4{zero}, doctest::Contains("channels must be positive"), Error);
  CHECK_THROWS_WITH_AS(nn::parse_downsample("avg"), doctest::Contains("choose max_pool"), Error);
  Generator gen(1);
  nn::Conv4Spec spec;
  spec.out_features = 5;
  const nn::Conv4 model(spec);
  const nn::ParameterList p = model.init(gen);
  CHECK_THROWS_WITH_AS(model.forward(p, Tensor::zeros(Shape{2, 783})), doctest::Contains("(rows, 784)"), Error);
}
