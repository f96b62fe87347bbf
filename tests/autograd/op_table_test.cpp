// The table-driven proof: every differentiable op, over a table of shapes (broadcasting, batched,
// task-leading), passes gradcheck and gradgradcheck in f64.
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "autograd/tape.h"

using namespace metatape;

namespace {

// Input values are drawn uniformly from [lo, hi], optionally pushed away from kinks (|x| >= gap) so
// central differences of piecewise ops are valid.
struct InputSpec {
  Shape shape;
  double lo = -1.0, hi = 1.0;
  double gap = 0.0;
  bool differentiable = true;
};

struct OpCase {
  std::string name;
  std::vector<InputSpec> inputs;
  std::function<Tensor(const std::vector<Tensor>&)> fn;
};

Tensor make_input(const InputSpec& spec, Generator& gen) {
  std::vector<double> values(static_cast<std::size_t>(spec.shape.numel()));
  for (double& v : values) {
    v = gen.uniform(spec.lo, spec.hi);
    if (spec.gap > 0 && std::abs(v) < spec.gap) v = v < 0 ? v - spec.gap : v + spec.gap;
  }
  Tensor t = Tensor::from_vector(values, spec.shape, DType::f64);
  if (spec.differentiable) t.requires_grad_();
  return t;
}

InputSpec in(Shape s, double lo = -1.0, double hi = 1.0, double gap = 0.0) { return InputSpec{s, lo, hi, gap, true}; }
InputSpec positive(Shape s) { return InputSpec{s, 0.5, 2.0, 0.0, true}; }
InputSpec kinked(Shape s) { return InputSpec{s, -1.0, 1.0, 0.1, true}; }

std::vector<OpCase> binary_cases(const std::string& name, Tensor (*op)(const Tensor&, const Tensor&),
                                 bool positive_rhs) {
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {Shape{3, 4}, Shape{3, 4}},        // same shape
      {Shape{3, 4}, Shape{}},            // scalar
      {Shape{3, 4}, Shape{4}},           // row
      {Shape{3, 4}, Shape{3, 1}},        // column
      {Shape{2, 3, 4}, Shape{2, 1, 4}},  // leading task dimension
      {Shape{1, 4}, Shape{3, 1}},        // both broadcast
      {Shape{2, 1, 3, 2}, Shape{3, 1}},  // rank 4
  };
  std::vector<OpCase> cases;
  for (const auto& [a, b] : shapes) {
    cases.push_back({name + " " + a.str() + " " + b.str(),
                     {in(a), positive_rhs ? positive(b) : in(b)},
                     [op](const std::vector<Tensor>& x) { return op(x[0], x[1]); }});
  }
  return cases;
}

template <class Fn>
void add_unary(std::vector<OpCase>& cases, const std::string& name, Fn fn, InputSpec (*spec)(Shape)) {
  for (const Shape& s : {Shape{5}, Shape{3, 4}, Shape{2, 3, 2}}) {
    cases.push_back({name + " " + s.str(), {spec(s)}, [fn](const std::vector<Tensor>& x) { return fn(x[0]); }});
  }
}

InputSpec any_value(Shape s) { return in(s, -1.5, 1.5); }
InputSpec wide(Shape s) { return in(s, -3.0, 3.0); }

std::vector<OpCase> all_cases() {
  std::vector<OpCase> cases;
  for (auto& c : binary_cases("add", &add, false)) cases.push_back(c);
  for (auto& c : binary_cases("sub", &sub, false)) cases.push_back(c);
  for (auto& c : binary_cases("mul", &mul, false)) cases.push_back(c);
  for (auto& c : binary_cases("div", &div, true)) cases.push_back(c);

  add_unary(
      cases, "neg", [](const Tensor& x) { return neg(x); }, any_value);
  add_unary(
      cases, "affine", [](const Tensor& x) { return affine(x, -2.5, 0.75); }, any_value);
  add_unary(
      cases, "exp", [](const Tensor& x) { return exp(x); }, any_value);
  add_unary(
      cases, "log", [](const Tensor& x) { return log(x); }, positive);
  add_unary(
      cases, "sqrt", [](const Tensor& x) { return sqrt(x); }, positive);
  add_unary(
      cases, "pow 2.5", [](const Tensor& x) { return pow(x, 2.5); }, positive);
  add_unary(
      cases, "pow -1.5", [](const Tensor& x) { return pow(x, -1.5); }, positive);
  add_unary(
      cases, "square", [](const Tensor& x) { return square(x); }, any_value);
  add_unary(
      cases, "abs", [](const Tensor& x) { return abs(x); }, kinked);
  add_unary(
      cases, "relu", [](const Tensor& x) { return relu(x); }, kinked);
  add_unary(
      cases, "leaky_relu", [](const Tensor& x) { return leaky_relu(x, 0.1); }, kinked);
  add_unary(
      cases, "elu", [](const Tensor& x) { return elu(x, 0.7); }, kinked);
  add_unary(
      cases, "tanh", [](const Tensor& x) { return tanh(x); }, wide);
  add_unary(
      cases, "sigmoid", [](const Tensor& x) { return sigmoid(x); }, wide);
  add_unary(
      cases, "softplus", [](const Tensor& x) { return softplus(x); }, wide);
  add_unary(
      cases, "gelu", [](const Tensor& x) { return gelu(x); }, wide);
  add_unary(
      cases, "clamp", [](const Tensor& x) { return clamp(x, -0.5, 0.5); },
      [](Shape s) {
        return InputSpec{s, -1.0, 1.0, 0.0, true};
      });
  add_unary(
      cases, "sum", [](const Tensor& x) { return sum(x); }, any_value);
  add_unary(
      cases, "mean", [](const Tensor& x) { return mean(x); }, any_value);
  add_unary(
      cases, "softmax", [](const Tensor& x) { return softmax(x); }, wide);
  add_unary(
      cases, "log_softmax", [](const Tensor& x) { return log_softmax(x); }, wide);
  // A product of two ops so the second derivative of linear-in-x ops is exercised too.
  add_unary(
      cases, "sum*sum", [](const Tensor& x) { return mul(sum(x), sum(square(x))); }, any_value);

  for (int axis : {0, 1, -1}) {
    for (bool keep : {false, true}) {
      const std::string suffix = " axis " + std::to_string(axis) + (keep ? " keepdim" : "");
      cases.push_back({"sum" + suffix, {in(Shape{3, 4})}, [axis, keep](const std::vector<Tensor>& x) {
                         return square(sum(x[0], axis, keep));
                       }});
      cases.push_back({"mean" + suffix, {in(Shape{2, 3, 4})}, [axis, keep](const std::vector<Tensor>& x) {
                         return square(mean(x[0], axis, keep));
                       }});
      cases.push_back({"max" + suffix, {in(Shape{3, 4}, -2.0, 2.0)}, [axis, keep](const std::vector<Tensor>& x) {
                         return square(max(x[0], axis, keep));
                       }});
    }
  }
  cases.push_back({"expand", {in(Shape{3, 1})}, [](const std::vector<Tensor>& x) {
                     return square(expand(x[0], Shape{2, 3, 4}));
                   }});
  cases.push_back({"sum_to", {in(Shape{2, 3, 4})}, [](const std::vector<Tensor>& x) {
                     return square(sum_to(x[0], Shape{3, 1}));
                   }});

  const std::vector<std::pair<Shape, Shape>> mm = {{Shape{3, 4}, Shape{4, 5}},
                                                   {Shape{2, 3, 4}, Shape{2, 4, 5}},
                                                   {Shape{2, 3, 4}, Shape{4, 5}},
                                                   {Shape{3, 4}, Shape{2, 4, 5}}};
  for (const auto& [a, b] : mm) {
    cases.push_back({"matmul " + a.str() + " " + b.str(), {in(a), in(b)}, [](const std::vector<Tensor>& x) {
                       return matmul(x[0], x[1]);
                     }});
    cases.push_back({"matmul^2 " + a.str() + " " + b.str(), {in(a), in(b)}, [](const std::vector<Tensor>& x) {
                       return square(matmul(x[0], x[1]));
                     }});
  }
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const Shape a = ta ? Shape{2, 4, 3} : Shape{2, 3, 4};
      const Shape b = tb ? Shape{5, 4} : Shape{4, 5};
      cases.push_back({std::string("gemm ta=") + (ta ? "1" : "0") + " tb=" + (tb ? "1" : "0"),
                       {in(a), in(b)},
                       [ta, tb](const std::vector<Tensor>& x) { return square(gemm(x[0], ta, x[1], tb)); }});
    }
  }
  cases.push_back({"linear", {in(Shape{5, 4}), in(Shape{3, 4}), in(Shape{3})}, [](const std::vector<Tensor>& x) {
                     return tanh(linear(x[0], x[1], x[2]));
                   }});
  cases.push_back({"linear no bias", {in(Shape{5, 4}), in(Shape{3, 4})}, [](const std::vector<Tensor>& x) {
                     return tanh(linear(x[0], x[1], Tensor()));
                   }});
  cases.push_back({"linear tasks x shared W",
                   {in(Shape{2, 5, 4}), in(Shape{3, 4}), in(Shape{3})},
                   [](const std::vector<Tensor>& x) { return tanh(linear(x[0], x[1], x[2])); }});
  cases.push_back({"linear tasks x tasks W",
                   {in(Shape{2, 5, 4}), in(Shape{2, 3, 4}), in(Shape{2, 1, 3})},
                   [](const std::vector<Tensor>& x) { return tanh(linear(x[0], x[1], x[2])); }});
  cases.push_back(
      {"transpose", {in(Shape{2, 3, 4})}, [](const std::vector<Tensor>& x) { return square(transpose(x[0])); }});
  cases.push_back({"reshape", {in(Shape{2, 6})}, [](const std::vector<Tensor>& x) {
                     return square(reshape(x[0], Shape{3, 2, 2}));
                   }});
  cases.push_back({"concat axis 0", {in(Shape{2, 3}), in(Shape{1, 3})}, [](const std::vector<Tensor>& x) {
                     return square(concat({x[0], x[1]}, 0));
                   }});
  cases.push_back(
      {"concat axis 1", {in(Shape{2, 3}), in(Shape{2, 2}), in(Shape{2, 1})}, [](const std::vector<Tensor>& x) {
         return square(concat({x[0], x[1], x[2]}, 1));
       }});
  cases.push_back(
      {"slice", {in(Shape{3, 5})}, [](const std::vector<Tensor>& x) { return square(slice(x[0], 1, 1, 4)); }});
  cases.push_back({"slice axis 0 rank 3", {in(Shape{4, 2, 3})}, [](const std::vector<Tensor>& x) {
                     return square(slice(x[0], 0, 1, 3));
                   }});
  cases.push_back({"pad_axis", {in(Shape{2, 2})}, [](const std::vector<Tensor>& x) {
                     return square(pad_axis(x[0], Shape{2, 5}, 1, 2));
                   }});
  const Tensor rows = Tensor::indices({2, 0, 2, 1});
  cases.push_back({"index_select", {in(Shape{3, 2})}, [rows](const std::vector<Tensor>& x) {
                     return square(index_select(x[0], rows));
                   }});
  cases.push_back({"index_add", {in(Shape{4, 2})}, [rows](const std::vector<Tensor>& x) {
                     return square(index_add(x[0], rows, 3));
                   }});
  const Tensor labels = Tensor::indices({0, 2, 1, 2});
  cases.push_back({"cross_entropy", {in(Shape{4, 3}, -2.0, 2.0)}, [labels](const std::vector<Tensor>& x) {
                     return cross_entropy(x[0], labels);
                   }});
  cases.push_back({"nll", {in(Shape{4, 3}, -2.0, 2.0)}, [labels](const std::vector<Tensor>& x) {
                     return nll(log_softmax(x[0]), labels);
                   }});
  cases.push_back(
      {"mse", {in(Shape{4, 2}), in(Shape{4, 2})}, [](const std::vector<Tensor>& x) { return mse(x[0], x[1]); }});
  cases.push_back({"pairwise_sqdist", {in(Shape{4, 3}), in(Shape{5, 3})}, [](const std::vector<Tensor>& x) {
                     return pairwise_sqdist(x[0], x[1]);
                   }});
  cases.push_back({"pairwise_sqdist batched",
                   {in(Shape{2, 4, 3}), in(Shape{2, 5, 3})},
                   [](const std::vector<Tensor>& x) { return pairwise_sqdist(x[0], x[1]); }});
  cases.push_back({"cosine_similarity", {in(Shape{4, 3}), in(Shape{5, 3})}, [](const std::vector<Tensor>& x) {
                     return cosine_similarity(x[0], x[1]);
                   }});
  Generator mask_gen(11);
  const Tensor mask =
      greater(Tensor::uniform(Shape{3, 4}, 0, 1, mask_gen, DType::f64), Tensor::scalar(0.5, DType::f64));
  cases.push_back({"where", {in(Shape{3, 4}), in(Shape{4})}, [mask](const std::vector<Tensor>& x) {
                     return square(where(mask, x[0], x[1]));
                   }});
  cases.push_back({"dropout", {in(Shape{4, 5})}, [](const std::vector<Tensor>& x) {
                     Generator gen(3);  // same mask on every evaluation
                     return square(dropout(x[0], 0.3, gen));
                   }});
  return cases;
}

std::vector<OpCase> conv_cases() {
  std::vector<OpCase> cases;
  // Convolution and pooling (autograd/ops_conv.cpp): stride 1 and 2, padding 0 and 1, dilation 1 and
  // 2, kernel 1 and 3, odd and non-square sizes, with and without bias. tanh on top so the second
  // derivative has terms beyond conv's own x-w cross terms.
  struct ConvCase {
    Shape x;
    std::int64_t out, k, stride, padding, dilation;
    bool bias;
  };
  for (const ConvCase& c : std::vector<ConvCase>{{Shape{2, 2, 5, 5}, 3, 3, 1, 0, 1, true},
                                                 {Shape{1, 2, 5, 4}, 2, 3, 2, 1, 1, true},
                                                 {Shape{1, 2, 7, 5}, 2, 3, 1, 1, 2, false},
                                                 {Shape{2, 3, 3, 5}, 2, 1, 2, 0, 1, true},
                                                 {Shape{1, 1, 3, 3}, 2, 1, 1, 1, 1, true},
                                                 {Shape{1, 1, 6, 5}, 2, 3, 2, 1, 2, true}}) {
    const std::int64_t s = c.stride, p = c.padding, d = c.dilation;
    std::vector<InputSpec> ins = {in(c.x), in(Shape{c.out, c.x[1], c.k, c.k})};
    if (c.bias) ins.push_back(in(Shape{c.out}));
    cases.push_back({"conv2d " + c.x.str() + " k" + std::to_string(c.k) + " s" + std::to_string(s) + " p" +
                         std::to_string(p) + " d" + std::to_string(d) + (c.bias ? "" : " no bias"),
                     ins, [s, p, d](const std::vector<Tensor>& x) {
                       return tanh(conv2d(x[0], x[1], x.size() > 2 ? x[2] : Tensor(), s, p, d));
                     }});
  }
  for (const ConvCase& c : std::vector<ConvCase>{{Shape{2, 2, 7}, 3, 3, 1, 0, 1, true},
                                                 {Shape{1, 3, 9}, 2, 3, 2, 1, 2, false},
                                                 {Shape{2, 2, 5}, 2, 1, 2, 1, 1, true},
                                                 {Shape{1, 2, 8}, 2, 3, 1, 1, 2, true}}) {
    const std::int64_t s = c.stride, p = c.padding, d = c.dilation;
    std::vector<InputSpec> ins = {in(c.x), in(Shape{c.out, c.x[1], c.k})};
    if (c.bias) ins.push_back(in(Shape{c.out}));
    cases.push_back({"conv1d " + c.x.str() + " k" + std::to_string(c.k) + " s" + std::to_string(s) + " p" +
                         std::to_string(p) + " d" + std::to_string(d) + (c.bias ? "" : " no bias"),
                     ins, [s, p, d](const std::vector<Tensor>& x) {
                       return tanh(conv1d(x[0], x[1], x.size() > 2 ? x[2] : Tensor(), s, p, d));
                     }});
  }
  struct PoolCase {
    Shape x;
    std::int64_t k, stride;
  };
  for (const PoolCase& c : std::vector<PoolCase>{{Shape{2, 2, 4, 4}, 2, 2},
                                                 {Shape{1, 2, 5, 5}, 2, 2},
                                                 {Shape{1, 2, 5, 4}, 3, 2},
                                                 {Shape{1, 1, 4, 5}, 2, 1},
                                                 {Shape{1, 2, 3, 3}, 1, 1}}) {
    const std::int64_t k = c.k, st = c.stride;
    std::string suffix = c.x.str();
    suffix.insert(0, 1, ' ');
    suffix += " k" + std::to_string(k) + " s" + std::to_string(st);
    cases.push_back({"max_pool2d" + suffix, {in(c.x, -2.0, 2.0)}, [k, st](const std::vector<Tensor>& x) {
                       return square(max_pool2d(x[0], k, st));
                     }});
    cases.push_back({"avg_pool2d" + suffix, {in(c.x)}, [k, st](const std::vector<Tensor>& x) {
                       return square(avg_pool2d(x[0], k, st));
                     }});
  }
  for (const Shape& s : {Shape{2, 2, 3, 2}, Shape{3, 2, 2}, Shape{4}}) {
    cases.push_back(
        {"flatten " + s.str(), {in(s)}, [](const std::vector<Tensor>& x) { return square(flatten(x[0])); }});
  }
  // The layout pair itself (im2col's input is an image, col2im's the columns), padding and stride 2.
  for (const kernels::WindowGeometry& g : {kernels::WindowGeometry{3, 3, 1, 1, 1, 1, 1, 1, 4, 5},
                                           kernels::WindowGeometry{3, 2, 2, 1, 0, 1, 1, 1, 1, 6}}) {
    const Shape image{2, 2, 4, 5};
    const std::string suffix = " k" + std::to_string(g.kh) + "x" + std::to_string(g.kw) + " s" + std::to_string(g.sh);
    cases.push_back({"im2col" + suffix, {in(image)}, [g](const std::vector<Tensor>& x) {
                       return square(im2col(x[0], g));
                     }});
    cases.push_back({"col2im" + suffix,
                     {in(Shape{image[0], g.out_h * g.out_w, image[1] * g.kh * g.kw})},
                     [g, image](const std::vector<Tensor>& x) { return square(col2im(x[0], g, image)); }});
  }
  // conv2d's gradient ops on their own (their backward is the other two; tanh adds curvature).
  {
    const kernels::WindowGeometry g{3, 3, 2, 1, 1, 0, 1, 2, 3, 3};  // image (2, 2, 5, 7), weight (3, 2, 3, 3)
    const Shape image{2, 2, 5, 7}, filter{3, 2, 3, 3};
    cases.push_back({"conv2d_input_grad s2x1 p1x0 d1x2", {in(Shape{2, 3, 3, 3}), in(filter)},
                     [g, image](const std::vector<Tensor>& x) { return tanh(conv2d_input_grad(x[0], x[1], g, image)); }});
    cases.push_back({"conv2d_weight_grad s2x1 p1x0 d1x2", {in(image), in(Shape{2, 3, 3, 3})},
                     [g, filter](const std::vector<Tensor>& x) { return tanh(conv2d_weight_grad(x[0], x[1], g, filter)); }});
  }
  // A Conv-4-like block end to end: conv -> tanh -> max_pool -> flatten -> linear.
  cases.push_back({"conv block",
                   {in(Shape{2, 1, 6, 6}), in(Shape{2, 1, 3, 3}), in(Shape{2}), in(Shape{3, 18})},
                   [](const std::vector<Tensor>& x) {
                     const Tensor h = max_pool2d(tanh(conv2d(x[0], x[1], x[2], 1, 1, 1)), 2);
                     return linear(flatten(h), x[3], Tensor());
                   }});
  return cases;
}

std::vector<OpCase> norm_cases() {
  std::vector<OpCase> cases;
  // batch_norm in training mode (batch statistics inside the graph), with and without the affine
  // parameters, over (N, C, H, W) and (N, C); in evaluation mode on fixed running statistics.
  // Inputs drawn on [-2, 2] so the variance is well away from eps. tanh on top adds curvature.
  for (const Shape& s : {Shape{3, 2, 2, 3}, Shape{5, 3}, Shape{2, 1, 3, 1}}) {
    const std::int64_t c = s[1];
    cases.push_back({"batch_norm " + s.str(), {in(s, -2.0, 2.0), in(Shape{c}), in(Shape{c})},
                     [](const std::vector<Tensor>& x) { return tanh(batch_norm(x[0], x[1], x[2])); }});
    cases.push_back({"batch_norm " + s.str() + " no affine", {in(s, -2.0, 2.0)},
                     [](const std::vector<Tensor>& x) { return tanh(batch_norm(x[0], Tensor(), Tensor())); }});
  }
  cases.push_back({"batch_norm (N, C, H, W) eval on running statistics",
                   {in(Shape{2, 3, 2, 2}), in(Shape{3}), in(Shape{3})},
                   [](const std::vector<Tensor>& x) {
                     BatchNormStats stats{Tensor::from_vector(std::vector<double>{0.5, -0.25, 0.0}, Shape{3}, DType::f64),
                                          Tensor::from_vector(std::vector<double>{2.0, 0.5, 1.0}, Shape{3}, DType::f64)};
                     return tanh(batch_norm(x[0], x[1], x[2], false, &stats));
                   }});
  for (const Shape& s : {Shape{4, 5}, Shape{2, 3, 4}, Shape{2, 1, 2, 3}, Shape{6}}) {
    const std::int64_t f = s[s.rank - 1];
    cases.push_back({"layer_norm " + s.str(), {in(s, -2.0, 2.0), in(Shape{f}), in(Shape{f})},
                     [](const std::vector<Tensor>& x) { return tanh(layer_norm(x[0], x[1], x[2])); }});
  }
  cases.push_back({"layer_norm (3, 4) no affine", {in(Shape{3, 4}, -2.0, 2.0)},
                   [](const std::vector<Tensor>& x) { return tanh(layer_norm(x[0], Tensor(), Tensor())); }});
  // A Conv-4 block as MAML uses it: conv -> batch_norm (batch statistics) -> tanh -> max_pool -> linear.
  cases.push_back({"conv-bn block",
                   {in(Shape{3, 1, 4, 4}), in(Shape{2, 1, 3, 3}), in(Shape{2}), in(Shape{2}), in(Shape{2}),
                    in(Shape{2, 8})},
                   [](const std::vector<Tensor>& x) {
                     const Tensor h = max_pool2d(tanh(batch_norm(conv2d(x[0], x[1], x[2], 1, 1, 1), x[3], x[4])), 2);
                     return linear(flatten(h), x[5], Tensor());
                   }});
  return cases;
}

int check_cases(const std::vector<OpCase>& cases) {
  Generator gen(2024);
  int checked = 0;
  for (const OpCase& c : cases) {
    CAPTURE(c.name);
    std::vector<Tensor> inputs;
    for (const InputSpec& spec : c.inputs) inputs.push_back(make_input(spec, gen));
    const GradcheckResult first = gradcheck(c.fn, inputs);
    CHECK_MESSAGE(first.ok, c.name << ": " << first.message);
    const GradcheckResult second = gradgradcheck(c.fn, inputs);
    CHECK_MESSAGE(second.ok, c.name << ": " << second.message);
    ++checked;
  }
  return checked;
}

}  // namespace

TEST_CASE("every op passes gradcheck and gradgradcheck in f64 over the shape table") {
  const int checked = check_cases(all_cases());
  MESSAGE("op table: " << checked << " cases checked at first and second order");
  CHECK(checked > 100);
}

TEST_CASE("every conv and pool op passes gradcheck and gradgradcheck in f64 over its shape table") {
  const int checked = check_cases(conv_cases());
  MESSAGE("conv op table: " << checked << " cases checked at first and second order");
  CHECK(checked == 30);  // 6 conv2d, 4 conv1d, 5 x 2 pools, 3 flatten, 2 x 2 im2col / col2im, 2 conv grads, 1 block
}

TEST_CASE("batch_norm and layer_norm pass gradcheck and gradgradcheck in f64 over their shape table") {
  const int checked = check_cases(norm_cases());
  MESSAGE("norm op table: " << checked << " cases checked at first and second order");
  CHECK(checked == 13);  // 3 x 2 batch_norm, 1 eval-mode batch_norm, 5 layer_norm, 1 conv-bn block
}

TEST_CASE("gradcheck catches a wrong derivative") {
  // A deliberately wrong op: forward is x^2, the recorded backward claims 3x.
  auto wrong_square = [](const std::vector<Tensor>& x) {
    const Tensor& v = x[0];
    Tensor y = square(v.detach());
    return record("wrong_square", y, {v}, [](const Node& n, const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{mul(g, affine(n.inputs[0], 3.0, 0.0))};
    });
  };
  Generator gen(1);
  Tensor x = Tensor::uniform(Shape{4}, 0.5, 1.0, gen, DType::f64).requires_grad_();
  CHECK_FALSE(gradcheck(wrong_square, {x}).ok);
  // Right first derivative, wrong (missing) second derivative: backward uses a detached input.
  auto no_second = [](const std::vector<Tensor>& x) {
    const Tensor& v = x[0];
    Tensor y = square(v.detach());
    return record("no_second", y, {v}, [](const Node& n, const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{mul(g, affine(n.inputs[0].detach(), 2.0, 0.0))};
    });
  };
  CHECK(gradcheck(no_second, {x}).ok);
  CHECK_FALSE(gradgradcheck(no_second, {x}).ok);
}
