// CPU reference for sum_to and max_along. Summation order is fixed (row-major over x).
#include <algorithm>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/float_dispatch.h"

namespace metatape::kernels::cpu {

void sum_to(const View& x, const View& out) {
  with_float_type(x.dtype, "sum_to", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.as<T>();
    T* po = out.as<T>();
    const std::int64_t n = x.numel();
    if (out.numel() == 1) {
      T acc = T(0);
      for (std::int64_t i = 0; i < n; ++i) acc += px[i];
      po[0] = acc;
      return;
    }
    std::fill_n(po, out.numel(), T(0));
    const BroadcastStrides so = broadcast_strides(out.shape, x.shape);
    const auto& d = so.dims;
    const auto& s = so.strides;
    std::int64_t i = 0;
    for (std::int64_t i0 = 0; i0 < d[0]; ++i0)
      for (std::int64_t i1 = 0; i1 < d[1]; ++i1)
        for (std::int64_t i2 = 0; i2 < d[2]; ++i2) {
          T* row = po + i0 * s[0] + i1 * s[1] + i2 * s[2];
          if (s[3] == 0) {
            // The innermost axis is summed (batch-norm statistics, bias gradients): in registers, four
            // interleaved partial sums added in a fixed order, instead of a store and reload per element.
            T acc[4] = {T(0), T(0), T(0), T(0)};
            std::int64_t i3 = 0;
            for (; i3 + 4 <= d[3]; i3 += 4) {
              for (int l = 0; l < 4; ++l) acc[l] += px[i + i3 + l];
            }
            for (; i3 < d[3]; ++i3) acc[0] += px[i + i3];
            row[0] += (acc[0] + acc[1]) + (acc[2] + acc[3]);
            i += d[3];
            continue;
          }
          for (std::int64_t i3 = 0; i3 < d[3]; ++i3, ++i) row[i3 * s[3]] += px[i];
        }
  });
}

void max_along(const View& x, int axis, const View& values, const View& indices) {
  with_float_type(x.dtype, "max", [&](auto tag) {
    using T = decltype(tag);
    std::int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; ++i) outer *= x.shape[i];
    for (int i = axis + 1; i < x.shape.rank; ++i) inner *= x.shape[i];
    const std::int64_t len = x.shape[axis];
    const T* px = x.as<T>();
    T* pv = values.as<T>();
    std::int64_t* pi = indices.as<std::int64_t>();
    for (std::int64_t o = 0; o < outer; ++o) {
      for (std::int64_t j = 0; j < inner; ++j) {
        const T* base = px + o * len * inner + j;
        std::int64_t best = 0;
        for (std::int64_t k = 1; k < len; ++k) {
          if (base[k * inner] > base[best * inner]) best = k;
        }
        pv[o * inner + j] = base[best * inner];
        pi[o * inner + j] = best;
      }
    }
  });
}

}  // namespace metatape::kernels::cpu
