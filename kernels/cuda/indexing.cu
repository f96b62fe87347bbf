// Row gathers and scatters, axis blocks (concat, slice) and transposes on CUDA.
// index_add_rows is deterministic without atomics: each output element is owned by one thread, which
// scans the whole index list in order and adds the source rows that map to it (O(rows_out * n_index)
// comparisons, made cheap because every thread of a warp reads the same index). Out-of-range indices
// are reported through the device error record (kernels/cuda/runtime.h); index_select then writes
// NaN (float) or -1 (i64) rows.
#include <string>

#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch.cuh"

namespace metatape::kernels::cuda {
namespace {

// E: an unsigned integer type of the element's size (rows are moved bit for bit).
template <class E>
__global__ void index_select_kernel(const E* x, const long long* index, E* out, long long n_index, long long rows,
                                    long long width, DeviceErrorRecord* record) {
  METATAPE_GRID_LOOP(i, n_index * width) {
    const long long r = i / width;
    const long long k = i % width;
    const long long src = index[r];
    if (src < 0 || src >= rows) {
      if (k == 0) {
        report_device_error(record, DeviceErrorCode::index_out_of_range, DeviceErrorOp::index_select, src, r, rows);
      }
      out[i] = ~E(0);  // all bits set: NaN in f32 and f64, -1 in i64
    } else {
      out[i] = x[src * width + k];
    }
  }
}

// Block x-dim: columns k of one output row; the grid walks the output rows.
template <class T>
__global__ void index_add_kernel(const T* src, const long long* index, T* out, long long n_index, long long rows,
                                 long long width, DeviceErrorRecord* record) {
  if (blockIdx.x == 0 && blockIdx.y == 0) {
    for (long long r = threadIdx.x; r < n_index; r += blockDim.x) {
      if (index[r] < 0 || index[r] >= rows) {
        report_device_error(record, DeviceErrorCode::index_out_of_range, DeviceErrorOp::index_add, index[r], r, rows);
      }
    }
  }
  for (long long row = blockIdx.y; row < rows; row += gridDim.y) {
    for (long long k = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; k < width;
         k += static_cast<long long>(gridDim.x) * blockDim.x) {
      T acc = out[row * width + k];
      for (long long r = 0; r < n_index; ++r) {
        if (index[r] == row) acc += src[r * width + k];
      }
      out[row * width + k] = acc;
    }
  }
}

constexpr int tile = 32;
constexpr int tile_rows = 8;

// Shared memory: one 32 x 33 tile of E (the extra column avoids bank conflicts on the transposed
// read). Each block moves tile (ty, tx) of every matrix z of the batch (grid-stride in all three).
template <class E>
__global__ void transpose_kernel(const E* x, E* out, long long batch, long long rows, long long cols) {
  __shared__ E buffer[tile][tile + 1];
  const long long tiles_x = (cols + tile - 1) / tile;
  const long long tiles_y = (rows + tile - 1) / tile;
  for (long long z = blockIdx.z; z < batch; z += gridDim.z) {
    const E* in = x + z * rows * cols;
    E* o = out + z * rows * cols;
    for (long long ty = blockIdx.y; ty < tiles_y; ty += gridDim.y) {
      for (long long tx = blockIdx.x; tx < tiles_x; tx += gridDim.x) {
        const long long c = tx * tile + threadIdx.x;
        for (int j = threadIdx.y; j < tile; j += tile_rows) {
          const long long r = ty * tile + j;
          if (r < rows && c < cols) buffer[j][threadIdx.x] = in[r * cols + c];
        }
        __syncthreads();
        const long long oc = ty * tile + threadIdx.x;  // output column = input row
        for (int j = threadIdx.y; j < tile; j += tile_rows) {
          const long long orow = tx * tile + j;  // output row = input column
          if (orow < cols && oc < rows) o[orow * rows + oc] = buffer[threadIdx.x][j];
        }
        __syncthreads();
      }
    }
  }
}

template <class Fn>
void with_element_bits(DType dtype, Fn&& fn) {
  if (dtype_size(dtype) == 4)
    fn(std::uint32_t{});
  else
    fn(std::uint64_t{});
}

}  // namespace

void index_select_rows(const View& x, const View& index, const View& out) {
  const long long rows = x.shape[0];
  const long long width = rows == 0 ? 0 : x.numel() / rows;
  const long long n_index = index.numel();
  if (n_index == 0 || out.numel() == 0) return;
  if (rows == 0) fail("index_select: the input " + x.shape.str() + " has no rows to select from");
  DeviceErrorRecord* record = device_error_record();
  with_element_bits(x.dtype, [&](auto tag) {
    using E = decltype(tag);
    index_select_kernel<E><<<blocks_for(n_index * width), block_threads, 0, current_stream()>>>(
        static_cast<const E*>(x.data), reinterpret_cast<const long long*>(index.data), static_cast<E*>(out.data),
        n_index, rows, width, record);
  });
  METATAPE_CUDA_LAUNCH_CHECK("index_select", &x, &index, &out);
}

void index_add_rows(const View& src, const View& index, const View& out) {
  const long long rows = out.shape[0];
  const long long width = rows == 0 ? 0 : out.numel() / rows;
  const long long n_index = index.numel();
  if (n_index == 0 || width == 0) return;
  DeviceErrorRecord* record = device_error_record();
  const unsigned threads = width >= 256 ? 256u : static_cast<unsigned>((width + 31) / 32 * 32);
  const dim3 grid(static_cast<unsigned>(std::min<long long>((width + threads - 1) / threads, 1024)),
                  static_cast<unsigned>(std::min<long long>(rows, 65535)));
  with_float_type(out.dtype, "index_add", [&](auto tag) {
    using T = decltype(tag);
    index_add_kernel<T><<<grid, threads, 0, current_stream()>>>(
        src.as<T>(), reinterpret_cast<const long long*>(index.data), out.as<T>(), n_index, rows, width, record);
  });
  METATAPE_CUDA_LAUNCH_CHECK("index_add", &src, &index, &out);
}

void copy_axis_block(const View& src, std::int64_t src_start, const View& dst, std::int64_t dst_start, int axis,
                     std::int64_t len) {
  long long outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= src.shape[i];
  for (int i = axis + 1; i < src.shape.rank; ++i) inner *= src.shape[i];
  const std::size_t elem = dtype_size(src.dtype);
  const std::size_t width = static_cast<std::size_t>(len * inner) * elem;
  if (width == 0 || outer == 0) return;
  const std::size_t src_pitch = static_cast<std::size_t>(src.shape[axis] * inner) * elem;
  const std::size_t dst_pitch = static_cast<std::size_t>(dst.shape[axis] * inner) * elem;
  const char* s = static_cast<const char*>(src.data) + static_cast<std::size_t>(src_start * inner) * elem;
  char* d = static_cast<char*>(dst.data) + static_cast<std::size_t>(dst_start * inner) * elem;
  METATAPE_CUDA_CHECK(cudaMemcpy2DAsync(d, dst_pitch, s, src_pitch, width, static_cast<std::size_t>(outer),
                                        cudaMemcpyDeviceToDevice, current_stream()),
                      "copy_axis_block",
                      shapes_of({&src, &dst}) + ", axis " + std::to_string(axis) + ", len " + std::to_string(len));
}

void transpose_last2(const View& x, const View& out) {
  const int r = x.shape.rank;
  if (r < 2) fail("transpose: needs rank 2..4, got " + x.shape.str());
  const long long rows = x.shape[r - 2];
  const long long cols = x.shape[r - 1];
  if (rows * cols == 0) return;
  const long long batch = x.numel() / (rows * cols);
  const dim3 threads(tile, tile_rows);
  const dim3 grid(static_cast<unsigned>(std::min<long long>((cols + tile - 1) / tile, 65535)),
                  static_cast<unsigned>(std::min<long long>((rows + tile - 1) / tile, 65535)),
                  static_cast<unsigned>(std::min<long long>(batch, 65535)));
  with_element_bits(x.dtype, [&](auto tag) {
    using E = decltype(tag);
    transpose_kernel<E><<<grid, threads, 0, current_stream()>>>(static_cast<const E*>(x.data),
                                                                static_cast<E*>(out.data), batch, rows, cols);
  });
  METATAPE_CUDA_LAUNCH_CHECK("transpose", &x, &out);
}

}  // namespace metatape::kernels::cuda
