// CPU reference for 2-D convolution: per image, the image's windows unfolded into a thread-local
// scratch block cols (K = C * kh * kw rows, P = out_h * out_w columns; row (c, i, j), column (oh, ow))
// and one Eigen GEMM with w viewed as (O, K):
//   forward          y_n (O, P)  = W (O, K) cols_n (K, P)
//   backward data    cols_n      = W^T (K, O) dy_n (O, P), then folded (summed) back into dx_n
//   backward filter  dW          = sum over n = 0, 1, ... of dy_n (O, P) cols_n^T (P, K)   (fixed order)
// This (K, P) layout is the transpose of the im2col op's (kernels/op_kinds.h): each row of cols is,
// per output row oh, one strided run of the input row h = oh sh - ph + i dh, so unfolding is a copy of
// runs with the padding's zeros at the ends rather than a bounds check per element. One image at a
// time keeps the scratch at K * P elements (Conv-4's 64-filter layer at 14x14: 576 x 196, 450 KB in f32).
#include <Eigen/Core>
#include <algorithm>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/eigen_maps.h"
#include "kernels/cpu/float_dispatch.h"

namespace metatape::kernels::cpu {
namespace {


// The output columns [lo, hi) of a window offset whose input column is ow * sw + offset, offset =
// j dw - pw: those that land inside [0, width).
struct ValidRange {
  std::int64_t lo, hi;
};
ValidRange valid_columns(std::int64_t offset, std::int64_t stride, std::int64_t width, std::int64_t out_w) {
  // ow * stride + offset >= 0  and  ow * stride + offset < width
  std::int64_t lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  std::int64_t hi = width - offset <= 0 ? 0 : (width - offset - 1) / stride + 1;
  lo = std::min(lo, out_w);
  hi = std::max(lo, std::min(hi, out_w));
  return {lo, hi};
}

// cols (K, P) = the windows of one image x (C, H, W), padding read as 0.
template <class T>
void unfold_image(const T* x, std::int64_t c_, std::int64_t h_, std::int64_t w_, const WindowGeometry& g, T* cols) {
  for (std::int64_t c = 0; c < c_; ++c) {
    for (std::int64_t i = 0; i < g.kh; ++i) {
      for (std::int64_t j = 0; j < g.kw; ++j) {
        const std::int64_t offset = j * g.dw - g.pw;
        const ValidRange v = valid_columns(offset, g.sw, w_, g.out_w);
        for (std::int64_t oh = 0; oh < g.out_h; ++oh, cols += g.out_w) {
          const std::int64_t h = oh * g.sh - g.ph + i * g.dh;
          if (h < 0 || h >= h_) {
            std::fill(cols, cols + g.out_w, T(0));
            continue;
          }
          const T* row = x + (c * h_ + h) * w_ + offset;
          std::fill(cols, cols + v.lo, T(0));
          for (std::int64_t ow = v.lo; ow < v.hi; ++ow) cols[ow] = row[ow * g.sw];
          std::fill(cols + v.hi, cols + g.out_w, T(0));
        }
      }
    }
  }
}

// dx (C, H, W) = the adjoint of unfold_image: every element the sum of the cols entries that read it,
// added in cols order ("=": dx is zeroed first).
template <class T>
void fold_image(const T* cols, std::int64_t c_, std::int64_t h_, std::int64_t w_, const WindowGeometry& g, T* dx) {
  std::fill(dx, dx + c_ * h_ * w_, T(0));
  for (std::int64_t c = 0; c < c_; ++c) {
    for (std::int64_t i = 0; i < g.kh; ++i) {
      for (std::int64_t j = 0; j < g.kw; ++j) {
        const std::int64_t offset = j * g.dw - g.pw;
        const ValidRange v = valid_columns(offset, g.sw, w_, g.out_w);
        for (std::int64_t oh = 0; oh < g.out_h; ++oh, cols += g.out_w) {
          const std::int64_t h = oh * g.sh - g.ph + i * g.dh;
          if (h < 0 || h >= h_) continue;
          T* row = dx + (c * h_ + h) * w_ + offset;
          for (std::int64_t ow = v.lo; ow < v.hi; ++ow) row[ow * g.sw] += cols[ow];
        }
      }
    }
  }
}

template <class T>
T* scratch(std::size_t elements) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < elements) buffer.resize(elements);
  return buffer.data();
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
    const std::int64_t c = x.shape[1], h = x.shape[2], wd = x.shape[3];
    T* cols = scratch<T>(static_cast<std::size_t>(s.k * s.p));
    MapC<T> wm(w.as<T>(), s.o, s.k);
    for (std::int64_t n = 0; n < s.n; ++n) {
      unfold_image(x.as<T>() + n * c * h * wd, c, h, wd, g, cols);
      Map<T>(y.as<T>() + n * s.o * s.p, s.o, s.p).noalias() = wm * MapC<T>(cols, s.k, s.p);
    }
  });
}

void conv2d_backward_data(const View& dy, const View& w, const WindowGeometry& g, const View& dx) {
  with_float_type(dx.dtype, "conv2d_backward_data", [&](auto tag) {
    using T = decltype(tag);
    const ConvSizes s = sizes(dx, w, g);
    const std::int64_t c = dx.shape[1], h = dx.shape[2], wd = dx.shape[3];
    T* cols = scratch<T>(static_cast<std::size_t>(s.k * s.p));
    MapC<T> wm(w.as<T>(), s.o, s.k);
    for (std::int64_t n = 0; n < s.n; ++n) {
      Map<T>(cols, s.k, s.p).noalias() = wm.transpose() * MapC<T>(dy.as<T>() + n * s.o * s.p, s.o, s.p);
      fold_image(cols, c, h, wd, g, dx.as<T>() + n * c * h * wd);
    }
  });
}

void conv2d_backward_filter(const View& x, const View& dy, const WindowGeometry& g, const View& dw) {
  with_float_type(dw.dtype, "conv2d_backward_filter", [&](auto tag) {
    using T = decltype(tag);
    const ConvSizes s = sizes(x, dw, g);
    const std::int64_t c = x.shape[1], h = x.shape[2], wd = x.shape[3];
    T* cols = scratch<T>(static_cast<std::size_t>(s.k * s.p));
    Map<T> dwm(dw.as<T>(), s.o, s.k);
    dwm.setZero();
    for (std::int64_t n = 0; n < s.n; ++n) {
      unfold_image(x.as<T>() + n * c * h * wd, c, h, wd, g, cols);
      dwm.noalias() += MapC<T>(dy.as<T>() + n * s.o * s.p, s.o, s.p) * MapC<T>(cols, s.k, s.p).transpose();
    }
  });
}

}  // namespace metatape::kernels::cpu
