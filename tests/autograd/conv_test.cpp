// conv1d / conv2d / max_pool2d / avg_pool2d / flatten against values worked out by hand, and the
// errors for bad shapes and arguments. The derivatives of every order are in op_table_test.cpp.
#include <doctest/doctest.h>

#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"

using namespace metatape;

namespace {

Tensor t64(const std::vector<double>& v, Shape s) { return Tensor::from_vector(v, s, DType::f64); }

void check_values(const Tensor& t, const std::vector<double>& expected) {
  const std::vector<double> got = t.to_vector<double>();
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == doctest::Approx(expected[i]).epsilon(1e-12));
  }
}

// x = 1..9 as a 3x3 image; w = [[1, 2], [3, 4]].
Tensor image3() { return t64({1, 2, 3, 4, 5, 6, 7, 8, 9}, Shape{1, 1, 3, 3}); }
Tensor filter2() { return t64({1, 2, 3, 4}, Shape{1, 1, 2, 2}); }

}  // namespace

TEST_CASE("conv2d matches hand-computed cross-correlations and gradients") {
  SUBCASE("stride 1, no padding, bias") {
    Tensor x = image3().requires_grad_();
    Tensor w = filter2().requires_grad_();
    Tensor b = t64({0.5}, Shape{1}).requires_grad_();
    const Tensor y = conv2d(x, w, b);
    CHECK(y.shape() == Shape{1, 1, 2, 2});
    // 1*1 + 2*2 + 3*4 + 4*5 = 37, then 47, 67, 77; plus 0.5.
    check_values(y, {37.5, 47.5, 67.5, 77.5});
    const std::vector<Tensor> g = grad({sum(y)}, {x, w, b});
    // d/dx: how much of w covers each pixel, summed over the four windows.
    check_values(g[0], {1, 3, 2, 4, 10, 6, 3, 7, 4});
    // d/dw[i][j]: the sum of the pixels that tap (i, j) sees: 1+2+4+5, 2+3+5+6, 4+5+7+8, 5+6+8+9.
    check_values(g[1], {12, 16, 24, 28});
    check_values(g[2], {4});
  }
  SUBCASE("stride 2, padding 1") {
    // Padded to 5x5; windows at padded (0,0), (0,2), (2,0), (2,2) see 1 | 2,3 | 4,7 | 5,6,8,9.
    const Tensor y = conv2d(image3(), filter2(), Tensor(), 2, 1, 1);
    CHECK(y.shape() == Shape{1, 1, 2, 2});
    check_values(y, {4 * 1, 3 * 2 + 4 * 3, 2 * 4 + 4 * 7, 1 * 5 + 2 * 6 + 3 * 8 + 4 * 9});
  }
  SUBCASE("dilation 2") {
    // Taps at (0,0), (0,2), (2,0), (2,2): 1*1 + 2*3 + 3*7 + 4*9.
    const Tensor y = conv2d(image3(), filter2(), Tensor(), 1, 0, 2);
    CHECK(y.shape() == Shape{1, 1, 1, 1});
    check_values(y, {64});
  }
  SUBCASE("channels sum, output channels and images stay apart") {
    // Two images, two input channels (the second is the first times 10), two 1x1 filters.
    std::vector<double> xv;
    for (int n = 0; n < 2; ++n)
      for (int c = 0; c < 2; ++c)
        for (int i = 0; i < 4; ++i) xv.push_back((n + 1) * (c == 0 ? 1.0 : 10.0) * (i + 1));
    const Tensor x = t64(xv, Shape{2, 2, 2, 2});
    const Tensor w = t64({1, 0, 0.5, 0.05}, Shape{2, 2, 1, 1});  // out 0 = ch0; out 1 = 0.5 ch0 + 0.05 ch1
    const Tensor y = conv2d(x, w, t64({0, 1}, Shape{2}));
    check_values(y, {1, 2, 3, 4, 2, 3, 4, 5, 2, 4, 6, 8, 3, 5, 7, 9});
  }
}

TEST_CASE("conv1d matches hand-computed values, and the causal form keeps the length") {
  const Tensor x = t64({1, 2, 3, 4, 5}, Shape{1, 1, 5});
  const Tensor w = t64({2, 1}, Shape{1, 1, 2});
  // Dilation 2: 2 x[i] + x[i + 2].
  check_values(conv1d(x, w, Tensor(), 1, 0, 2), {5, 8, 11});
  // Stride 2, padding 1: windows over [0, 1, 2, 3, 4, 5, 0] at 0, 2, 4.
  check_values(conv1d(x, w, Tensor(), 2, 1, 1), {1, 2 * 2 + 3, 2 * 4 + 5});
  // Causal: left-pad by dilation * (k - 1); output t sees x[t - 2] and x[t] only.
  const Tensor causal = conv1d(pad_axis(x, Shape{1, 1, 7}, 2, 2), w, Tensor(), 1, 0, 2);
  CHECK(causal.shape() == Shape{1, 1, 5});
  check_values(causal, {1, 2, 2 + 3, 4 + 4, 6 + 5});
}

TEST_CASE("max_pool2d and avg_pool2d match hand-computed windows; max sends the gradient to the first maximum") {
  Tensor x = t64({1, 5, 2, 0,  //
                  3, 4, 8, 6,  //
                  7, 0, 1, 2,  //
                  9, 3, 4, 4},
                 Shape{1, 1, 4, 4})
                 .requires_grad_();
  const Tensor m = max_pool2d(x, 2);
  CHECK(m.shape() == Shape{1, 1, 2, 2});
  check_values(m, {5, 8, 9, 4});
  // The last window holds 4 twice, at (3, 2) and (3, 3): the gradient goes to (3, 2) only.
  check_values(grad({sum(m)}, {x})[0], {0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0});
  const Tensor a = avg_pool2d(x, 2);
  check_values(a, {13 / 4.0, 16 / 4.0, 19 / 4.0, 11 / 4.0});
  check_values(grad({sum(a)}, {x})[0], std::vector<double>(16, 0.25));
  // Overlapping windows (kernel 3, stride 1) on the same image.
  check_values(max_pool2d(x, 3, 1), {8, 8, 9, 8});
  check_values(avg_pool2d(x, 3, 1), {31 / 9.0, 28 / 9.0, 39 / 9.0, 32 / 9.0});
}

TEST_CASE("an empty batch goes through conv and pool, and its graph still reaches the weights") {
  Tensor x = Tensor::zeros(Shape{0, 2, 5, 5}).requires_grad_();
  Tensor w = Tensor::ones(Shape{3, 2, 3, 3}).requires_grad_();
  Tensor b = Tensor::ones(Shape{3}).requires_grad_();
  const Tensor y = conv2d(x, w, b, 1, 1, 1);
  CHECK(y.shape() == Shape{0, 3, 5, 5});
  const std::vector<Tensor> g = grad({sum(y)}, {x, w, b});
  CHECK(g[1].shape() == Shape{3, 2, 3, 3});
  CHECK(sum(abs(g[1])).item() == 0.0);
  CHECK(max_pool2d(x, 2).shape() == Shape{0, 2, 2, 2});
  CHECK(avg_pool2d(x, 3, 1).shape() == Shape{0, 2, 3, 3});
  CHECK(conv1d(Tensor::zeros(Shape{0, 2, 4}), Tensor::zeros(Shape{1, 2, 3}), Tensor()).shape() == Shape{0, 1, 2});
}

TEST_CASE("flatten keeps the leading dimension") {
  CHECK(flatten(Tensor::zeros(Shape{2, 3, 4, 5})).shape() == Shape{2, 60});
  CHECK(flatten(Tensor::zeros(Shape{3, 2})).shape() == Shape{3, 2});
  CHECK(flatten(Tensor::zeros(Shape{4})).shape() == Shape{4, 1});
}

TEST_CASE("conv and pool reject bad shapes and arguments, naming the problem and the fix") {
  const Tensor x = Tensor::zeros(Shape{1, 3, 5, 5});
  const Tensor w = Tensor::zeros(Shape{4, 3, 3, 3});
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros(Shape{4, 2, 3, 3}), Tensor()),
                       doctest::Contains("the input has 3 channels but the weight (4, 2, 3, 3)"), Error);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros(Shape{4, 2, 3, 3}), Tensor()),
                       doctest::Contains("make the weight's second dimension the input's channel count"), Error);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros(Shape{4, 3, 7, 3}), Tensor()),
                       doctest::Contains("kernel height spans 7 (kernel 7, dilation 1) but the padded input height is "
                                         "only 5 (5 + 2 * padding 0); use a smaller kernel"),
                       Error);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), 1, 0, 3),
                       doctest::Contains("kernel height spans 7 (kernel 3, dilation 3)"), Error);
  CHECK_NOTHROW(conv2d(x, w, Tensor(), 1, 1, 3));  // 5 + 2 = 7 fits the dilated span exactly
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), 0), doctest::Contains("conv2d: stride must be positive, got 0"), Error);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), -1), doctest::Contains("stride must be positive, got -1"), Error);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), 1, 0, 0), doctest::Contains("dilation must be positive"), Error);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor(), 1, -1), doctest::Contains("padding must be >= 0"), Error);
  CHECK_THROWS_WITH_AS(conv2d(Tensor::zeros(Shape{1, 0, 5, 5}), Tensor::zeros(Shape{4, 0, 3, 3}), Tensor()),
                       doctest::Contains("need at least one input and one output channel"), Error);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros(Shape{0, 3, 3, 3}), Tensor()),
                       doctest::Contains("need at least one input and one output channel"), Error);
  CHECK_THROWS_WITH_AS(conv2d(x, w, Tensor::zeros(Shape{3})), doctest::Contains("bias must have shape (4)"), Error);
  CHECK_THROWS_WITH_AS(conv2d(Tensor::zeros(Shape{3, 5, 5}), w, Tensor()),
                       doctest::Contains("conv2d: input must be (N, C, H, W) of rank 4"), Error);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros(Shape{4, 3, 3}), Tensor()),
                       doctest::Contains("weight must be (out, in, kh, kw)"), Error);
  CHECK_THROWS_WITH_AS(conv2d(x, Tensor::zeros(Shape{4, 3, 3, 3}, DType::f64), Tensor()),
                       doctest::Contains("dtypes differ"), Error);

  const Tensor x1 = Tensor::zeros(Shape{2, 3, 4});
  CHECK_THROWS_WITH_AS(conv1d(x1, Tensor::zeros(Shape{2, 2, 3}), Tensor()),
                       doctest::Contains("conv1d: the input has 3 channels"), Error);
  CHECK_THROWS_WITH_AS(conv1d(x1, Tensor::zeros(Shape{2, 3, 5}), Tensor()),
                       doctest::Contains("conv1d: the kernel length spans 5"), Error);
  CHECK_THROWS_WITH_AS(conv1d(x1, Tensor::zeros(Shape{2, 3, 3}), Tensor(), 0),
                       doctest::Contains("conv1d: stride must be positive"), Error);
  CHECK_THROWS_WITH_AS(conv1d(x, w, Tensor()), doctest::Contains("conv1d: input must be (N, C, L)"), Error);

  CHECK_THROWS_WITH_AS(max_pool2d(x, 6), doctest::Contains("max_pool2d: the kernel height spans 6"), Error);
  CHECK_THROWS_WITH_AS(max_pool2d(x, 2, 0), doctest::Contains("max_pool2d: stride must be positive"), Error);
  CHECK_THROWS_WITH_AS(avg_pool2d(x, 0), doctest::Contains("avg_pool2d: kernel size must be positive"), Error);
  CHECK_THROWS_WITH_AS(avg_pool2d(Tensor::zeros(Shape{5, 5}), 2),
                       doctest::Contains("avg_pool2d: input must be (N, C, H, W)"), Error);
  CHECK_THROWS_WITH_AS(flatten(Tensor::scalar(1.0)), doctest::Contains("flatten: input must have rank 1..4"), Error);
}

TEST_CASE("conv2d's kernels equal the im2col + linear composition, value and first and second derivatives") {
  // The composition is the previous form of conv2d (autograd/ops_conv.cpp's note): the windows as
  // columns, one linear with the filter as (O, C*kh*kw), then back to (N, O, Ho, Wo).
  const auto composed = [](const Tensor& x, const Tensor& w, const Tensor& b, const kernels::WindowGeometry& g) {
    const std::int64_t n = x.dim(0), o = w.dim(0), k = w.dim(1) * w.dim(2) * w.dim(3), p = g.out_h * g.out_w;
    const Tensor cols = reshape(im2col(x, g), Shape{n * p, k});
    const Tensor y = linear(cols, reshape(w, Shape{o, k}), b);
    return reshape(transpose(reshape(y, Shape{n, p, o})), Shape{n, o, g.out_h, g.out_w});
  };
  struct Case {
    Shape x, w;
    std::int64_t stride, padding, dilation;
  };
  Generator gen(99);
  for (const Case& c : {Case{Shape{3, 2, 6, 5}, Shape{4, 2, 3, 3}, 1, 1, 1}, Case{Shape{2, 3, 9, 8}, Shape{2, 3, 3, 2}, 2, 1, 2},
                        Case{Shape{1, 1, 4, 4}, Shape{3, 1, 1, 1}, 1, 0, 1}}) {
    CAPTURE(c.x.str());
    const Tensor x = Tensor::uniform(c.x, -1, 1, gen, DType::f64).requires_grad_();
    const Tensor w = Tensor::uniform(c.w, -1, 1, gen, DType::f64).requires_grad_();
    const Tensor b = Tensor::uniform(Shape{c.w[0]}, -1, 1, gen, DType::f64).requires_grad_();
    const Tensor ours = conv2d(x, w, b, c.stride, c.padding, c.dilation);
    const kernels::WindowGeometry g{c.w[2], c.w[3], c.stride, c.stride, c.padding, c.padding, c.dilation, c.dilation,
                                    ours.dim(2), ours.dim(3)};
    const Tensor reference = composed(x, w, b, g);
    const auto close = [](const Tensor& a, const Tensor& r) {
      REQUIRE(a.shape() == r.shape());
      const auto u = a.to_vector<double>(), v = r.to_vector<double>();
      for (std::size_t i = 0; i < u.size(); ++i) CHECK(u[i] == doctest::Approx(v[i]).epsilon(1e-12));
    };
    close(ours, reference);
    // First order, then the second order through the gradient's squared norm (x-w cross terms).
    GradOptions keep;
    keep.create_graph = true;
    const auto g1 = grad({sum(square(ours))}, {x, w, b}, keep);
    const auto r1 = grad({sum(square(reference))}, {x, w, b}, keep);
    for (std::size_t i = 0; i < 3; ++i) close(g1[i], r1[i]);
    const auto g2 = grad({add(sum(square(g1[0])), sum(square(g1[1])))}, {x, w, b});
    const auto r2 = grad({add(sum(square(r1[0])), sum(square(r1[1])))}, {x, w, b});
    for (std::size_t i = 0; i < 3; ++i) close(g2[i], r2[i]);
  }
}

TEST_CASE("conv2d's gradient ops reject inconsistent shapes, naming them") {
  const kernels::WindowGeometry g{3, 3, 1, 1, 1, 1, 1, 1, 4, 4};
  const Tensor dy = Tensor::zeros(Shape{2, 5, 4, 4});
  CHECK_THROWS_WITH_AS(conv2d_input_grad(dy, Tensor::zeros(Shape{5, 3, 3, 3}), g, Shape{2, 2, 4, 4}),
                       doctest::Contains("must be (out, 2, 3, 3)"), Error);
  CHECK_THROWS_WITH_AS(conv2d_weight_grad(Tensor::zeros(Shape{2, 3, 4, 4}), Tensor::zeros(Shape{2, 5, 3, 4}), g,
                                          Shape{5, 3, 3, 3}),
                       doctest::Contains("expected (2, 5, 4, 4)"), Error);
}
