// CPU reference for row gathers and scatters, axis blocks (concat, slice) and transposes.
#include <cstring>
#include <string>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/float_dispatch.h"

namespace metatape::kernels::cpu {
namespace {

void check_index(std::int64_t index, std::int64_t rows, std::int64_t position, const char* op) {
  if (index < 0 || index >= rows) {
    fail(std::string(op) + ": index " + std::to_string(index) + " at position " + std::to_string(position) +
         " is outside [0, " + std::to_string(rows) + ")");
  }
}

}  // namespace

void index_select_rows(const View& x, const View& index, const View& out) {
  const std::int64_t rows = x.shape[0];
  const std::size_t row_bytes = static_cast<std::size_t>(rows == 0 ? 0 : x.numel() / rows) * dtype_size(x.dtype);
  const std::int64_t* idx = index.as<std::int64_t>();
  for (std::int64_t r = 0; r < index.numel(); ++r) {
    check_index(idx[r], rows, r, "index_select");
    std::memcpy(static_cast<char*>(out.data) + static_cast<std::size_t>(r) * row_bytes,
                static_cast<const char*>(x.data) + static_cast<std::size_t>(idx[r]) * row_bytes, row_bytes);
  }
}

void index_add_rows(const View& src, const View& index, const View& out) {
  with_float_type(out.dtype, "index_add", [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t rows = out.shape[0];
    const std::int64_t width = rows == 0 ? 0 : out.numel() / rows;
    const std::int64_t* idx = index.as<std::int64_t>();
    for (std::int64_t r = 0; r < index.numel(); ++r) {
      check_index(idx[r], rows, r, "index_add");
      const T* s = src.as<T>() + r * width;
      T* d = out.as<T>() + idx[r] * width;
      for (std::int64_t k = 0; k < width; ++k) d[k] += s[k];
    }
  });
}

void copy_axis_block(const View& src, std::int64_t src_start, const View& dst, std::int64_t dst_start, int axis,
                     std::int64_t len) {
  std::int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= src.shape[i];
  for (int i = axis + 1; i < src.shape.rank; ++i) inner *= src.shape[i];
  const std::size_t elem = dtype_size(src.dtype);
  const std::int64_t src_len = src.shape[axis];
  const std::int64_t dst_len = dst.shape[axis];
  for (std::int64_t o = 0; o < outer; ++o) {
    std::memcpy(static_cast<char*>(dst.data) + static_cast<std::size_t>((o * dst_len + dst_start) * inner) * elem,
                static_cast<const char*>(src.data) + static_cast<std::size_t>((o * src_len + src_start) * inner) * elem,
                static_cast<std::size_t>(len * inner) * elem);
  }
}

void transpose_last2(const View& x, const View& out) {
  const int r = x.shape.rank;
  const std::int64_t rows = x.shape[r - 2];
  const std::int64_t cols = x.shape[r - 1];
  const std::int64_t batch = rows * cols == 0 ? 0 : x.numel() / (rows * cols);
  const std::size_t elem = dtype_size(x.dtype);
  const char* in = static_cast<const char*>(x.data);
  char* o = static_cast<char*>(out.data);
  for (std::int64_t t = 0; t < batch; ++t) {
    for (std::int64_t i = 0; i < rows; ++i) {
      for (std::int64_t j = 0; j < cols; ++j) {
        std::memcpy(o + static_cast<std::size_t>(t * rows * cols + j * rows + i) * elem,
                    in + static_cast<std::size_t>(t * rows * cols + i * cols + j) * elem, elem);
      }
    }
  }
}

}  // namespace metatape::kernels::cpu
