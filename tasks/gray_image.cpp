#include "tasks/gray_image.h"

#include <png.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <system_error>

#include "kernels/error.h"

namespace metatape::tasks {

namespace {

std::string hex_bytes(const std::uint8_t* bytes, std::size_t n) {
  std::string out;
  char buf[4];
  for (std::size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, i == 0 ? "%02X" : " %02X", bytes[i]);
    out += buf;
  }
  return out;
}

// Owns a png_image between begin_read and finish_read: png_image_free is safe at any point, and
// finish_read frees the image itself on success or failure.
struct PngImageGuard {
  png_image image{};
  PngImageGuard() {
    image.version = PNG_IMAGE_VERSION;
    image.opaque = nullptr;
  }
  ~PngImageGuard() { png_image_free(&image); }
  PngImageGuard(const PngImageGuard&) = delete;
  PngImageGuard& operator=(const PngImageGuard&) = delete;
};

}  // namespace

GrayImage decode_png_gray(const std::uint8_t* bytes, std::size_t size, const std::string& name) {
  const std::string where = "png: " + name + ": ";
  const std::string replace = "; replace it with the original image";
  if (size == 0) fail(where + "the file is empty (0 bytes)" + replace);
  constexpr std::size_t signature_bytes = 8;
  if (png_sig_cmp(bytes, 0, std::min(size, signature_bytes)) != 0) {
    fail(where + "not a PNG file: it starts with " + hex_bytes(bytes, std::min<std::size_t>(size, 8)) +
         ", a PNG starts with 89 50 4E 47 0D 0A 1A 0A (convert it to PNG" + replace + ")");
  }
  if (size <= signature_bytes) {
    fail(where + "truncated: only " + std::to_string(size) + " bytes, not even a PNG header" + replace);
  }
  // The simplified API installs its own error handler (setjmp/longjmp inside libpng) and reports
  // failure as a 0 return with image.message set; nothing here is unwound through libpng.
  PngImageGuard guard;
  png_image& image = guard.image;
  if (png_image_begin_read_from_memory(&image, bytes, size) == 0) {
    fail(where + "cannot read the PNG header: " + image.message + " (the file is truncated or damaged" + replace + ")");
  }
  if (image.width > static_cast<png_uint_32>(max_png_side) || image.height > static_cast<png_uint_32>(max_png_side)) {
    fail(where + "declares " + std::to_string(image.width) + "x" + std::to_string(image.height) +
         " pixels, above the " + std::to_string(max_png_side) + "x" + std::to_string(max_png_side) +
         " limit (max_png_side in tasks/gray_image.h): not an image this loader reads; check the file");
  }
  image.format = PNG_FORMAT_GRAY;
  GrayImage out;
  out.width = image.width;
  out.height = image.height;
  out.pixels.assign(PNG_IMAGE_SIZE(image), 255);
  const png_color white{255, 255, 255};  // alpha is composited onto white: transparent = background
  if (png_image_finish_read(&image, &white, out.pixels.data(), 0, nullptr) == 0) {
    fail(where + "cannot decode the pixels: " + image.message + " (the file is truncated or damaged" + replace + ")");
  }
  return out;
}

GrayImage read_png_gray(const std::filesystem::path& file) {
  namespace fs = std::filesystem;
  const std::string where = "png: " + file.string() + ": ";
  std::error_code ec;
  const fs::file_status status = fs::status(file, ec);
  if (!fs::exists(status)) fail(where + "no such file (check the path)");
  if (!fs::is_regular_file(status)) fail(where + "not a regular file (give the path of a .png file)");
  const std::uintmax_t bytes = fs::file_size(file, ec);
  if (ec) fail(where + "cannot read its size: " + ec.message());
  if (bytes > max_png_file_bytes) {
    fail(where + std::to_string(bytes) + " bytes, above the " + std::to_string(max_png_file_bytes) +
         "-byte limit (max_png_file_bytes in tasks/gray_image.h): not an image this loader reads; check the file");
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(where + "cannot open it (check its permissions)");
  std::vector<std::uint8_t> data(static_cast<std::size_t>(bytes));
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (static_cast<std::uintmax_t>(in.gcount()) != bytes) {
    fail(where + "read " + std::to_string(in.gcount()) + " of its " + std::to_string(bytes) +
         " bytes (was it changed while being read?)");
  }
  return decode_png_gray(data.data(), data.size(), file.string());
}

std::vector<float> ink_from_gray(const GrayImage& image) {
  std::vector<float> ink(image.pixels.size());
  for (std::size_t i = 0; i < ink.size(); ++i) ink[i] = 1.0f - static_cast<float>(image.pixels[i]) / 255.0f;
  return ink;
}

namespace {

// The area weights of one axis, n source pixels -> m output pixels: output i covers [i*n, (i+1)*n)
// and source k covers [k*m, (k+1)*m), both in units of 1/m source pixels; the weight of source k in
// output i is their overlap divided by n (the footprint's length), so each output's weights sum to 1.
struct AxisWeights {
  std::vector<std::int64_t> first;           // first source index of output i
  std::vector<std::vector<double>> weights;  // weights[i][k - first[i]]
};

AxisWeights axis_weights(std::int64_t n, std::int64_t m) {
  AxisWeights a;
  a.first.resize(static_cast<std::size_t>(m));
  a.weights.resize(static_cast<std::size_t>(m));
  for (std::int64_t i = 0; i < m; ++i) {
    const std::int64_t lo = i * n, hi = (i + 1) * n;
    const std::int64_t k0 = lo / m, k1 = (hi + m - 1) / m;  // sources [k0, k1) touch the footprint
    a.first[static_cast<std::size_t>(i)] = k0;
    for (std::int64_t k = k0; k < k1; ++k) {
      const std::int64_t overlap = std::min(hi, (k + 1) * m) - std::max(lo, k * m);
      a.weights[static_cast<std::size_t>(i)].push_back(static_cast<double>(overlap) / static_cast<double>(n));
    }
  }
  return a;
}

}  // namespace

std::vector<float> resize_area(const std::vector<float>& pixels, std::int64_t height, std::int64_t width,
                               std::int64_t out_height, std::int64_t out_width) {
  if (height < 1 || width < 1 || out_height < 1 || out_width < 1) {
    fail("resize_area: sizes must be >= 1, got " + std::to_string(height) + "x" + std::to_string(width) + " -> " +
         std::to_string(out_height) + "x" + std::to_string(out_width));
  }
  if (static_cast<std::int64_t>(pixels.size()) != height * width) {
    fail("resize_area: " + std::to_string(pixels.size()) + " pixels given for a " + std::to_string(height) + "x" +
         std::to_string(width) + " image (pass height * width values, row-major)");
  }
  if (height == out_height && width == out_width) return pixels;
  const AxisWeights wy = axis_weights(height, out_height), wx = axis_weights(width, out_width);
  // Rows first: rows (out_height, width), then columns.
  std::vector<double> rows(static_cast<std::size_t>(out_height * width), 0.0);
  for (std::int64_t i = 0; i < out_height; ++i) {
    const auto& w = wy.weights[static_cast<std::size_t>(i)];
    const std::int64_t k0 = wy.first[static_cast<std::size_t>(i)];
    double* dst = &rows[static_cast<std::size_t>(i * width)];
    for (std::size_t t = 0; t < w.size(); ++t) {
      const float* src = &pixels[static_cast<std::size_t>((k0 + static_cast<std::int64_t>(t)) * width)];
      for (std::int64_t x = 0; x < width; ++x) dst[x] += w[t] * static_cast<double>(src[x]);
    }
  }
  std::vector<float> out(static_cast<std::size_t>(out_height * out_width));
  for (std::int64_t i = 0; i < out_height; ++i) {
    const double* src = &rows[static_cast<std::size_t>(i * width)];
    for (std::int64_t j = 0; j < out_width; ++j) {
      const auto& w = wx.weights[static_cast<std::size_t>(j)];
      const std::int64_t l0 = wx.first[static_cast<std::size_t>(j)];
      double sum = 0.0;
      for (std::size_t t = 0; t < w.size(); ++t) sum += w[t] * src[l0 + static_cast<std::int64_t>(t)];
      out[static_cast<std::size_t>(i * out_width + j)] = static_cast<float>(sum);
    }
  }
  return out;
}

std::vector<float> rotate_quarter_turns(const std::vector<float>& pixels, std::int64_t side, int quarter_turns) {
  if (side < 1 || static_cast<std::int64_t>(pixels.size()) != side * side) {
    fail("rotate_quarter_turns: " + std::to_string(pixels.size()) + " pixels given for a " + std::to_string(side) +
         "x" + std::to_string(side) + " image (pass side * side values, row-major)");
  }
  const int turns = ((quarter_turns % 4) + 4) % 4;
  std::vector<float> cur = pixels, next(pixels.size());
  const auto at = [side](std::int64_t r, std::int64_t c) { return static_cast<std::size_t>(r * side + c); };
  for (int t = 0; t < turns; ++t) {
    for (std::int64_t r = 0; r < side; ++r)
      for (std::int64_t c = 0; c < side; ++c) next[at(r, c)] = cur[at(c, side - 1 - r)];
    cur.swap(next);
  }
  return cur;
}

}  // namespace metatape::tasks
