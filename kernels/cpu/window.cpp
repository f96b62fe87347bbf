// CPU reference for im2col and its adjoint col2im (layout: kernels/op_kinds.h, WindowGeometry).
// col2im zeroes x and adds the column entries back in the order im2col wrote them, so every element's
// sum has one fixed order.
#include <algorithm>
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/float_dispatch.h"

namespace metatape::kernels::cpu {
namespace {

// Calls visit(x_offset_or_minus_1, cols_offset) for every cols entry, in cols order.
template <class Visit>
void for_each_window_entry(const Shape& xs, const WindowGeometry& g, Visit visit) {
  const std::int64_t n_ = xs[0], c_ = xs[1], h_ = xs[2], w_ = xs[3];
  std::int64_t col = 0;
  for (std::int64_t n = 0; n < n_; ++n) {
    for (std::int64_t oh = 0; oh < g.out_h; ++oh) {
      for (std::int64_t ow = 0; ow < g.out_w; ++ow) {
        for (std::int64_t c = 0; c < c_; ++c) {
          const std::int64_t plane = (n * c_ + c) * h_;
          for (std::int64_t i = 0; i < g.kh; ++i) {
            const std::int64_t h = oh * g.sh - g.ph + i * g.dh;
            const bool row_in = h >= 0 && h < h_;
            for (std::int64_t j = 0; j < g.kw; ++j, ++col) {
              const std::int64_t w = ow * g.sw - g.pw + j * g.dw;
              visit(row_in && w >= 0 && w < w_ ? (plane + h) * w_ + w : -1, col);
            }
          }
        }
      }
    }
  }
}

}  // namespace

void im2col(const View& x, const WindowGeometry& g, const View& cols) {
  with_float_type(x.dtype, "im2col", [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.as<T>();
    T* out = cols.as<T>();
    for_each_window_entry(x.shape, g, [&](std::int64_t src, std::int64_t col) { out[col] = src < 0 ? T(0) : in[src]; });
  });
}

void col2im(const View& cols, const WindowGeometry& g, const View& x) {
  with_float_type(x.dtype, "col2im", [&](auto tag) {
    using T = decltype(tag);
    const T* in = cols.as<T>();
    T* out = x.as<T>();
    std::fill(out, out + x.numel(), T(0));
    for_each_window_entry(x.shape, g, [&](std::int64_t dst, std::int64_t col) {
      if (dst >= 0) out[dst] += in[col];
    });
  });
}

}  // namespace metatape::kernels::cpu
