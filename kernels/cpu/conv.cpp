// CPU reference for 2-D convolution: per image, im2col into a thread-local scratch block of
// (positions P = out_h * out_w, K = C * kh * kw) and one Eigen GEMM with w viewed as (O, K):
//   forward          y_n (O, P)  = W (O, K) cols_n^T
//   backward data    dcols_n     = dy_n^T (P, O) W (O, K), then col2im into dx_n
//   backward filter  dW          = sum over n = 0, 1, ... of dy_n (O, P) cols_n (P, K)   (fixed order)
// One image's columns at a time keeps the scratch at P * K elements (Conv-4's 64-filter layer at 14x14:
// 196 x 576, 450 KB in f32) instead of N times that, and in cache for its GEMM.
#include <Eigen/Core>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/float_dispatch.h"

namespace metatape::kernels::cpu {
namespace {

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMap = Eigen::Map<const RowMatrix<T>>;
template <class T>
using MutMap = Eigen::Map<RowMatrix<T>>;

template <class T>
T* scratch(std::size_t elements) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < elements) buffer.resize(elements);
  return buffer.data();
}

// Image n of an (N, C, H, W) view as a one-image view.
View image(const View& v, std::int64_t n) {
  View one = v;
  one.shape[0] = 1;
  const std::int64_t per_image = v.shape[1] * v.shape[2] * v.shape[3];
  one.data = static_cast<char*>(v.data) + static_cast<std::size_t>(n * per_image) * dtype_size(v.dtype);
  return one;
}

struct ConvSizes {
  std::int64_t n, o, k, p;
};

ConvSizes sizes(const View& x, const View& w, const WindowGeometry& g) {
  return {x.shape[0], w.shape[0], w.shape[1] * w.shape[2] * w.shape[3], g.out_h * g.out_w};
}

}  // namespace

void conv2d_forward(const View& x, const View& w, const WindowGeometry& g, const View& y) {
  with_float_type(x.dtype, "conv2d", [&](auto tag) {
    using T = decltype(tag);
    const ConvSizes s = sizes(x, w, g);
    T* cols = scratch<T>(static_cast<std::size_t>(s.p * s.k));
    View cols_view{cols, Shape{1, s.p, s.k}, x.dtype, Device::cpu};
    ConstMap<T> wm(w.as<T>(), s.o, s.k);
    for (std::int64_t n = 0; n < s.n; ++n) {
      im2col(image(x, n), g, cols_view);
      MutMap<T> yn(y.as<T>() + n * s.o * s.p, s.o, s.p);
      yn.noalias() = wm * ConstMap<T>(cols, s.p, s.k).transpose();
    }
  });
}

void conv2d_backward_data(const View& dy, const View& w, const WindowGeometry& g, const View& dx) {
  with_float_type(dx.dtype, "conv2d_backward_data", [&](auto tag) {
    using T = decltype(tag);
    const ConvSizes s = sizes(dx, w, g);
    T* cols = scratch<T>(static_cast<std::size_t>(s.p * s.k));
    View cols_view{cols, Shape{1, s.p, s.k}, dx.dtype, Device::cpu};
    ConstMap<T> wm(w.as<T>(), s.o, s.k);
    for (std::int64_t n = 0; n < s.n; ++n) {
      MutMap<T>(cols, s.p, s.k).noalias() = ConstMap<T>(dy.as<T>() + n * s.o * s.p, s.o, s.p).transpose() * wm;
      col2im(cols_view, g, image(dx, n));
    }
  });
}

void conv2d_backward_filter(const View& x, const View& dy, const WindowGeometry& g, const View& dw) {
  with_float_type(dw.dtype, "conv2d_backward_filter", [&](auto tag) {
    using T = decltype(tag);
    const ConvSizes s = sizes(x, dw, g);
    T* cols = scratch<T>(static_cast<std::size_t>(s.p * s.k));
    View cols_view{cols, Shape{1, s.p, s.k}, x.dtype, Device::cpu};
    MutMap<T> dwm(dw.as<T>(), s.o, s.k);
    dwm.setZero();
    for (std::int64_t n = 0; n < s.n; ++n) {
      im2col(image(x, n), g, cols_view);
      dwm.noalias() += ConstMap<T>(dy.as<T>() + n * s.o * s.p, s.o, s.p) * ConstMap<T>(cols, s.p, s.k);
    }
  });
}

}  // namespace metatape::kernels::cpu
