// CUDA against the CPU reference, table-driven: every op of autograd/ops.h (and the fused updates of
// autograd/update_ops.h) runs forward, first-order gradient and second-order gradient on both devices
// from the same freshly drawn f32 inputs. Device outputs come from poisoned memory (every block the
// CUDA allocator hands out is NaN-filled first), so an element a kernel forgets to write fails.
// Tolerances (normwise: max |cuda - cpu| / max(max |cpu|, 1e-3)): forward 1e-5, gradients 1e-4.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "autograd/update_ops.h"
#include "gpu_available.h"
#ifdef METATAPE_WITH_CUDA
#include "kernels/cuda/caching_allocator.h"
#endif

using namespace metatape;

namespace {

enum class Kind { normal, positive, labels, mask };

struct Input {
  Shape shape;
  Kind kind = Kind::normal;
  std::int64_t bound = 0;           // labels / indices: values in [0, bound)
  std::vector<std::int64_t> fixed;  // labels / indices given explicitly
};

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

struct OpCase {
  std::string name;
  std::vector<Input> inputs;
  Fn fn;
  bool differentiable = true;
};

Input normal(Shape s) { return Input{s, Kind::normal, 0, {}}; }
Input positive(Shape s) { return Input{s, Kind::positive, 0, {}}; }
Input labels(std::int64_t rows, std::int64_t classes) { return Input{Shape{rows}, Kind::labels, classes, {}}; }
Input index(std::vector<std::int64_t> values) {
  return Input{Shape{static_cast<std::int64_t>(values.size())}, Kind::labels, 0, std::move(values)};
}
Input mask(Shape s) { return Input{s, Kind::mask, 0, {}}; }

std::vector<OpCase> op_table() {
  using V = const std::vector<Tensor>&;
  std::vector<OpCase> t;
  auto add_case = [&](std::string name, std::vector<Input> in, Fn fn, bool diff = true) {
    t.push_back(OpCase{std::move(name), std::move(in), std::move(fn), diff});
  };
  // elementwise, broadcasting
  add_case("add", {normal({5, 7}), normal({5, 7})}, [](V x) { return add(x[0], x[1]); });
  add_case("add broadcast", {normal({2, 5, 7}), normal({7})}, [](V x) { return add(x[0], x[1]); });
  add_case("sub broadcast", {normal({5, 7}), normal({5, 1})}, [](V x) { return sub(x[0], x[1]); });
  add_case("mul broadcast", {normal({2, 3, 4}), normal({3, 1})}, [](V x) { return mul(x[0], x[1]); });
  add_case("mul", {normal({33, 9}), normal({33, 9})}, [](V x) { return mul(x[0], x[1]); });
  add_case("mul float4 path", {normal({16, 20}), normal({16, 20})}, [](V x) { return mul(x[0], x[1]); });
  add_case("sub scalar float4 path", {normal({3, 4, 8}), normal({1})}, [](V x) { return sub(x[0], x[1]); });
  add_case("tanh float4 path", {normal({12, 36})}, [](V x) { return tanh(x[0]); });
  add_case("div", {normal({5, 7}), positive({5, 7})}, [](V x) { return div(x[0], x[1]); });
  add_case("div broadcast", {normal({4, 1, 7}), positive({3, 1})}, [](V x) { return div(x[0], x[1]); });
  add_case("affine", {normal({5, 7})}, [](V x) { return affine(x[0], 1.5, -0.5); });
  add_case("scalar operators", {normal({5, 7})}, [](V x) { return 2.0 - x[0] * 3.0 + 1.0; });
  add_case("neg", {normal({5, 7})}, [](V x) { return neg(x[0]); });
  add_case("exp", {normal({5, 7})}, [](V x) { return exp(x[0]); });
  add_case("log", {positive({5, 7})}, [](V x) { return log(x[0]); });
  add_case("sqrt", {positive({5, 7})}, [](V x) { return sqrt(x[0]); });
  add_case("pow", {positive({5, 7})}, [](V x) { return pow(x[0], 2.5); });
  add_case("square", {normal({5, 7})}, [](V x) { return square(x[0]); });
  add_case("abs", {normal({5, 7})}, [](V x) { return abs(x[0]); });
  add_case("relu", {normal({5, 7})}, [](V x) { return relu(x[0]); });
  add_case("leaky_relu", {normal({5, 7})}, [](V x) { return leaky_relu(x[0], 0.1); });
  add_case("elu", {normal({5, 7})}, [](V x) { return elu(x[0], 0.7); });
  add_case("tanh", {normal({5, 7})}, [](V x) { return tanh(x[0]); });
  add_case("sigmoid", {normal({5, 7})}, [](V x) { return sigmoid(x[0]); });
  add_case("softplus", {normal({5, 7})}, [](V x) { return softplus(x[0]); });
  add_case("gelu", {normal({5, 7})}, [](V x) { return gelu(x[0]); });
  add_case("clamp", {normal({5, 7})}, [](V x) { return clamp(x[0], -0.5, 0.5); });
  add_case("where", {mask({5, 7}), normal({5, 7}), normal({7})}, [](V x) { return where(x[0], x[1], x[2]); });
  add_case("dropout", {normal({6, 9})}, [](V x) {
    Generator g(11);
    return dropout(x[0], 0.3, g);
  });
  // reductions
  add_case("sum", {normal({5, 7})}, [](V x) { return sum(x[0]); });
  add_case("sum axis 1", {normal({3, 33, 5})}, [](V x) { return sum(x[0], 1); });
  add_case("sum axis 0 keepdim", {normal({40, 6})}, [](V x) { return sum(x[0], 0, true); });
  add_case("sum last axis long", {normal({3, 300})}, [](V x) { return sum(x[0], -1); });
  add_case("mean", {normal({4, 9})}, [](V x) { return mean(x[0]); });
  add_case("mean axis", {normal({4, 9, 3})}, [](V x) { return mean(x[0], -1, true); });
  add_case("max axis 1", {normal({4, 9, 6})}, [](V x) { return max(x[0], 1); });
  add_case("max last axis", {normal({5, 40})}, [](V x) { return max(x[0], -1, true); });
  add_case("sum_to middle", {normal({6, 5, 7})}, [](V x) { return sum_to(x[0], Shape{5, 1}); });
  add_case("sum_to leading", {normal({45, 128})}, [](V x) { return sum_to(x[0], Shape{128}); });
  add_case("expand", {normal({1, 7})}, [](V x) { return expand(x[0], Shape{4, 5, 7}); });
  // linear algebra
  add_case("gemm nn", {normal({5, 4}), normal({4, 6})}, [](V x) { return gemm(x[0], false, x[1], false); });
  add_case("gemm tn", {normal({4, 5}), normal({4, 6})}, [](V x) { return gemm(x[0], true, x[1], false); });
  add_case("gemm nt", {normal({5, 4}), normal({6, 4})}, [](V x) { return gemm(x[0], false, x[1], true); });
  add_case("gemm tt", {normal({4, 5}), normal({6, 4})}, [](V x) { return gemm(x[0], true, x[1], true); });
  add_case("gemm batched, shared b", {normal({3, 5, 4}), normal({4, 6})},
           [](V x) { return gemm(x[0], false, x[1], false); });
  add_case("gemm batched both", {normal({3, 5, 4}), normal({3, 4, 6})},
           [](V x) { return gemm(x[0], false, x[1], false); });
  add_case("gemm batched a^T, shared b^T", {normal({3, 4, 5}), normal({6, 4})},
           [](V x) { return gemm(x[0], true, x[1], true); });
  add_case("gemm shared a, batched b", {normal({5, 4}), normal({3, 4, 6})},
           [](V x) { return gemm(x[0], false, x[1], false); });
  add_case("matmul", {normal({7, 3}), normal({3, 2})}, [](V x) { return matmul(x[0], x[1]); });
  add_case("linear W1 layer", {normal({45, 50}), normal({128, 50}), normal({128})},
           [](V x) { return linear(x[0], x[1], x[2]); });
  add_case("linear batched weights", {normal({3, 15, 50}), normal({3, 8, 50}), normal({3, 1, 8})},
           [](V x) { return linear(x[0], x[1], x[2]); });
  add_case("linear batched input", {normal({3, 15, 10}), normal({8, 10}), normal({8})},
           [](V x) { return linear(x[0], x[1], x[2]); });
  add_case("pairwise_sqdist", {normal({6, 5}), normal({7, 5})}, [](V x) { return pairwise_sqdist(x[0], x[1]); });
  add_case("pairwise_sqdist batched", {normal({2, 6, 5}), normal({2, 7, 5})},
           [](V x) { return pairwise_sqdist(x[0], x[1]); });
  add_case("cosine_similarity", {normal({6, 5}), normal({7, 5})}, [](V x) { return cosine_similarity(x[0], x[1]); });
  // shape
  add_case("reshape", {normal({4, 6})}, [](V x) {
    return mul(reshape(x[0], Shape{2, 12}), reshape(x[0], Shape{2, 12}));
  });
  add_case("transpose", {normal({3, 33, 65})}, [](V x) { return transpose(x[0]); });
  add_case("concat axis 0", {normal({2, 5}), normal({3, 5})}, [](V x) { return concat({x[0], x[1]}, 0); });
  add_case("concat axis 1", {normal({4, 2, 3}), normal({4, 5, 3})}, [](V x) { return concat({x[0], x[1]}, 1); });
  add_case("slice", {normal({6, 7})}, [](V x) { return slice(x[0], 1, 2, 5); });
  add_case("slice axis 0", {normal({6, 3, 2})}, [](V x) { return slice(x[0], 0, 1, 4); });
  add_case("index_select", {normal({6, 4}), index({0, 5, 2, 2, 1})}, [](V x) { return index_select(x[0], x[1]); });
  add_case("index_add", {normal({5, 4}), index({0, 5, 2, 2, 1})}, [](V x) { return index_add(x[0], x[1], 6); });
  // convolution, pooling and normalisation (autograd/ops_conv.cpp, ops_norm.cpp): the im2col / col2im
  // kernels with padding, stride and dilation, and the compositions built on them.
  const kernels::WindowGeometry window{3, 2, 2, 1, 1, 0, 1, 2, 3, 3};  // (2, 3, 5, 5) image: 3 x 3 positions
  add_case("im2col", {normal({2, 3, 5, 5})}, [window](V x) { return im2col(x[0], window); });
  add_case("col2im", {normal({2, 9, 18})}, [window](V x) { return col2im(x[0], window, Shape{2, 3, 5, 5}); });
  add_case("conv2d s1 p1", {normal({3, 2, 7, 6}), normal({4, 2, 3, 3}), normal({4})},
           [](V x) { return conv2d(x[0], x[1], x[2], 1, 1, 1); });
  add_case("conv2d s2 p1 d2", {normal({2, 3, 9, 8}), normal({5, 3, 3, 3}), normal({5})},
           [](V x) { return conv2d(x[0], x[1], x[2], 2, 1, 2); });
  add_case("conv1d causal d2", {normal({2, 3, 11}), normal({4, 3, 3}), normal({4})},
           [](V x) { return conv1d(pad_axis(x[0], Shape{2, 3, 15}, 2, 4), x[1], x[2], 1, 0, 2); });
  const kernels::WindowGeometry conv_g{3, 3, 2, 1, 1, 0, 1, 2, 3, 3};  // image (2, 2, 5, 7), filter (3, 2, 3, 3)
  add_case("conv2d_input_grad (cuDNN backward data)", {normal({2, 3, 3, 3}), normal({3, 2, 3, 3})},
           [conv_g](V x) { return conv2d_input_grad(x[0], x[1], conv_g, Shape{2, 2, 5, 7}); });
  add_case("conv2d_weight_grad (cuDNN backward filter)", {normal({2, 2, 5, 7}), normal({2, 3, 3, 3})},
           [conv_g](V x) { return conv2d_weight_grad(x[0], x[1], conv_g, Shape{3, 2, 3, 3}); });
  add_case("conv2d empty batch", {normal({0, 2, 5, 5}), normal({3, 2, 3, 3}), normal({3})},
           [](V x) { return conv2d(x[0], x[1], x[2], 1, 1, 1); });
  add_case("max_pool2d", {normal({2, 3, 7, 6})}, [](V x) { return max_pool2d(x[0], 2); });
  add_case("avg_pool2d s1", {normal({2, 3, 5, 6})}, [](V x) { return avg_pool2d(x[0], 3, 1); });
  add_case("batch_norm (N, C, H, W)", {normal({4, 3, 5, 5}), normal({3}), normal({3})},
           [](V x) { return batch_norm(x[0], x[1], x[2]); });
  add_case("batch_norm (N, C)", {normal({9, 5}), normal({5}), normal({5})}, [](V x) { return batch_norm(x[0], x[1], x[2]); });
  add_case("layer_norm", {normal({2, 6, 10}), normal({10}), normal({10})}, [](V x) { return layer_norm(x[0], x[1], x[2]); });
  add_case("pad_axis", {normal({3, 4})}, [](V x) { return pad_axis(x[0], Shape{3, 9}, 1, 2); });
  // softmax and losses
  add_case("softmax", {normal({5, 7})}, [](V x) { return softmax(x[0]); });
  add_case("softmax wide", {normal({2, 3, 40})}, [](V x) { return softmax(x[0]); });
  add_case("log_softmax", {normal({5, 7})}, [](V x) { return log_softmax(x[0]); });
  add_case("log_softmax wide", {normal({3, 70})}, [](V x) { return log_softmax(x[0]); });
  add_case("cross_entropy W1", {normal({45, 3}), labels(45, 3)}, [](V x) { return cross_entropy(x[0], x[1]); });
  add_case("cross_entropy wide", {normal({10, 70}), labels(10, 70)}, [](V x) { return cross_entropy(x[0], x[1]); });
  add_case("nll", {normal({9, 4}), labels(9, 4)}, [](V x) { return nll(log_softmax(x[0]), x[1]); });
  add_case("mse", {normal({10, 1}), normal({10, 1})}, [](V x) { return mse(x[0], x[1]); });
  // fused updates
  add_case("inner_update scalar", {normal({8, 5}), normal({8, 5})},
           [](V x) { return mul(inner_update(x[0], x[1], 0.01), x[0]); });
  add_case("inner_update per-parameter rates", {normal({8, 5}), normal({8, 5}), positive({8, 5})},
           [](V x) { return inner_update(x[0], mul(x[1], x[0]), x[2]); });
  add_case("inner_update one rate", {normal({8, 5}), normal({8, 5}), positive({1})},
           [](V x) { return square(inner_update(x[0], x[1], x[2])); });
  // not differentiable
  add_case(
      "one_hot", {labels(9, 5)}, [](V x) { return one_hot(x[0], 5); }, false);
  add_case(
      "argmax", {normal({5, 7})}, [](V x) { return argmax(x[0], 1); }, false);
  add_case(
      "greater", {normal({5, 7}), normal({7})}, [](V x) { return greater(x[0], x[1]); }, false);
  return t;
}

std::vector<Tensor> draw_inputs(const OpCase& op, Generator& gen) {
  std::vector<Tensor> out;
  for (const Input& in : op.inputs) {
    switch (in.kind) {
      case Kind::normal:
        out.push_back(Tensor::normal(in.shape, 0.0, 1.0, gen));
        break;
      case Kind::positive:
        out.push_back(Tensor::uniform(in.shape, 0.5, 2.0, gen));
        break;
      case Kind::mask: {
        std::vector<double> m(static_cast<std::size_t>(in.shape.numel()));
        for (double& v : m) v = gen.uniform() < 0.5 ? 0.0 : 1.0;
        out.push_back(Tensor::from_vector(m, in.shape));
        break;
      }
      case Kind::labels: {
        std::vector<std::int64_t> v = in.fixed;
        if (v.empty()) {
          for (std::int64_t i = 0; i < in.shape.numel(); ++i) {
            v.push_back(static_cast<std::int64_t>(gen.below(static_cast<std::uint64_t>(in.bound))));
          }
        }
        out.push_back(Tensor::indices(v));
        break;
      }
    }
  }
  return out;
}

// Normwise relative error; NaN or Inf on the device where the reference is finite fails outright.
void check_close(const Tensor& device, const Tensor& reference, double rtol, const std::string& what) {
  INFO(what);
  REQUIRE(device.defined() == reference.defined());
  if (!reference.defined()) return;
  REQUIRE(device.shape() == reference.shape());
  REQUIRE(device.dtype() == reference.dtype());
  const std::vector<double> a = device.to_vector<double>();
  const std::vector<double> e = reference.to_vector<double>();
  double scale = 1e-3, worst = 0.0;
  std::size_t worst_at = 0;
  for (double v : e) scale = std::max(scale, std::abs(v));
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isfinite(e[i]) && !std::isfinite(a[i])) {
      FAIL_CHECK("element " << i << " is " << a[i] << " on CUDA (unwritten or overflow), CPU has " << e[i]);
      return;
    }
    const double err = std::abs(a[i] - e[i]);
    if (err > worst) {
      worst = err;
      worst_at = i;
    }
  }
  INFO("worst element " << worst_at << ": cuda " << (a.empty() ? 0.0 : a[worst_at]) << " cpu "
                        << (e.empty() ? 0.0 : e[worst_at]) << ", relative error " << worst / scale);
  CHECK(worst / scale <= rtol);
}

std::vector<Tensor> float_inputs_requiring_grad(std::vector<Tensor>& xs) {
  std::vector<Tensor> diff;
  for (Tensor& x : xs) {
    if (x.dtype() != DType::i64) {
      x.requires_grad_(true);
      diff.push_back(x);
    }
  }
  return diff;
}

// Forward, gradient and second-order gradient of `op` on `device`, against the CPU.
void run_parity(const OpCase& op, std::uint64_t seed, Device device) {
  INFO("op '" << op.name << "', seed " << seed);
  Generator gen(seed);
  std::vector<Tensor> cpu = draw_inputs(op, gen);
  std::vector<Tensor> dev;
  for (const Tensor& x : cpu) dev.push_back(x.to(device));
  const Tensor y_cpu = op.fn(cpu);
  const Tensor y_dev = op.fn(dev);
  REQUIRE(y_dev.device() == device);
  check_close(y_dev, y_cpu, 1e-5, "forward");
  if (!op.differentiable) return;

  std::vector<Tensor> dcpu = float_inputs_requiring_grad(cpu);
  std::vector<Tensor> ddev = float_inputs_requiring_grad(dev);
  const Tensor z_cpu = op.fn(cpu);
  const Tensor z_dev = op.fn(dev);
  REQUIRE(z_cpu.requires_grad());
  const Tensor w = Tensor::normal(z_cpu.shape(), 0.0, 1.0, gen);
  GradOptions first;
  first.create_graph = true;
  first.allow_unused = true;
  const std::vector<Tensor> g_cpu = grad({sum(mul(z_cpu, w))}, dcpu, first);
  const std::vector<Tensor> g_dev = grad({sum(mul(z_dev, w.to(device)))}, ddev, first);
  Tensor gg_cpu_out, gg_dev_out;
  for (std::size_t j = 0; j < g_cpu.size(); ++j) {
    check_close(g_dev[j], g_cpu[j], 1e-4, "gradient of input " + std::to_string(j));
    if (!g_cpu[j].requires_grad()) continue;
    const Tensor v = Tensor::normal(g_cpu[j].shape(), 0.0, 1.0, gen);
    const Tensor tc = sum(mul(g_cpu[j], v));
    const Tensor td = sum(mul(g_dev[j], v.to(device)));
    gg_cpu_out = gg_cpu_out.defined() ? add(gg_cpu_out, tc) : tc;
    gg_dev_out = gg_dev_out.defined() ? add(gg_dev_out, td) : td;
  }
  if (!gg_cpu_out.defined()) return;  // the gradient does not depend on the inputs (linear op)
  GradOptions second;
  second.allow_unused = true;
  const std::vector<Tensor> h_cpu = grad({gg_cpu_out}, dcpu, second);
  const std::vector<Tensor> h_dev = grad({gg_dev_out}, ddev, second);
  for (std::size_t j = 0; j < h_cpu.size(); ++j) {
    check_close(h_dev[j], h_cpu[j], 1e-4, "second-order gradient of input " + std::to_string(j));
  }
}

std::uint64_t base_seed() {
  const char* env = std::getenv("METATAPE_TEST_SEED");
  return env ? std::strtoull(env, nullptr, 10) : 20261126;
}

// METATAPE_PARITY_OPS=a,b,c keeps the cases whose name contains one of the comma-separated parts
// (scripts/gpu-check.sh uses it to keep the slow sanitizer runs short).
bool selected(const std::string& name) {
  const char* env = std::getenv("METATAPE_PARITY_OPS");
  if (env == nullptr || *env == 0) return true;
  const std::string list = env;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t end = std::min(list.find(',', start), list.size());
    const std::string part = list.substr(start, end - start);
    if (!part.empty() && name.find(part) != std::string::npos) return true;
    start = end + 1;
  }
  return false;
}

struct PoisonGuard {
#ifdef METATAPE_WITH_CUDA
  PoisonGuard() { kernels::cuda::CachingAllocator::instance().set_poison(true); }
  ~PoisonGuard() { kernels::cuda::CachingAllocator::instance().set_poison(false); }
#endif
};

}  // namespace

TEST_CASE("cuda parity: every op, its gradient and its second-order gradient match the CPU") {
  // METATAPE_PARITY_DEVICE=cpu runs the table CPU against CPU: a self-check of the harness itself.
  const char* target = std::getenv("METATAPE_PARITY_DEVICE");
  const bool self_check = target != nullptr && std::string(target) == "cpu";
  if (!self_check && !gpu_available()) return;
  const Device device = self_check ? Device::cpu : Device::cuda;
  [[maybe_unused]] PoisonGuard poison;
  const std::vector<OpCase> table = op_table();
  int ran = 0;
  for (std::size_t i = 0; i < table.size(); ++i) {
    if (!selected(table[i].name)) continue;
    ++ran;
    for (std::uint64_t k = 0; k < 2; ++k) {
      TapeScope scope;
      run_parity(table[i], base_seed() + 1000 * i + k, device);
    }
  }
  MESSAGE(ran << " of " << table.size() << " op cases compared on " << std::string(kernels::device_name(device)));
  CHECK(ran > 0);
}

TEST_CASE("cuda: cuDNN convolution and its two gradients are bit-identical run to run (deterministic algorithms)") {
  if (!gpu_available()) return;
  Generator gen(5);
  const Tensor x = Tensor::uniform(Shape{8, 16, 14, 14}, -1, 1, gen).to(Device::cuda).requires_grad_();
  const Tensor w = Tensor::uniform(Shape{32, 16, 3, 3}, -1, 1, gen).to(Device::cuda).requires_grad_();
  auto once = [&] {
    TapeScope scope;
    const Tensor y = conv2d(x, w, Tensor(), 1, 1, 1);
    const auto g = grad({sum(square(y))}, {x, w});
    return std::vector<std::vector<float>>{y.to_vector<float>(), g[0].to_vector<float>(), g[1].to_vector<float>()};
  };
  const auto first = once(), second = once();
  for (std::size_t i = 0; i < first.size(); ++i) CHECK(first[i] == second[i]);
}
