// fused_meta_gradient: argument checks, workspace size, support and device dispatch
// (kernels/fused_meta_gradient.h), and the CPU reference: one task after another, every layer
// product one Eigen matrix product (or a fixed-order loop where a width is tiny), the
// Hessian-vector products written out as the tangent of the forward and of the backward pass
// (docs/fused-meta-gradient.md), no tape. All working memory is one thread_local buffer per float
// type, grown on first use and reused by every later call on the thread. Results are bit-identical
// whichever thread runs them and wherever the views lie (no address-dependent reduction order).
//
// Per-thread buffer (floats of T; plan() computes the offsets, fused_meta_gradient_workspace()
// returns plan().total for the CPU). With seg = K when checkpoint_every == 1, else min(c, K), and
// S = ceil(K / seg) segments:
//   checkpoints  (S - 1) P       theta at steps seg, 2 seg, ... (theta_0 is read from `init`)
//   seg_theta    (seg - 1) P     theta at the other steps of the segment being reversed
//   cur          P               theta_K
//   slots        seg x slot      per step of the segment: g_s (P, learned rates only), then on the n
//                                support rows, per hidden layer l = 1..L-1: a_l, f'(z_{l-1}),
//                                e_l (.) f''(z_{l-1}) (second order, activations with f'' != 0);
//                                per layer delta_l; the softmax p (cross-entropy)
//   u            P               eta_s (.) v_{s+1}                               (second order)
//   sink         P               Fault::drop_hessian_term: H_s u_s goes here, not into v
//   rz, ra       n (A - in), n (A - in - out)   R{z_l} (then R{delta_l} in place), R{a_l} (second order)
//   re           n x (widest hidden)            R{e_l}                           (second order)
//   query        m x (2 hidden + every layer output)   a_l, f'(z_{l-1}), delta_l on the query rows
// A = sum of sizes. v_s accumulates in place in the task's grad_init row ("=" at v_K, then += / -=).
// The last segment's states are still in the slots when the reverse sweep starts: only the other
// segments are replayed.
#include <algorithm>
#include <cmath>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

// GCC 12 reports false -Wmaybe-uninitialized inside its own AVX-512 intrinsics when Eigen is
// instantiated with -march=native; nothing in this file is uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Dense>

#include "kernels/cpu/eigen_maps.h"
#include "kernels/error.h"
#include "kernels/fused_activation.h"
#include "kernels/fused_meta_gradient.h"

namespace metatape::kernels {
namespace {

[[noreturn]] void bad(const std::string& message) { fail("fused_meta_gradient: " + message); }

std::string str(std::int64_t v) { return std::to_string(v); }
std::string shape_of(const View& v) { return v.shape.str() + " " + dtype_name(v.dtype); }

const char* rates_name(FusedRates r) {
  switch (r) {
    case FusedRates::scalar:
      return "scalar";
    case FusedRates::per_tensor_step:
      return "per_tensor_step";
    case FusedRates::per_parameter:
      return "per_parameter";
  }
  return "?";
}

// f'' is identically zero for the piecewise-linear activations: their e (.) f''(z) term vanishes.
bool has_second_derivative(FusedActivation a) {
  return a == FusedActivation::tanh || a == FusedActivation::sigmoid || a == FusedActivation::elu ||
         a == FusedActivation::gelu;
}

std::int64_t layers_of(const FusedMetaGradientConfig& c) { return static_cast<std::int64_t>(c.sizes.size()) - 1; }

std::int64_t rate_count(const FusedMetaGradientConfig& c, std::int64_t params) {
  switch (c.rates) {
    case FusedRates::scalar:
      return 0;
    case FusedRates::per_tensor_step:
      return 2 * layers_of(c) * c.steps;
    case FusedRates::per_parameter:
      return params;
  }
  return 0;
}

void check_config(const FusedMetaGradientConfig& c) {
  if (c.sizes.size() < 2 || c.sizes.size() > static_cast<std::size_t>(fused_max_sizes)) {
    bad("needs 2.." + str(fused_max_sizes) + " layer sizes (in, hidden..., out), got " + str(c.sizes.size()));
  }
  for (auto s : c.sizes) {
    if (s <= 0) bad("layer sizes must be positive, got " + str(s));
  }
  if (static_cast<int>(c.activation) > static_cast<int>(FusedActivation::gelu)) {
    bad("unknown activation " + str(static_cast<int>(c.activation)));
  }
  if (c.loss != FusedLoss::cross_entropy && c.loss != FusedLoss::mse) {
    bad("unknown loss " + str(static_cast<int>(c.loss)) + " (cross_entropy or mse)");
  }
  if (c.steps < 1) bad("steps must be >= 1, got " + str(c.steps) + " (zero steps has no meta-gradient to fuse)");
  if (c.rates != FusedRates::scalar && c.rates != FusedRates::per_tensor_step &&
      c.rates != FusedRates::per_parameter) {
    bad("unknown rates mode " + str(static_cast<int>(c.rates)));
  }
  if (c.rates == FusedRates::scalar && !std::isfinite(c.lr)) bad("lr must be finite, got " + std::to_string(c.lr));
  if (!c.query_weights.empty() && c.query_weights.size() != static_cast<std::size_t>(c.steps)) {
    bad("query_weights holds " + str(c.query_weights.size()) + " weights for " + str(c.steps) +
        " steps (give one weight per inner step, or none for (0, .., 0, 1))");
  }
  for (std::size_t s = 0; s < c.query_weights.size(); ++s) {
    if (!std::isfinite(c.query_weights[s])) {
      bad("query_weights[" + str(s) + "] is " + std::to_string(c.query_weights[s]) + " (weights must be finite)");
    }
  }
  if (c.checkpoint_every < 1) {
    bad("checkpoint_every must be >= 1, got " + str(c.checkpoint_every) +
        " (1 keeps every inner step; ceil(sqrt(steps)) is sub-linear in memory)");
  }
  if (c.fault != FusedMetaGradientConfig::Fault::none && c.fault != FusedMetaGradientConfig::Fault::drop_hessian_term &&
      c.fault != FusedMetaGradientConfig::Fault::drop_rate_gradient) {
    bad("unknown fault " + str(static_cast<int>(c.fault)));
  }
}

struct Dims {
  std::int64_t tasks = 0, n = 0, m = 0, params = 0, rate_count = 0;
  bool shared_init = true;
};

Dims check_views(const FusedMetaGradientConfig& c, const FusedMetaGradientViews& v) {
  check_config(c);
  Dims d;
  d.params = fused_param_count(c.sizes);
  d.rate_count = rate_count(c, d.params);
  const std::int64_t in = c.sizes.front(), out = c.sizes.back(), P = d.params;
  const View& sx = v.support_x;
  if (sx.data == nullptr) bad("support_x is missing (data == nullptr)");
  if (sx.shape.rank != 3 || sx.shape[2] != in) {
    bad("support_x must be (tasks, rows, " + str(in) + "), got " + shape_of(sx));
  }
  d.tasks = sx.shape[0];
  d.n = sx.shape[1];
  if (d.tasks < 1 || d.n < 1) bad("support_x " + shape_of(sx) + " is empty (every task needs support rows)");
  const DType ft = sx.dtype;
  if (ft != DType::f32 && ft != DType::f64) bad("support_x must be f32 or f64, got " + shape_of(sx));
  const std::string T = str(d.tasks);
  auto same_float = [&](const View& x, const char* what) {
    if (x.dtype != ft) {
      bad(std::string(what) + " is " + shape_of(x) + ", support_x is " + dtype_name(ft) + " (use one float dtype)");
    }
    if (x.device != sx.device) {
      bad(std::string(what) + " is on " + device_name(x.device) + ", support_x on " + device_name(sx.device) +
          " (move every view to one device)");
    }
  };
  auto need = [&](const View& x, const char* what, const Shape& shape) {
    if (x.data == nullptr) bad(std::string(what) + " is missing (data == nullptr), expected " + shape.str());
    same_float(x, what);
    if (x.shape != shape) bad(std::string(what) + " must be " + shape.str() + ", got " + shape_of(x));
  };
  auto labels_or_targets = [&](const View& y, const char* what, std::int64_t rows) {
    if (c.loss == FusedLoss::cross_entropy) {
      if (y.data == nullptr) bad(std::string(what) + " is missing (data == nullptr)");
      if (y.dtype != DType::i64 || y.shape != Shape{d.tasks, rows}) {
        bad(std::string("cross-entropy ") + what + " must be i64 labels (" + T + ", " + str(rows) + "), got " +
            shape_of(y));
      }
      if (y.device != sx.device) {
        bad(std::string(what) + " is on " + device_name(y.device) + ", support_x on " + device_name(sx.device) +
            " (move every view to one device)");
      }
    } else {
      need(y, what, Shape{d.tasks, rows, out});
    }
  };

  if (v.init.data == nullptr) bad("init is missing (data == nullptr)");
  same_float(v.init, "init");
  if (v.init.shape.rank == 1 && v.init.shape[0] == P) {
    d.shared_init = true;
  } else if (v.init.shape.rank == 2 && v.init.shape[0] == d.tasks && v.init.shape[1] == P) {
    d.shared_init = false;
  } else {
    bad("init must be (" + str(P) + ") or (" + T + ", " + str(P) + ") for sizes with " + str(P) +
        " parameters, got " + shape_of(v.init));
  }
  labels_or_targets(v.support_y, "support_y", d.n);
  const View& qx = v.query_x;
  if (qx.data == nullptr) bad("query_x is missing (data == nullptr); the outer loss needs query rows");
  same_float(qx, "query_x");
  if (qx.shape.rank != 3 || qx.shape[0] != d.tasks || qx.shape[2] != in) {
    bad("query_x must be (" + T + ", rows, " + str(in) + "), got " + shape_of(qx));
  }
  d.m = qx.shape[1];
  if (d.m < 1) bad("query_x " + shape_of(qx) + " has no rows (every task needs query rows)");
  labels_or_targets(v.query_y, "query_y", d.m);

  if (c.rates == FusedRates::scalar) {
    if (v.rates.data != nullptr) {
      bad("rates must be empty (data == nullptr) with FusedRates::scalar (the rate is config.lr)");
    }
    if (v.grad_rates.data != nullptr) {
      bad("grad_rates must be empty (data == nullptr) with FusedRates::scalar (config.lr is not learned)");
    }
  } else {
    const std::string what = c.rates == FusedRates::per_parameter
                                 ? "one rate per parameter"
                                 : "one rate per parameter tensor and step (2 * layers * steps, tensor-major)";
    if (v.rates.data == nullptr) bad("rates is missing (data == nullptr) with FusedRates::" + std::string(rates_name(c.rates)));
    same_float(v.rates, "rates");
    if (v.rates.shape != Shape{d.rate_count}) {
      bad("rates must be (" + str(d.rate_count) + "), " + what + ", got " + shape_of(v.rates));
    }
    need(v.grad_rates, "grad_rates", Shape{d.tasks, d.rate_count});
  }
  need(v.grad_init, "grad_init", Shape{d.tasks, P});
  need(v.losses, "losses", Shape{d.tasks, 2});
  if (c.input_grads) {
    need(v.grad_support_x, "grad_support_x", Shape{d.tasks, d.n, in});
    need(v.grad_query_x, "grad_query_x", Shape{d.tasks, d.m, in});
  } else if (v.grad_support_x.data != nullptr || v.grad_query_x.data != nullptr) {
    bad("grad_support_x and grad_query_x are written only with config.input_grads (set it, or pass empty views)");
  }
  if (v.query_out.data != nullptr) need(v.query_out, "query_out", Shape{d.tasks, d.m, out});
  // The outputs are written while the inputs are still read (theta_0 until the last reverse step):
  // no output may overlap an input or another output.
  struct Named {
    const View* view;
    const char* name;
  };
  const Named inputs[] = {{&v.init, "init"},       {&v.rates, "rates"},     {&v.support_x, "support_x"},
                          {&v.support_y, "support_y"}, {&v.query_x, "query_x"}, {&v.query_y, "query_y"}};
  const Named outputs[] = {{&v.grad_init, "grad_init"},   {&v.grad_rates, "grad_rates"},
                           {&v.grad_support_x, "grad_support_x"}, {&v.grad_query_x, "grad_query_x"},
                           {&v.losses, "losses"},         {&v.query_out, "query_out"}};
  auto overlap = [](const View& a, const View& b) {
    if (a.data == nullptr || b.data == nullptr) return false;
    const char* a0 = static_cast<const char*>(a.data);
    const char* b0 = static_cast<const char*>(b.data);
    return a0 < b0 + b.numel() * static_cast<std::int64_t>(dtype_size(b.dtype)) &&
           b0 < a0 + a.numel() * static_cast<std::int64_t>(dtype_size(a.dtype));
  };
  for (std::size_t o = 0; o < std::size(outputs); ++o) {
    for (const Named& i : inputs) {
      if (overlap(*outputs[o].view, *i.view)) {
        bad(std::string(outputs[o].name) + " overlaps the input " + i.name + " (give every output its own memory)");
      }
    }
    for (std::size_t p = 0; p < o; ++p) {
      if (overlap(*outputs[o].view, *outputs[p].view)) {
        bad(std::string(outputs[o].name) + " overlaps the output " + outputs[p].name +
            " (give every output its own memory)");
      }
    }
  }
  if (sx.device == Device::cuda) {
#ifdef METATAPE_WITH_CUDA
    need(v.workspace, "workspace", Shape{d.tasks, cuda::fused_meta_gradient_workspace(c, d.n, d.m)});
#endif
  }
  return d;
}

// ---- the per-thread buffer plan ----------------------------------------------------------------

struct Plan {
  std::int64_t L = 0, P = 0, n = 0, m = 0;
  int seg = 1, segments = 1;
  bool keep_g = false, with_q = false, with_p = false;
  std::int64_t slot = 0;  // floats of one step's slot
  std::int64_t checkpoints = 0, seg_theta = 0, cur = 0, slots = 0, u = 0, sink = 0, rz = 0, ra = 0,
               re = 0, query = 0, total = 0;
};

// Floats of the activations, derivatives and deltas kept per row (support: q and p when asked).
std::int64_t state_per_row(const std::vector<std::int64_t>& sizes, bool with_q, bool with_p) {
  const std::size_t L = sizes.size() - 1;
  std::int64_t f = 0;
  for (std::size_t l = 1; l < L; ++l) f += sizes[l] * (with_q ? 3 : 2);
  for (std::size_t l = 0; l < L; ++l) f += sizes[l + 1];
  if (with_p) f += sizes.back();
  return f;
}

Plan plan(const FusedMetaGradientConfig& c, std::int64_t n, std::int64_t m) {
  Plan p;
  p.L = layers_of(c);
  p.P = fused_param_count(c.sizes);
  p.n = n;
  p.m = m;
  p.seg = c.checkpoint_every == 1 ? c.steps : std::min(c.checkpoint_every, c.steps);
  p.segments = (c.steps + p.seg - 1) / p.seg;
  p.keep_g = c.rates != FusedRates::scalar;
  p.with_q = c.second_order && has_second_derivative(c.activation);
  p.with_p = c.loss == FusedLoss::cross_entropy;
  p.slot = (p.keep_g ? p.P : 0) + n * state_per_row(c.sizes, p.with_q, p.with_p);
  std::int64_t hidden = 0, widest_hidden = 0;
  for (std::int64_t l = 1; l < p.L; ++l) {
    hidden += c.sizes[static_cast<std::size_t>(l)];
    widest_hidden = std::max(widest_hidden, c.sizes[static_cast<std::size_t>(l)]);
  }
  const bool r_pass = c.second_order;
  std::int64_t at = 0;
  auto take = [&](std::int64_t floats) {
    const std::int64_t here = at;
    at += floats;
    return here;
  };
  p.checkpoints = take((p.segments - 1) * p.P);
  p.seg_theta = take((p.seg - 1) * p.P);
  p.cur = take(p.P);
  p.slots = take(p.seg * p.slot);
  p.u = take(r_pass ? p.P : 0);
  p.sink = take(r_pass && c.fault == FusedMetaGradientConfig::Fault::drop_hessian_term ? p.P : 0);
  p.rz = take(r_pass ? n * (hidden + c.sizes.back()) : 0);
  p.ra = take(r_pass ? n * hidden : 0);
  p.re = take(r_pass ? n * widest_hidden : 0);
  p.query = take(m * state_per_row(c.sizes, false, false));
  p.total = at;
  return p;
}

// ---- the CPU reference -------------------------------------------------------------------------

template <class T>
using Vec = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>;
template <class T>
using VecC = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>;

// One step's saved state on `rows` rows. Index l as in the derivation: act[l] = a_l, d1[l] =
// f'(z_{l-1}), q[l] = e_l (.) f''(z_{l-1}) (l = 1..L-1; q null when f'' = 0 or not needed);
// delta[l] (l = 0..L-1); p the softmax (null when not kept).
template <class T>
struct State {
  T* act[fused_max_sizes] = {};
  T* d1[fused_max_sizes] = {};
  T* q[fused_max_sizes] = {};
  T* delta[fused_max_sizes] = {};
  T* p = nullptr;
};

template <class T>
State<T> state_at(T* base, const std::vector<std::int64_t>& sizes, std::int64_t rows, bool with_q, bool with_p) {
  State<T> st;
  const std::size_t L = sizes.size() - 1;
  for (std::size_t l = 1; l < L; ++l) {
    st.act[l] = base;
    base += rows * sizes[l];
    st.d1[l] = base;
    base += rows * sizes[l];
    if (with_q) {
      st.q[l] = base;
      base += rows * sizes[l];
    }
  }
  for (std::size_t l = 0; l < L; ++l) {
    st.delta[l] = base;
    base += rows * sizes[l + 1];
  }
  if (with_p) st.p = base;
  return st;
}

// z <- f(z), d1 <- f'(z), d2 <- f''(z) (when d2 is given), elementwise.
template <FusedActivation A, class T>
void activate_as(T* z, T* d1, T* d2, std::int64_t count) {
  if (d2) {
    for (std::int64_t i = 0; i < count; ++i) {
      const ActivationValues<T> v = activation_values<T>(A, z[i]);
      z[i] = v.f;
      d1[i] = v.d1;
      d2[i] = v.d2;
    }
  } else {
    for (std::int64_t i = 0; i < count; ++i) {
      const ActivationValues<T> v = activation_values<T>(A, z[i]);
      z[i] = v.f;
      d1[i] = v.d1;
    }
  }
}

template <class T>
void activate(FusedActivation a, T* z, T* d1, T* d2, std::int64_t count) {
  switch (a) {
    case FusedActivation::relu:
      return activate_as<FusedActivation::relu>(z, d1, d2, count);
    case FusedActivation::leaky_relu:
      return activate_as<FusedActivation::leaky_relu>(z, d1, d2, count);
    case FusedActivation::elu:
      return activate_as<FusedActivation::elu>(z, d1, d2, count);
    case FusedActivation::tanh:
      return activate_as<FusedActivation::tanh>(z, d1, d2, count);
    case FusedActivation::sigmoid:
      return activate_as<FusedActivation::sigmoid>(z, d1, d2, count);
    case FusedActivation::gelu:
      return activate_as<FusedActivation::gelu>(z, d1, d2, count);
    case FusedActivation::none:
      return activate_as<FusedActivation::none>(z, d1, d2, count);
  }
}

template <class T>
struct Net {
  const FusedMetaGradientConfig* c = nullptr;
  std::int64_t L = 0, P = 0;
  std::int64_t offset[fused_max_sizes] = {};  // start of W_l in the flat layout; b_l follows it
  std::int64_t in(std::int64_t l) const { return c->sizes[static_cast<std::size_t>(l)]; }
  std::int64_t out(std::int64_t l) const { return c->sizes[static_cast<std::size_t>(l + 1)]; }
  const T* W(const T* theta, std::int64_t l) const { return theta + offset[l]; }
  const T* b(const T* theta, std::int64_t l) const { return theta + offset[l] + out(l) * in(l); }
};

// The products of the passes, on row-major operands, "=", "+=" or "-=" into C. Eigen's GEMM
// everywhere except where the output width or the depth is tiny (a classifier's last layer, a
// 1-input regression layer): there its packing and 48 x 4 tiles waste most of the work, and plain
// loops are several times faster. The loops are written so their rounding does not depend on the
// operands' addresses (Eigen's own coefficient-based products and dot products start their vector
// lanes at the first aligned element, which would make a result depend on where a thread's buffer
// or the caller's views happen to lie); GEMM packs its operands and is address-independent. "="
// through GEMM zeroes C first, so the callers prefer "+=" onto a bias already in place.
enum class Acc { assign, add, sub };
constexpr std::int64_t tiny_width = 4;

// x . y in a fixed order: 16 interleaved partial sums, then the tail.
template <class T>
T dot(const T* x, const T* y, std::int64_t n, std::int64_t y_stride = 1) {
  constexpr int lanes = 16;
  T acc[lanes] = {};
  std::int64_t k = 0;
  if (y_stride == 1) {
    for (; k + lanes <= n; k += lanes) {
      for (int j = 0; j < lanes; ++j) acc[j] += x[k + j] * y[k + j];
    }
  }
  T tail = 0;
  for (; k < n; ++k) tail += x[k] * y[k * y_stride];
  T sum = 0;
  for (int j = 0; j < lanes; ++j) sum += acc[j];
  return sum + tail;
}

template <class T>
void combine(Acc acc, T& c, T v) {
  c = acc == Acc::assign ? v : acc == Acc::add ? c + v : c - v;
}

// out op= scale * (the column sums of A (rows x cols)), each summed over the rows in order.
template <class T>
void column_sums(Acc acc, T* out, const T* A, std::int64_t rows, std::int64_t cols, T scale = T(1)) {
  for (std::int64_t j = 0; j < cols; ++j) {
    T sum = 0;
    for (std::int64_t r = 0; r < rows; ++r) sum += A[r * cols + j];
    combine(acc, out[j], scale == T(1) ? sum : scale * sum);
  }
}

// C (rows x cols) op= A (rows x depth) B^T, B (cols x depth).
template <class T>
void product_nt(Acc acc, T* C, const T* A, const T* B, std::int64_t rows, std::int64_t cols, std::int64_t depth) {
  if (depth <= tiny_width) {  // each element summed over the depth in order
    for (std::int64_t r = 0; r < rows; ++r) {
      T* c = C + r * cols;
      const T* a = A + r * depth;
      if (acc == Acc::assign) std::fill(c, c + cols, T(0));
      for (std::int64_t k = 0; k < depth; ++k) {
        const T w = acc == Acc::sub ? -a[k] : a[k];
        for (std::int64_t j = 0; j < cols; ++j) c[j] += w * B[j * depth + k];
      }
    }
    return;
  }
  if (cols <= tiny_width) {
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t j = 0; j < cols; ++j) combine(acc, C[r * cols + j], dot(A + r * depth, B + j * depth, depth));
    }
    return;
  }
  Map<T> c(C, rows, cols);
  const MapC<T> a(A, rows, depth), b(B, cols, depth);
  switch (acc) {
    case Acc::assign:
      c.noalias() = a * b.transpose();
      return;
    case Acc::add:
      c.noalias() += a * b.transpose();
      return;
    case Acc::sub:
      c.noalias() -= a * b.transpose();
      return;
  }
}

// C (rows x cols) op= A (rows x depth) B, B (depth x cols).
template <class T>
void product_nn(Acc acc, T* C, const T* A, const T* B, std::int64_t rows, std::int64_t depth, std::int64_t cols) {
  if (depth <= tiny_width) {  // rows of C as sums of rows of B, in order
    for (std::int64_t r = 0; r < rows; ++r) {
      T* c = C + r * cols;
      const T* a = A + r * depth;
      if (acc == Acc::assign) std::fill(c, c + cols, T(0));
      for (std::int64_t j = 0; j < depth; ++j) {
        const T w = acc == Acc::sub ? -a[j] : a[j];
        const T* b = B + j * cols;
        for (std::int64_t k = 0; k < cols; ++k) c[k] += w * b[k];
      }
    }
    return;
  }
  if (cols <= tiny_width) {
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t k = 0; k < cols; ++k) combine(acc, C[r * cols + k], dot(A + r * depth, B + k, depth, cols));
    }
    return;
  }
  Map<T> c(C, rows, cols);
  const MapC<T> a(A, rows, depth), b(B, depth, cols);
  switch (acc) {
    case Acc::assign:
      c.noalias() = a * b;
      return;
    case Acc::add:
      c.noalias() += a * b;
      return;
    case Acc::sub:
      c.noalias() -= a * b;
      return;
  }
}

// C (rows x cols) op= alpha * A^T B, A (depth x rows), B (depth x cols): the weight gradients
// (depth = the task's rows). alpha: Acc::sub only. A tiny rows or cols would send Eigen to GEMV,
// which allocates a temporary for the scaled operand: plain loops there.
template <class T>
void product_tn(Acc acc, T* C, const T* A, const T* B, std::int64_t rows, std::int64_t depth, std::int64_t cols,
                T alpha = T(1)) {
  if (rows <= tiny_width || cols <= tiny_width) {
    for (std::int64_t j = 0; j < rows; ++j) {
      for (std::int64_t k = 0; k < cols; ++k) {
        T sum = 0;
        for (std::int64_t d = 0; d < depth; ++d) sum += A[d * rows + j] * B[d * cols + k];
        combine(acc, C[j * cols + k], alpha == T(1) ? sum : alpha * sum);
      }
    }
    return;
  }
  Map<T> c(C, rows, cols);
  const MapC<T> a(A, depth, rows), b(B, depth, cols);
  switch (acc) {
    case Acc::assign:
      c.noalias() = a.transpose() * b;
      return;
    case Acc::add:
      c.noalias() += a.transpose() * b;
      return;
    case Acc::sub:
      if (alpha == T(1)) {
        c.noalias() -= a.transpose() * b;
      } else {
        c.noalias() -= alpha * (a.transpose() * b);
      }
      return;
  }
}

// Forward on `rows` rows at theta: act, d1 and (when st.q) f''(z) into q; the output o into delta[L-1].
template <class T>
void forward(const Net<T>& net, const T* theta, const T* x, std::int64_t rows, const State<T>& st) {
  const T* a = x;
  for (std::int64_t l = 0; l < net.L; ++l) {
    const std::int64_t i = net.in(l), o = net.out(l);
    const bool hidden = l + 1 < net.L;
    T* z = hidden ? st.act[l + 1] : st.delta[l];
    Map<T> zm(z, rows, o);
    zm.rowwise() = RowC<T>(net.b(theta, l), o);
    product_nt(Acc::add, z, a, net.W(theta, l), rows, o, i);
    if (hidden) {
      activate(net.c->activation, z, st.d1[l + 1], st.q[l + 1], rows * o);
      a = z;
    }
  }
}

// On entry `o` holds the outputs (rows, out); on exit seed * dL/do. Returns the loss L (unseeded).
// `p` (when given) receives the softmax. Labels were range-checked before the first task ran.
template <class T>
double loss_and_delta(FusedLoss loss, T* o, T* p, std::int64_t rows, std::int64_t out, const std::int64_t* labels,
                      const T* targets, T seed) {
  double total = 0.0;
  if (loss == FusedLoss::cross_entropy) {
    const T scale = seed / static_cast<T>(rows);
    for (std::int64_t r = 0; r < rows; ++r) {
      T* z = o + r * out;
      const std::int64_t label = labels[r];
      T mx = z[0];
      for (std::int64_t j = 1; j < out; ++j) mx = std::max(mx, z[j]);
      const T shifted_label = z[label] - mx;
      T sum = 0;
      for (std::int64_t j = 0; j < out; ++j) {
        z[j] = std::exp(z[j] - mx);
        sum += z[j];
      }
      total += static_cast<double>(std::log(sum) - shifted_label);  // (x - max) - log sum, not x - (max + log sum)
      const T inv = T(1) / sum;
      for (std::int64_t j = 0; j < out; ++j) {
        const T pj = z[j] * inv;
        if (p) p[r * out + j] = pj;
        z[j] = (pj - (j == label ? T(1) : T(0))) * scale;
      }
    }
    return total / static_cast<double>(rows);
  }
  const std::int64_t count = rows * out;
  const T scale = T(2) * seed / static_cast<T>(count);
  for (std::int64_t i = 0; i < count; ++i) {
    const T diff = o[i] - targets[i];
    total += static_cast<double>(diff) * static_cast<double>(diff);
    o[i] = diff * scale;
  }
  return total / static_cast<double>(count);
}

// Where backward() puts the gradient: "=" or "+=" into `grad`, or, for a plain SGD step with a
// scalar rate, "-= lr *" into `grad` already holding theta_s (it becomes theta_{s+1} without a
// gradient buffer or a pass over it). Null: no gradient (only the deltas).
template <class T>
struct GradSink {
  T* grad = nullptr;
  Acc acc = Acc::assign;
  T lr = 1;  // Acc::sub only
};

// Backward from delta[L-1]: the gradient into the sink, delta[l] for l < L-1, q[l] *= e_l, and
// (when given) input_grad += e_0.
template <class T>
void backward(const Net<T>& net, const T* theta, const T* x, std::int64_t rows, const State<T>& st,
              const GradSink<T>& sink, T* input_grad) {
  for (std::int64_t l = net.L - 1; l >= 0; --l) {
    const std::int64_t i = net.in(l), o = net.out(l);
    if (sink.grad) {  // Acc::sub: theta - lr * g, rounded as the tape's sub(theta, affine(g, lr, 0))
      const T lr = sink.acc == Acc::sub ? sink.lr : T(1);
      product_tn(sink.acc, sink.grad + net.offset[l], st.delta[l], l ? st.act[l] : x, o, rows, i, lr);
      column_sums(sink.acc, sink.grad + net.offset[l] + o * i, st.delta[l], rows, o, lr);
    }
    if (l > 0) {
      Map<T> e(st.delta[l - 1], rows, i);  // e_l, then delta_{l-1} in place
      product_nn(Acc::assign, e.data(), st.delta[l], net.W(theta, l), rows, o, i);
      if (st.q[l]) Map<T>(st.q[l], rows, i).array() *= e.array();
      e.array() *= MapC<T>(st.d1[l], rows, i).array();
    } else if (input_grad) {
      product_nn(Acc::add, input_grad, st.delta[l], net.W(theta, l), rows, o, i);
    }
  }
}

// hv -= H u at the step whose state is st (theta, support rows x), and (when given)
// input_grad -= R{e_0}. rz, ra, re: the plan's R buffers.
template <class T>
void subtract_hvp(const Net<T>& net, FusedLoss loss, const T* theta, const T* u, const T* x, std::int64_t n,
                  const State<T>& st, T* rz_base, T* ra_base, T* re, T* hv, T* input_grad) {
  T* rz[fused_max_sizes];
  T* ra[fused_max_sizes] = {};
  for (std::int64_t l = 0, zo = 0, ao = 0; l < net.L; ++l) {
    rz[l] = rz_base + zo;
    zo += n * net.out(l);
    if (l + 1 < net.L) {
      ra[l + 1] = ra_base + ao;
      ao += n * net.out(l);
    }
  }
  // R-forward: R{z_l} = R{a_l} W_l^T + a_l U_l^T + 1 ub_l^T, R{a_{l+1}} = f'(z_l) (.) R{z_l}; R{a_0} = 0.
  for (std::int64_t l = 0; l < net.L; ++l) {
    const std::int64_t i = net.in(l), o = net.out(l);
    Map<T> z(rz[l], n, o);
    z.rowwise() = RowC<T>(u + net.offset[l] + o * i, o);
    product_nt(Acc::add, rz[l], l ? st.act[l] : x, u + net.offset[l], n, o, i);
    if (l > 0) product_nt(Acc::add, rz[l], ra[l], net.W(theta, l), n, o, i);
    if (l + 1 < net.L) {
      Map<T>(ra[l + 1], n, o).array() = MapC<T>(st.d1[l + 1], n, o).array() * z.array();
    }
  }
  // R at the loss: R{delta} in place of R{o}.
  const std::int64_t out = net.out(net.L - 1);
  T* ro = rz[net.L - 1];
  if (loss == FusedLoss::cross_entropy) {
    const T inv = T(1) / static_cast<T>(n);
    for (std::int64_t r = 0; r < n; ++r) {
      const T* p = st.p + r * out;
      T* z = ro + r * out;
      T dot = 0;
      for (std::int64_t j = 0; j < out; ++j) dot += p[j] * z[j];
      for (std::int64_t j = 0; j < out; ++j) z[j] = p[j] * (z[j] - dot) * inv;
    }
  } else {
    Vec<T>(ro, n * out) *= T(2) / static_cast<T>(n * out);
  }
  // R-backward: R{gW_l} = R{delta_l}^T a_l + delta_l^T R{a_l}, R{gb_l} = 1^T R{delta_l},
  // R{e_l} = R{delta_l} W_l + delta_l U_l, R{delta_{l-1}} = R{e_l} (.) f' + e_l (.) f'' (.) R{z_{l-1}}.
  for (std::int64_t l = net.L - 1; l >= 0; --l) {
    const std::int64_t i = net.in(l), o = net.out(l);
    product_tn(Acc::sub, hv + net.offset[l], rz[l], l ? st.act[l] : x, o, n, i);
    if (l > 0) product_tn(Acc::sub, hv + net.offset[l], st.delta[l], ra[l], o, n, i);
    column_sums(Acc::sub, hv + net.offset[l] + o * i, rz[l], n, o);
    if (l > 0) {
      const MapC<T> e(re, n, i);
      product_nn(Acc::assign, re, rz[l], net.W(theta, l), n, o, i);
      product_nn(Acc::add, re, st.delta[l], u + net.offset[l], n, o, i);
      Map<T> prev(rz[l - 1], n, i);  // R{z_{l-1}} becomes R{delta_{l-1}}
      if (st.q[l]) {
        prev.array() = e.array() * MapC<T>(st.d1[l], n, i).array() + MapC<T>(st.q[l], n, i).array() * prev.array();
      } else {
        prev.array() = e.array() * MapC<T>(st.d1[l], n, i).array();
      }
    } else if (input_grad) {
      product_nn(Acc::sub, input_grad, rz[l], net.W(theta, l), n, o, i);
      product_nn(Acc::sub, input_grad, st.delta[l], u + net.offset[l], n, o, i);
    }
  }
}

template <class T>
void run(const FusedMetaGradientConfig& c, const Dims& d, const FusedMetaGradientViews& v) {
  using Fault = FusedMetaGradientConfig::Fault;
  const Plan pl = plan(c, d.n, d.m);
  static thread_local std::vector<T> buffer;
  if (buffer.size() < static_cast<std::size_t>(pl.total)) buffer.resize(static_cast<std::size_t>(pl.total));
  T* ws = buffer.data();

  Net<T> net;
  net.c = &c;
  net.L = pl.L;
  net.P = pl.P;
  for (std::int64_t l = 0, o = 0; l < net.L; ++l) {
    net.offset[l] = o;
    o += net.out(l) * (net.in(l) + 1);
  }
  const std::int64_t K = c.steps, P = pl.P, n = d.n, m = d.m, in = c.sizes.front(), out = c.sizes.back();
  const bool ce = c.loss == FusedLoss::cross_entropy;
  const int seg = pl.seg;

  // The rate of flat parameter tensor k (W_l: k = 2l, b_l: 2l + 1) at step s, and its range.
  std::int64_t tensor_begin[2 * fused_max_sizes + 1];
  for (std::int64_t l = 0; l < net.L; ++l) {
    tensor_begin[2 * l] = net.offset[l];
    tensor_begin[2 * l + 1] = net.offset[l] + net.out(l) * net.in(l);
  }
  tensor_begin[2 * net.L] = P;
  const std::int64_t tensors = 2 * net.L;
  const T* rates = c.rates == FusedRates::scalar ? nullptr : v.rates.as<T>();
  const T lr = static_cast<T>(c.lr);
  // dst = eta_s (.) src (dst may be src).
  auto times_eta = [&](int s, const T* src, T* dst) {
    if (c.rates == FusedRates::scalar) {
      VecC<T> a(src, P);
      Vec<T>(dst, P) = lr * a;
    } else if (c.rates == FusedRates::per_parameter) {
      Vec<T>(dst, P) = VecC<T>(rates, P).cwiseProduct(VecC<T>(src, P));
    } else {
      for (std::int64_t k = 0; k < tensors; ++k) {
        const std::int64_t b = tensor_begin[k], len = tensor_begin[k + 1] - b;
        Vec<T>(dst + b, len) = rates[k * K + s] * VecC<T>(src + b, len);
      }
    }
  };
  // w_s for s = 1..K: the weight of L_Q(theta_s) in the outer loss.
  auto weight = [&](std::int64_t s) -> double {
    if (c.query_weights.empty()) return s == K ? 1.0 : 0.0;
    return c.query_weights[static_cast<std::size_t>(s - 1)];
  };

  T* checkpoints = ws + pl.checkpoints;
  T* seg_theta = ws + pl.seg_theta;
  T* cur = ws + pl.cur;
  T* u = ws + pl.u;
  auto slot_base = [&](std::int64_t s) { return ws + pl.slots + (s % seg) * pl.slot; };
  auto slot_state = [&](std::int64_t s) {
    return state_at<T>(slot_base(s) + (pl.keep_g ? P : 0), c.sizes, n, pl.with_q, pl.with_p);
  };
  const State<T> qst = state_at<T>(ws + pl.query, c.sizes, m, false, false);

  for (std::int64_t t = 0; t < d.tasks; ++t) {
    const T* theta0 = v.init.as<T>() + (d.shared_init ? 0 : t * P);
    // theta_s: s = 0 in init, s = K in cur, segment starts in checkpoints, the rest in seg_theta.
    auto theta_at = [&](std::int64_t s) -> T* {
      if (s == K) return cur;
      if (s % seg == 0) return checkpoints + (s / seg - 1) * P;
      return seg_theta + (s % seg - 1) * P;
    };
    auto theta_of = [&](std::int64_t s) -> const T* { return s == 0 ? theta0 : theta_at(s); };
    const T* sx = v.support_x.as<T>() + t * n * in;
    const T* qx = v.query_x.as<T>() + t * m * in;
    const std::int64_t* sl = ce ? v.support_y.as<std::int64_t>() + t * n : nullptr;
    const std::int64_t* ql = ce ? v.query_y.as<std::int64_t>() + t * m : nullptr;
    const T* sy = ce ? nullptr : v.support_y.as<T>() + t * n * out;
    const T* qy = ce ? nullptr : v.query_y.as<T>() + t * m * out;
    T* vg = v.grad_init.as<T>() + t * P;  // v_s, in place
    T* grates = pl.keep_g ? v.grad_rates.as<T>() + t * d.rate_count : nullptr;
    T* gsx = c.input_grads ? v.grad_support_x.as<T>() + t * n * in : nullptr;
    T* gqx = c.input_grads ? v.grad_query_x.as<T>() + t * m * in : nullptr;
    T* losses = v.losses.as<T>() + t * 2;

    // One inner step s on the support rows: saves its state in its slot, g_s (in the slot, when the
    // rates are learned) and, when `update`, writes theta_{s+1}.
    auto inner_step = [&](std::int64_t s, bool update) {
      const T* theta = theta_of(s);
      const State<T> st = slot_state(s);
      forward(net, theta, sx, n, st);
      const double loss = loss_and_delta(c.loss, st.delta[net.L - 1], st.p, n, out, sl, sy, T(1));
      if (s == 0) losses[0] = static_cast<T>(loss);
      if (pl.keep_g) {
        T* g = slot_base(s);
        backward(net, theta, sx, n, st, GradSink<T>{g, Acc::assign}, static_cast<T*>(nullptr));
        if (update) {
          T* next = theta_at(s + 1);
          times_eta(static_cast<int>(s), g, next);
          Vec<T>(next, P) = VecC<T>(theta, P) - VecC<T>(next, P);
        }
      } else if (update) {  // scalar rate: theta_{s+1} = theta_s - lr g_s accumulated in place
        T* next = theta_at(s + 1);
        std::copy(theta, theta + P, next);
        backward(net, theta, sx, n, st, GradSink<T>{next, Acc::sub, lr}, static_cast<T*>(nullptr));
      } else {
        backward(net, theta, sx, n, st, GradSink<T>{}, static_cast<T*>(nullptr));
      }
    };
    // v += w dL_Q/dtheta at theta (accumulate) or v = (first call), and grad_query_x += w e_0.
    auto query_term = [&](const T* theta, double w, bool accumulate, bool keep_out) {
      forward(net, theta, qx, m, qst);
      if (keep_out) {
        Map<T>(v.query_out.as<T>() + t * m * out, m, out) = MapC<T>(qst.delta[net.L - 1], m, out);
      }
      const double loss = loss_and_delta(c.loss, qst.delta[net.L - 1], static_cast<T*>(nullptr), m, out, ql, qy,
                                         static_cast<T>(w));
      backward(net, theta, qx, m, qst, GradSink<T>{vg, accumulate ? Acc::add : Acc::assign}, gqx);
      return loss;
    };

    // Forward sweep.
    for (std::int64_t s = 0; s < K; ++s) inner_step(s, true);
    if (gqx) std::fill(gqx, gqx + m * in, T(0));
    if (gsx) std::fill(gsx, gsx + n * in, T(0));
    if (c.rates == FusedRates::per_parameter) std::fill(grates, grates + P, T(0));
    losses[1] = static_cast<T>(query_term(cur, weight(K), false, v.query_out.data != nullptr));

    // Reverse sweep, segment by segment; the last segment's states are still in the slots.
    for (int j = pl.segments - 1; j >= 0; --j) {
      const std::int64_t begin = static_cast<std::int64_t>(j) * seg, end = std::min<std::int64_t>(begin + seg, K);
      if (j != pl.segments - 1) {
        for (std::int64_t s = begin; s < end; ++s) inner_step(s, s + 1 < end);
      }
      for (std::int64_t s = end - 1; s >= begin; --s) {
        const T* theta = theta_of(s);
        if (pl.keep_g) {  // dF/deta_s = -g_s (.) v_{s+1}
          const T* g = slot_base(s);
          if (c.rates == FusedRates::per_parameter) {
            Vec<T>(grates, P) -= VecC<T>(g, P).cwiseProduct(VecC<T>(vg, P));
          } else {
            for (std::int64_t k = 0; k < tensors; ++k) {
              const std::int64_t b = tensor_begin[k], len = tensor_begin[k + 1] - b;
              grates[k * K + s] = -dot(g + b, vg + b, len);
            }
          }
        }
        if (c.second_order) {  // v_s = v_{s+1} - H_s u_s
          times_eta(static_cast<int>(s), vg, u);
          T* target = vg;
          if (c.fault == Fault::drop_hessian_term) {
            target = ws + pl.sink;
            std::fill(target, target + P, T(0));
          }
          subtract_hvp(net, c.loss, theta, u, sx, n, slot_state(s), ws + pl.rz, ws + pl.ra, ws + pl.re, target, gsx);
        }
        if (s >= 1 && weight(s) != 0.0) query_term(theta, weight(s), true, false);
      }
    }
    if (c.fault == Fault::drop_rate_gradient && grates) std::fill(grates, grates + d.rate_count, T(0));
  }
}

void check_labels(const FusedMetaGradientConfig& c, const Dims& d, const FusedMetaGradientViews& v) {
  if (c.loss != FusedLoss::cross_entropy) return;
  const std::int64_t out = c.sizes.back();
  auto scan = [&](const View& y, std::int64_t rows, const char* which) {
    const std::int64_t* labels = y.as<std::int64_t>();
    for (std::int64_t t = 0; t < d.tasks; ++t) {
      for (std::int64_t r = 0; r < rows; ++r) {
        const std::int64_t label = labels[t * rows + r];
        if (label < 0 || label >= out) {
          bad(std::string(which) + " label " + str(label) + " of task " + str(t) + " row " + str(r) +
              " is outside [0, " + str(out) + ") (labels are class indices below the model's " + str(out) +
              " outputs)");
        }
      }
    }
  };
  scan(v.support_y, d.n, "support");
  scan(v.query_y, d.m, "query");
}

}  // namespace

std::int64_t fused_meta_gradient_workspace(const FusedMetaGradientConfig& config, std::int64_t n, std::int64_t m,
                                           Device device) {
  check_config(config);
  if (n < 1 || m < 1) bad("workspace: needs n >= 1 support and m >= 1 query rows, got " + str(n) + " and " + str(m));
  if (device == Device::cpu) return plan(config, n, m).total;
#ifdef METATAPE_WITH_CUDA
  return cuda::fused_meta_gradient_workspace(config, n, m);
#else
  bad("workspace: this build has no CUDA backend (configure with -DMETATAPE_CUDA=ON)");
#endif
}

bool fused_meta_gradient_supported(const FusedMetaGradientConfig& config, std::int64_t n, std::int64_t m,
                                   Device device, std::string* why) {
  try {
    check_config(config);
    if (n < 1 || m < 1) bad("needs n >= 1 support and m >= 1 query rows, got " + str(n) + " and " + str(m));
  } catch (const Error& e) {
    // `why` without the "metatape: " prefix, so that fail(why) reads like every other error.
    constexpr std::string_view prefix = "metatape: ";
    const std::string_view what = e.what();
    if (why) *why = std::string(what.substr(what.starts_with(prefix) ? prefix.size() : 0));
    return false;
  }
  if (device == Device::cpu) return true;
#ifdef METATAPE_WITH_CUDA
  const std::string limit = cuda::fused_meta_gradient_limit(config, n, m);
  if (!limit.empty()) {
    if (why) *why = limit;
    return false;
  }
  return true;
#else
  if (why) {
    *why = "fused_meta_gradient: this build has no CUDA backend (configure with -DMETATAPE_CUDA=ON, or "
           "run on the CPU)";
  }
  return false;
#endif
}

namespace cpu {
void fused_meta_gradient(const FusedMetaGradientConfig& config, const FusedMetaGradientViews& views) {
  const Dims d = check_views(config, views);
  if (views.support_x.device != Device::cpu) bad("the CPU reference got CUDA views (call kernels::fused_meta_gradient)");
  check_labels(config, d, views);
  if (views.support_x.dtype == DType::f32) {
    run<float>(config, d, views);
  } else {
    run<double>(config, d, views);
  }
}
}  // namespace cpu

void fused_meta_gradient(const FusedMetaGradientConfig& config, const FusedMetaGradientViews& views) {
  if (views.support_x.device == Device::cpu) {
    cpu::fused_meta_gradient(config, views);
    return;
  }
#ifdef METATAPE_WITH_CUDA
  const Dims d = check_views(config, views);
  if (views.support_x.dtype != DType::f32) {
    bad("the CUDA kernel runs in f32, got " + std::string(dtype_name(views.support_x.dtype)) +
        " (convert the parameters and data to f32, or run f64 on the CPU)");
  }
  std::string why;
  if (!fused_meta_gradient_supported(config, d.n, d.m, Device::cuda, &why)) fail(why);
  cuda::fused_meta_gradient(config, views);
#else
  bad("got CUDA views but this build has no CUDA backend (configure with -DMETATAPE_CUDA=ON)");
#endif
}

}  // namespace metatape::kernels
