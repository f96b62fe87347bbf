// fused_adapt: argument checks and device dispatch (kernels/fused_adapt.h), and the CPU reference:
// one task after another, each layer's forward and backward as one Eigen matrix product, the
// gradient of every layer computed from the weights of before the step (exactly one SGD step on the
// full gradient), no tape and no allocation per op.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

// GCC 12 reports false -Wmaybe-uninitialized inside its own AVX-512 intrinsics when Eigen is
// instantiated with -march=native; nothing in this file is uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Dense>

#include "kernels/cpu/eigen_maps.h"
#include "kernels/error.h"
#include "kernels/fused_adapt.h"

namespace metatape::kernels {
namespace {

struct Dims {
  std::int64_t tasks = 0, rows = 0, query_rows = 0, params = 0;
  bool shared_init = true;
  bool has_rates = false;
  bool has_query = false;
};

std::string shape_of(const View& v) { return v.shape.str() + " " + dtype_name(v.dtype); }

void check_config(const FusedAdaptConfig& c) {
  if (c.sizes.size() < 2 || c.sizes.size() > static_cast<std::size_t>(fused_max_sizes)) {
    fail("fused_adapt: needs 2.." + std::to_string(fused_max_sizes) + " layer sizes (in, hidden..., out), got " +
         std::to_string(c.sizes.size()));
  }
  for (auto s : c.sizes) {
    if (s <= 0) fail("fused_adapt: layer sizes must be positive, got " + std::to_string(s));
  }
  if (c.steps < 0) fail("fused_adapt: steps must be >= 0, got " + std::to_string(c.steps));
  if (c.activation != FusedActivation::relu && c.activation != FusedActivation::tanh &&
      c.activation != FusedActivation::none) {
    fail("fused_adapt: runs relu, tanh or no activation (the tape path runs the others)");
  }
}

Dims check_views(const FusedAdaptConfig& c, const View& init, const View& rates, const View& sx, const View& sy,
                 const View& adapted, const View& qx, const View& qout) {
  check_config(c);
  Dims d;
  d.params = fused_param_count(c.sizes);
  const std::int64_t in = c.sizes.front(), out = c.sizes.back();
  if (sx.shape.rank != 3 || sx.shape[2] != in) {
    fail("fused_adapt: support_x must be (tasks, rows, " + std::to_string(in) + "), got " + shape_of(sx));
  }
  d.tasks = sx.shape[0];
  d.rows = sx.shape[1];
  if (d.tasks < 1 || d.rows < 1) fail("fused_adapt: support_x " + shape_of(sx) + " is empty");
  const DType ft = sx.dtype;
  if (ft != DType::f32 && ft != DType::f64) {
    fail("fused_adapt: support_x must be f32 or f64, got " + shape_of(sx));
  }
  auto same_float = [&](const View& v, const char* what) {
    if (v.dtype != ft) {
      fail(std::string("fused_adapt: ") + what + " is " + shape_of(v) + ", support_x is " + dtype_name(ft) +
           " (use one float dtype)");
    }
    if (v.device != sx.device) {
      fail(std::string("fused_adapt: ") + what + " is on " + device_name(v.device) + ", support_x on " +
           device_name(sx.device) + " (move every view to one device)");
    }
  };
  same_float(init, "init");
  if (init.shape.rank == 1 && init.shape[0] == d.params) {
    d.shared_init = true;
  } else if (init.shape.rank == 2 && init.shape[0] == d.tasks && init.shape[1] == d.params) {
    d.shared_init = false;
  } else {
    fail("fused_adapt: init must be (" + std::to_string(d.params) + ") or (" + std::to_string(d.tasks) + ", " +
         std::to_string(d.params) + ") for sizes with " + std::to_string(d.params) + " parameters, got " +
         shape_of(init));
  }
  same_float(adapted, "adapted");
  if (adapted.shape != Shape{d.tasks, d.params}) {
    fail("fused_adapt: adapted must be (" + std::to_string(d.tasks) + ", " + std::to_string(d.params) + "), got " +
         shape_of(adapted));
  }
  d.has_rates = rates.data != nullptr;
  if (d.has_rates) {
    same_float(rates, "rates");
    if (rates.numel() != d.params) {
      fail("fused_adapt: rates must hold one rate per parameter (" + std::to_string(d.params) + "), got " +
           shape_of(rates));
    }
  }
  if (c.loss == FusedLoss::cross_entropy) {
    if (sy.dtype != DType::i64 || sy.shape != Shape{d.tasks, d.rows}) {
      fail("fused_adapt: cross-entropy labels must be i64 (" + std::to_string(d.tasks) + ", " + std::to_string(d.rows) +
           "), got " + shape_of(sy));
    }
    if (sy.device != sx.device) fail("fused_adapt: labels and support_x are on different devices");
  } else {
    same_float(sy, "support_y");
    if (sy.shape != Shape{d.tasks, d.rows, out}) {
      fail("fused_adapt: regression targets must be (" + std::to_string(d.tasks) + ", " + std::to_string(d.rows) +
           ", " + std::to_string(out) + "), got " + shape_of(sy));
    }
  }
  d.has_query = qx.data != nullptr || qout.data != nullptr;
  if (d.has_query) {
    if (qx.data == nullptr || qout.data == nullptr) {
      fail("fused_adapt: give both query_x and query_out, or neither");
    }
    same_float(qx, "query_x");
    same_float(qout, "query_out");
    if (qx.shape.rank != 3 || qx.shape[0] != d.tasks || qx.shape[2] != in) {
      fail("fused_adapt: query_x must be (" + std::to_string(d.tasks) + ", rows, " + std::to_string(in) + "), got " +
           shape_of(qx));
    }
    d.query_rows = qx.shape[1];
    if (qout.shape != Shape{d.tasks, d.query_rows, out}) {
      fail("fused_adapt: query_out must be (" + std::to_string(d.tasks) + ", " + std::to_string(d.query_rows) + ", " +
           std::to_string(out) + "), got " + shape_of(qout));
    }
  }
  return d;
}


template <class T>
void activate(FusedActivation a, Matrix<T>& z) {
  switch (a) {
    case FusedActivation::relu:
      z = z.cwiseMax(T(0));
      return;
    case FusedActivation::tanh:
      z = z.array().tanh().matrix();
      return;
    case FusedActivation::none:
      return;
    case FusedActivation::leaky_relu:
    case FusedActivation::elu:
    case FusedActivation::sigmoid:
    case FusedActivation::gelu:
      break;  // refused by check_config before any task runs
  }
  fail("fused_adapt: runs relu, tanh or no activation");
}

// d = d (.) f'(h), the derivative expressed through the activation's output h.
template <class T>
void times_activation_grad(FusedActivation a, const Matrix<T>& h, Matrix<T>& d) {
  switch (a) {
    case FusedActivation::relu:
      d = (h.array() > T(0)).select(d, T(0));
      return;
    case FusedActivation::tanh:
      d = d.cwiseProduct((T(1) - h.array().square()).matrix());
      return;
    case FusedActivation::none:
      return;
    case FusedActivation::leaky_relu:
    case FusedActivation::elu:
    case FusedActivation::sigmoid:
    case FusedActivation::gelu:
      break;  // refused by check_config before any task runs
  }
  fail("fused_adapt: runs relu, tanh or no activation");
}

// One task's MLP on flat parameters `p`: acts[l] (rows, sizes[l]) for l = 0..L (acts[L] = output).
template <class T>
void forward(const FusedAdaptConfig& c, const std::vector<std::int64_t>& offset, const T* p, const T* x,
             std::int64_t rows, std::vector<Matrix<T>>& acts) {
  const std::size_t layers = c.sizes.size() - 1;
  acts.resize(layers + 1);
  acts[0] = MapC<T>(x, rows, c.sizes[0]);
  for (std::size_t l = 0; l < layers; ++l) {
    const std::int64_t in = c.sizes[l], out = c.sizes[l + 1];
    const T* w = p + offset[l];
    acts[l + 1].noalias() = acts[l] * MapC<T>(w, out, in).transpose();
    acts[l + 1].rowwise() += RowC<T>(w + out * in, out);
    if (l + 1 < layers) activate(c.activation, acts[l + 1]);
  }
}

template <class T>
void run(const FusedAdaptConfig& c, const Dims& d, const View& init, const View& rates, const View& sx, const View& sy,
         const View& adapted, const View& qx, const View& qout) {
  const std::size_t layers = c.sizes.size() - 1;
  const std::int64_t P = d.params, n = d.rows, in = c.sizes.front(), out = c.sizes.back();
  std::vector<std::int64_t> offset(layers);  // start of W_l in the flat layout
  for (std::size_t l = 0, o = 0; l < layers; ++l) {
    offset[l] = static_cast<std::int64_t>(o);
    o += static_cast<std::size_t>(c.sizes[l + 1] * (c.sizes[l] + 1));
  }
  const T* rate = d.has_rates ? rates.as<T>() : nullptr;
  const T lr = static_cast<T>(c.lr);
  std::vector<Matrix<T>> acts;
  std::vector<T> grad(static_cast<std::size_t>(P));
  Matrix<T> delta, prev;
  for (std::int64_t t = 0; t < d.tasks; ++t) {
    T* p = adapted.as<T>() + t * P;
    const T* p0 = init.as<T>() + (d.shared_init ? 0 : t * P);
    std::copy(p0, p0 + P, p);
    const T* x = sx.as<T>() + t * n * in;
    for (int s = 0; s < c.steps; ++s) {
      forward(c, offset, p, x, n, acts);
      // delta = d(mean loss of the task) / d(output).
      delta = acts[layers];
      if (c.loss == FusedLoss::cross_entropy) {
        const std::int64_t* labels = sy.as<std::int64_t>() + t * n;
        for (std::int64_t r = 0; r < n; ++r) {
          const std::int64_t label = labels[r];
          if (label < 0 || label >= out) {
            fail("fused_adapt: label " + std::to_string(label) + " of task " + std::to_string(t) + " row " +
                 std::to_string(r) + " is outside [0, " + std::to_string(out) + ")");
          }
          auto z = delta.row(r);
          const T m = z.maxCoeff();
          z = (z.array() - m).exp().matrix();
          z /= z.sum();
          z(label) -= T(1);
          z /= static_cast<T>(n);
        }
      } else {
        delta = (delta - MapC<T>(sy.as<T>() + t * n * out, n, out)) * (T(2) / static_cast<T>(n * out));
      }
      for (std::size_t l = layers; l-- > 0;) {
        const std::int64_t li = c.sizes[l], lo = c.sizes[l + 1];
        T* gw = grad.data() + offset[l];
        Map<T>(gw, lo, li).noalias() = delta.transpose() * acts[l];
        Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(gw + lo * li, lo) = delta.colwise().sum();
        if (l > 0) {
          prev.noalias() = delta * MapC<T>(p + offset[l], lo, li);
          times_activation_grad(c.activation, acts[l], prev);
          delta.swap(prev);
        }
      }
      for (std::int64_t i = 0; i < P; ++i) p[i] -= (rate ? rate[i] : lr) * grad[i];
    }
    if (d.has_query) {
      const std::int64_t m = d.query_rows;
      forward(c, offset, p, qx.as<T>() + t * m * in, m, acts);
      Map<T>(qout.as<T>() + t * m * out, m, out) = acts[layers];
    }
  }
}

}  // namespace

std::int64_t fused_param_count(const std::vector<std::int64_t>& sizes) {
  std::int64_t p = 0;
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l) p += sizes[l + 1] * (sizes[l] + 1);
  return p;
}

std::size_t fused_shared_bytes(const FusedAdaptConfig& c, std::int64_t rows) {
  // Mirrors the layout comment in kernels/cuda/fused_adapt.cu: padded weights (row stride in | 1),
  // biases, the input rows, every hidden activation, two delta buffers of the widest layer output.
  auto ld = [](std::int64_t w) { return w | 1; };
  std::int64_t floats = 0, widest = 0;
  for (std::size_t l = 0; l + 1 < c.sizes.size(); ++l) {
    floats += c.sizes[l + 1] * ld(c.sizes[l]) + c.sizes[l + 1];
    widest = std::max(widest, c.sizes[l + 1]);
  }
  floats += rows * ld(c.sizes[0]);
  for (std::size_t l = 1; l + 1 < c.sizes.size(); ++l) floats += rows * ld(c.sizes[l]);
  floats += 2 * rows * ld(widest);
  return static_cast<std::size_t>(floats) * sizeof(float);
}

bool fused_adapt_supported(const FusedAdaptConfig& config, std::int64_t rows, Device device, std::string* why) {
  try {
    check_config(config);
  } catch (const Error& e) {
    if (why) *why = e.what();
    return false;
  }
  if (device == Device::cpu) return true;
#ifdef METATAPE_WITH_CUDA
  const std::size_t need = fused_shared_bytes(config, rows);
  const std::size_t have = cuda::fused_max_shared_bytes();
  if (need > have) {
    if (why) {
      *why = "fused_adapt: needs " + std::to_string(need) + " bytes of shared memory per block (" +
             std::to_string(rows) + " support rows), the device allows " + std::to_string(have) +
             " (use fewer rows per task or the batched path)";
    }
    return false;
  }
  return true;
#else
  (void)rows;
  if (why) *why = "fused_adapt: this build has no CUDA backend (configure with -DMETATAPE_CUDA=ON)";
  return false;
#endif
}

namespace cpu {
void fused_adapt(const FusedAdaptConfig& config, const View& init, const View& rates, const View& support_x,
                 const View& support_y, const View& adapted, const View& query_x, const View& query_out) {
  const Dims d = check_views(config, init, rates, support_x, support_y, adapted, query_x, query_out);
  if (support_x.device != Device::cpu) fail("fused_adapt: the CPU reference got CUDA views");
  if (support_x.dtype == DType::f32) {
    run<float>(config, d, init, rates, support_x, support_y, adapted, query_x, query_out);
  } else {
    run<double>(config, d, init, rates, support_x, support_y, adapted, query_x, query_out);
  }
}
}  // namespace cpu

void fused_adapt(const FusedAdaptConfig& config, const View& init, const View& rates, const View& support_x,
                 const View& support_y, const View& adapted, const View& query_x, const View& query_out) {
  if (support_x.device == Device::cpu) {
    cpu::fused_adapt(config, init, rates, support_x, support_y, adapted, query_x, query_out);
    return;
  }
#ifdef METATAPE_WITH_CUDA
  check_views(config, init, rates, support_x, support_y, adapted, query_x, query_out);
  if (support_x.dtype != DType::f32) {
    fail("fused_adapt: the CUDA kernel runs in f32, got " + std::string(dtype_name(support_x.dtype)) +
         " (convert the parameters and data to f32)");
  }
  std::string why;
  if (!fused_adapt_supported(config, support_x.shape[1], Device::cuda, &why)) fail(why);
  cuda::fused_adapt(config, init, rates, support_x, support_y, adapted, query_x, query_out);
#else
  fail("fused_adapt: got CUDA views but this build has no CUDA backend");
#endif
}

}  // namespace metatape::kernels
