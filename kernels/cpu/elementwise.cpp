// CPU reference for fill, copy, convert, unary, binary and where.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/float_dispatch.h"

namespace metatape::kernels::cpu {
namespace {

template <UnaryOp op, class T>
inline T apply_unary(T x, T a, T b) {
  switch (op) {
    case UnaryOp::affine:
      return a * x + b;
    case UnaryOp::exp:
      return std::exp(x);
    case UnaryOp::log:
      return std::log(x);
    case UnaryOp::sqrt:
      return std::sqrt(x);
    case UnaryOp::square:
      return x * x;
    case UnaryOp::abs:
      return std::abs(x);
    case UnaryOp::sign:
      return static_cast<T>((x > T(0)) - (x < T(0)));
    case UnaryOp::pow:
      return std::pow(x, a);
    case UnaryOp::relu:
      return x > T(0) ? x : T(0);
    case UnaryOp::leaky_relu:
      return x > T(0) ? x : a * x;
    case UnaryOp::elu:
      return x > T(0) ? x : a * std::expm1(x);
    case UnaryOp::tanh:
      return std::tanh(x);
    case UnaryOp::sigmoid:
      return T(1) / (T(1) + std::exp(-x));
    case UnaryOp::softplus:
      return std::max(x, T(0)) + std::log1p(std::exp(-std::abs(x)));
    case UnaryOp::gelu: {
      const T c = T(0.7978845608028654);  // sqrt(2 / pi)
      return T(0.5) * x * (T(1) + std::tanh(c * (x + T(0.044715) * x * x * x)));
    }
    case UnaryOp::step:
      return x > a ? T(1) : T(0);
    case UnaryOp::in_range:
      return (x > a && x < b) ? T(1) : T(0);
    case UnaryOp::clamp:
      return std::min(std::max(x, a), b);
    case UnaryOp::reciprocal:
      return T(1) / x;
  }
  return x;
}

template <BinaryOp op, class T>
inline T apply_binary(T a, T b) {
  switch (op) {
    case BinaryOp::add:
      return a + b;
    case BinaryOp::sub:
      return a - b;
    case BinaryOp::mul:
      return a * b;
    case BinaryOp::div:
      return a / b;
    case BinaryOp::maximum:
      return std::max(a, b);
    case BinaryOp::minimum:
      return std::min(a, b);
    case BinaryOp::equal:
      return a == b ? T(1) : T(0);
    case BinaryOp::greater:
      return a > b ? T(1) : T(0);
  }
  return a;
}

// Calls fn(out_linear, a_offset, b_offset, c_offset) over out in row-major order.
template <class Fn>
void for_each_broadcast(const Shape& out, const Shape& a, const Shape& b, const Shape& c, Fn&& fn) {
  const BroadcastStrides sa = broadcast_strides(a, out);
  const BroadcastStrides sb = broadcast_strides(b, out);
  const BroadcastStrides sc = broadcast_strides(c, out);
  const auto& d = sa.dims;
  std::int64_t o = 0;
  for (std::int64_t i0 = 0; i0 < d[0]; ++i0) {
    for (std::int64_t i1 = 0; i1 < d[1]; ++i1) {
      for (std::int64_t i2 = 0; i2 < d[2]; ++i2) {
        const std::int64_t ba = i0 * sa.strides[0] + i1 * sa.strides[1] + i2 * sa.strides[2];
        const std::int64_t bb = i0 * sb.strides[0] + i1 * sb.strides[1] + i2 * sb.strides[2];
        const std::int64_t bc = i0 * sc.strides[0] + i1 * sc.strides[1] + i2 * sc.strides[2];
        for (std::int64_t i3 = 0; i3 < d[3]; ++i3, ++o) {
          fn(o, ba + i3 * sa.strides[3], bb + i3 * sb.strides[3], bc + i3 * sc.strides[3]);
        }
      }
    }
  }
}

}  // namespace

void fill(const View& out, double value) {
  if (out.dtype == DType::i64) {
    std::fill_n(out.as<std::int64_t>(), out.numel(), static_cast<std::int64_t>(value));
    return;
  }
  with_float_type(out.dtype, "fill", [&](auto tag) {
    using T = decltype(tag);
    std::fill_n(out.as<T>(), out.numel(), static_cast<T>(value));
  });
}

void copy(const View& src, const View& dst) {
  std::memcpy(dst.data, src.data, static_cast<std::size_t>(src.numel()) * dtype_size(src.dtype));
}

void convert(const View& src, const View& dst) {
  auto convert_from = [&](auto* in) {
    const std::int64_t n = src.numel();
    switch (dst.dtype) {
      case DType::f32:
        for (std::int64_t i = 0; i < n; ++i) dst.as<float>()[i] = static_cast<float>(in[i]);
        break;
      case DType::f64:
        for (std::int64_t i = 0; i < n; ++i) dst.as<double>()[i] = static_cast<double>(in[i]);
        break;
      case DType::i64:
        for (std::int64_t i = 0; i < n; ++i) dst.as<std::int64_t>()[i] = static_cast<std::int64_t>(in[i]);
        break;
    }
  };
  switch (src.dtype) {
    case DType::f32:
      convert_from(src.as<float>());
      break;
    case DType::f64:
      convert_from(src.as<double>());
      break;
    case DType::i64:
      convert_from(src.as<std::int64_t>());
      break;
  }
}

// The op is a template parameter so each loop is specialised (and vectorised) for one op.
template <UnaryOp op, class T>
void unary_loop(const T* __restrict in, T* __restrict y, std::int64_t n, T a, T b) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = apply_unary<op>(in[i], a, b);
}

template <class T>
void unary_typed(UnaryOp op, const T* in, T* y, std::int64_t n, T a, T b) {
  switch (op) {
#define METATAPE_UNARY_CASE(name) \
  case UnaryOp::name:             \
    return unary_loop<UnaryOp::name>(in, y, n, a, b);
    METATAPE_UNARY_CASE(affine)
    METATAPE_UNARY_CASE(exp) METATAPE_UNARY_CASE(log) METATAPE_UNARY_CASE(sqrt) METATAPE_UNARY_CASE(square)
        METATAPE_UNARY_CASE(abs) METATAPE_UNARY_CASE(sign) METATAPE_UNARY_CASE(pow) METATAPE_UNARY_CASE(relu)
            METATAPE_UNARY_CASE(leaky_relu) METATAPE_UNARY_CASE(elu) METATAPE_UNARY_CASE(tanh)
                METATAPE_UNARY_CASE(sigmoid) METATAPE_UNARY_CASE(softplus) METATAPE_UNARY_CASE(gelu)
                    METATAPE_UNARY_CASE(step) METATAPE_UNARY_CASE(in_range) METATAPE_UNARY_CASE(clamp)
                        METATAPE_UNARY_CASE(reciprocal)
#undef METATAPE_UNARY_CASE
  }
}

void unary(UnaryOp op, const View& x, const View& out, double alpha, double beta) {
  with_float_type(x.dtype, unary_op_name(op), [&](auto tag) {
    using T = decltype(tag);
    unary_typed<T>(op, x.as<T>(), out.as<T>(), x.numel(), static_cast<T>(alpha), static_cast<T>(beta));
  });
}

// Fast paths (same shape, scalar right operand, row broadcast) are specialised per op so they
// vectorise; anything else goes through the general four-deep broadcast loop. `a` may alias `out`.
template <BinaryOp op, class T>
void binary_typed(const View& a, const View& b, const View& out) {
  const T* pa = a.as<T>();
  const T* pb = b.as<T>();
  T* po = out.as<T>();
  const std::int64_t n = out.numel();
  const std::int64_t cols = out.shape.last();
  if (a.shape == out.shape && b.shape == out.shape) {
    for (std::int64_t i = 0; i < n; ++i) po[i] = apply_binary<op>(pa[i], pb[i]);
  } else if (a.shape == out.shape && b.numel() == 1) {
    const T s = pb[0];
    for (std::int64_t i = 0; i < n; ++i) po[i] = apply_binary<op>(pa[i], s);
  } else if (a.shape == out.shape && b.numel() == cols && b.shape.last() == cols) {
    for (std::int64_t r = 0; r < n / (cols == 0 ? 1 : cols); ++r) {
      for (std::int64_t c = 0; c < cols; ++c) po[r * cols + c] = apply_binary<op>(pa[r * cols + c], pb[c]);
    }
  } else {
    for_each_broadcast(out.shape, a.shape, b.shape, out.shape,
                       [&](std::int64_t o, std::int64_t ia, std::int64_t ib, std::int64_t) {
                         po[o] = apply_binary<op>(pa[ia], pb[ib]);
                       });
  }
}

void binary(BinaryOp op, const View& a, const View& b, const View& out) {
  with_float_type(out.dtype, binary_op_name(op), [&](auto tag) {
    using T = decltype(tag);
    switch (op) {
      case BinaryOp::add:
        return binary_typed<BinaryOp::add, T>(a, b, out);
      case BinaryOp::sub:
        return binary_typed<BinaryOp::sub, T>(a, b, out);
      case BinaryOp::mul:
        return binary_typed<BinaryOp::mul, T>(a, b, out);
      case BinaryOp::div:
        return binary_typed<BinaryOp::div, T>(a, b, out);
      case BinaryOp::maximum:
        return binary_typed<BinaryOp::maximum, T>(a, b, out);
      case BinaryOp::minimum:
        return binary_typed<BinaryOp::minimum, T>(a, b, out);
      case BinaryOp::equal:
        return binary_typed<BinaryOp::equal, T>(a, b, out);
      case BinaryOp::greater:
        return binary_typed<BinaryOp::greater, T>(a, b, out);
    }
  });
}

void broadcast_to(const View& x, const View& out) {
  with_float_type(out.dtype, "expand", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.as<T>();
    T* po = out.as<T>();
    // Fast path: x's trailing axes from `k` on equal out's, so out is a sequence of copies of x's
    // contiguous blocks of `inner` elements (a bias over rows, parameters over tasks): one memcpy per
    // block. Axes before k are either equal (walked) or 1 in x (repeated).
    const Shape xs = pad_rank(x.shape, out.shape.rank);
    int k = out.shape.rank;
    std::int64_t inner = 1;
    while (k > 0 && xs[k - 1] == out.shape[k - 1]) inner *= out.shape[--k];
    if (k < out.shape.rank && inner >= 8 && out.numel() > 0) {
      const std::int64_t blocks = out.numel() / inner;
      for (std::int64_t o = 0; o < blocks; ++o) {
        std::int64_t rest = o, xblock = 0, xstride = 1;
        for (int a = k - 1; a >= 0; --a) {
          const std::int64_t i = rest % out.shape[a];
          rest /= out.shape[a];
          if (xs[a] != 1) xblock += i * xstride;
          xstride *= xs[a];
        }
        std::memcpy(po + o * inner, px + xblock * inner, static_cast<std::size_t>(inner) * sizeof(T));
      }
      return;
    }
    for_each_broadcast(out.shape, x.shape, x.shape, x.shape,
                       [&](std::int64_t o, std::int64_t ix, std::int64_t, std::int64_t) { po[o] = px[ix]; });
  });
}

void where(const View& mask, const View& a, const View& b, const View& out) {
  with_float_type(out.dtype, "where", [&](auto tag) {
    using T = decltype(tag);
    const T* pm = mask.as<T>();
    const T* pa = a.as<T>();
    const T* pb = b.as<T>();
    T* po = out.as<T>();
    for_each_broadcast(out.shape, a.shape, b.shape, mask.shape,
                       [&](std::int64_t o, std::int64_t ia, std::int64_t ib, std::int64_t im) {
                         po[o] = pm[im] != T(0) ? pa[ia] : pb[ib];
                       });
  });
}

}  // namespace metatape::kernels::cpu
