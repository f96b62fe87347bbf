// im2col and its adjoint col2im on CUDA (layout: kernels/op_kinds.h, WindowGeometry).
// im2col: one thread per column entry (a gather). col2im: one thread per element of x, which sums
// the column entries that read it over the window offsets (i, j) in ascending order — a gather, so
// no atomics and the same result run to run. The CPU reference adds the same terms in ascending
// output position, which is the reverse (i, j) order: CPU and CUDA agree to rounding, not bit for bit.
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch.cuh"

namespace metatape::kernels::cuda {
namespace {

struct WindowShape {
  long long n, c, h, w;
};

template <class T>
__global__ void im2col_kernel(const T* x, T* cols, WindowShape s, WindowGeometry g) {
  const long long k = s.c * g.kh * g.kw;
  const long long positions = g.out_h * g.out_w;
  METATAPE_GRID_LOOP(e, s.n * positions * k) {
    const long long col = e % k;
    const long long row = e / k;
    const long long n = row / positions, p = row % positions;
    const long long oh = p / g.out_w, ow = p % g.out_w;
    const long long c = col / (g.kh * g.kw), ij = col % (g.kh * g.kw);
    const long long h = oh * g.sh - g.ph + (ij / g.kw) * g.dh;
    const long long w = ow * g.sw - g.pw + (ij % g.kw) * g.dw;
    cols[e] = (h >= 0 && h < s.h && w >= 0 && w < s.w) ? x[((n * s.c + c) * s.h + h) * s.w + w] : T(0);
  }
}

template <class T>
__global__ void col2im_kernel(const T* cols, T* x, WindowShape s, WindowGeometry g) {
  const long long k = s.c * g.kh * g.kw;
  const long long positions = g.out_h * g.out_w;
  METATAPE_GRID_LOOP(e, s.n * s.c * s.h * s.w) {
    const long long w = e % s.w;
    const long long h = (e / s.w) % s.h;
    const long long c = (e / (s.w * s.h)) % s.c;
    const long long n = e / (s.w * s.h * s.c);
    T acc = T(0);
    for (long long i = 0; i < g.kh; ++i) {
      const long long hp = h + g.ph - i * g.dh;  // = oh * sh when this offset reads (h, .)
      if (hp < 0 || hp % g.sh != 0 || hp / g.sh >= g.out_h) continue;
      const long long oh = hp / g.sh;
      for (long long j = 0; j < g.kw; ++j) {
        const long long wp = w + g.pw - j * g.dw;
        if (wp < 0 || wp % g.sw != 0 || wp / g.sw >= g.out_w) continue;
        const long long ow = wp / g.sw;
        acc += cols[(n * positions + oh * g.out_w + ow) * k + (c * g.kh + i) * g.kw + j];
      }
    }
    x[e] = acc;
  }
}

WindowShape window_shape(const View& x) { return {x.shape[0], x.shape[1], x.shape[2], x.shape[3]}; }

}  // namespace

void im2col(const View& x, const WindowGeometry& g, const View& cols) {
  with_float_type(x.dtype, "im2col", [&](auto tag) {
    using T = decltype(tag);
    im2col_kernel<T><<<blocks_for(cols.numel()), block_threads, 0, current_stream()>>>(x.as<const T>(), cols.as<T>(),
                                                                                      window_shape(x), g);
    METATAPE_CUDA_LAUNCH_CHECK("im2col", &x, &cols);
  });
}

void col2im(const View& cols, const WindowGeometry& g, const View& x) {
  with_float_type(x.dtype, "col2im", [&](auto tag) {
    using T = decltype(tag);
    col2im_kernel<T><<<blocks_for(x.numel()), block_threads, 0, current_stream()>>>(cols.as<const T>(), x.as<T>(),
                                                                                   window_shape(x), g);
    METATAPE_CUDA_LAUNCH_CHECK("col2im", &cols, &x);
  });
}

}  // namespace metatape::kernels::cuda
