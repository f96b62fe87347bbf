#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/ops.h"
#include "autograd/tape.h"

namespace metatape {
namespace {

// The scalar whose gradient is compared, and its analytic gradient with respect to `inputs`.
using ScalarFn = std::function<Tensor(const std::vector<Tensor>&)>;

GradcheckResult compare(const ScalarFn& scalar, const std::vector<Tensor>& inputs, const GradcheckOptions& options,
                        const char* what) {
  for (const Tensor& t : inputs) {
    if (t.dtype() != DType::f64 || t.device() != Device::cpu) {
      fail(std::string(what) + ": inputs must be f64 CPU tensors, got " + describe(t));
    }
  }
  std::vector<Tensor> wrt;
  for (const Tensor& t : inputs) {
    if (t.requires_grad()) wrt.push_back(t);
  }
  std::vector<Tensor> analytic;
  {
    const Tensor value = scalar(inputs);
    if (value.requires_grad()) {
      GradOptions opts;
      opts.allow_unused = true;
      analytic = grad({value}, wrt, opts);
    } else {
      for (const Tensor& t : wrt) analytic.push_back(Tensor::zeros(t.shape(), DType::f64));
    }
  }
  GradcheckResult result;
  double worst = -1.0;
  for (std::size_t k = 0; k < wrt.size(); ++k) {
    double* x = wrt[k].data<double>();
    const std::vector<double> a = analytic[k].to_vector<double>();
    for (std::int64_t i = 0; i < wrt[k].numel(); ++i) {
      const double saved = x[i];
      x[i] = saved + options.eps;
      const double plus = scalar(inputs).item();
      x[i] = saved - options.eps;
      const double minus = scalar(inputs).item();
      x[i] = saved;
      const double numeric = (plus - minus) / (2.0 * options.eps);
      const double err = std::abs(a[static_cast<std::size_t>(i)] - numeric);
      result.max_abs_error = std::max(result.max_abs_error, err);
      if (err > options.atol) {
        result.max_rel_error = std::max(result.max_rel_error, err / std::max(std::abs(numeric), 1e-12));
      }
      const double excess = err - (options.atol + options.rtol * std::abs(numeric));
      if (excess > 0 && excess > worst) {
        worst = excess;
        result.ok = false;
        std::ostringstream msg;
        msg.precision(12);
        msg << what << ": input #" << k << " element " << i << ": analytic " << a[static_cast<std::size_t>(i)]
            << " vs numeric " << numeric << " (abs error " << err << ")";
        result.message = msg.str();
      }
    }
  }
  return result;
}

Tensor weights_like(const Tensor& t, Generator& gen) { return Tensor::uniform(t.shape(), -1.0, 1.0, gen, DType::f64); }

}  // namespace

GradcheckResult gradcheck(const DifferentiableFn& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options) {
  Generator gen(options.seed);
  Tensor w;
  {
    NoGradGuard off;
    w = weights_like(f(inputs), gen);
  }
  return compare([&](const std::vector<Tensor>& x) { return sum(mul(f(x), w)); }, inputs, options, "gradcheck");
}

GradcheckResult gradgradcheck(const DifferentiableFn& f, const std::vector<Tensor>& inputs,
                              const GradcheckOptions& options) {
  Generator gen(options.seed);
  Tensor w;
  std::vector<Tensor> wrt, v;
  {
    NoGradGuard off;
    w = weights_like(f(inputs), gen);
  }
  for (const Tensor& t : inputs) {
    if (t.requires_grad()) {
      wrt.push_back(t);
      v.push_back(weights_like(t, gen));
    }
  }
  auto first_order_projection = [&](const std::vector<Tensor>& x) {
    const Tensor out = sum(mul(f(x), w));
    if (!out.requires_grad()) return Tensor::scalar(0.0, DType::f64);
    GradOptions opts;
    opts.create_graph = true;
    opts.allow_unused = true;
    const std::vector<Tensor> g = grad({out}, wrt, opts);
    Tensor total = Tensor::scalar(0.0, DType::f64);
    for (std::size_t j = 0; j < g.size(); ++j) total = add(total, sum(mul(g[j], v[j])));
    return total;
  };
  return compare(first_order_projection, inputs, options, "gradgradcheck");
}

}  // namespace metatape
