// 8-bit grayscale images read from PNG files (libpng's simplified API), and the exact pixel-grid
// operations the image task families need (tasks/omniglot.h): ink conversion, area-averaging resize
// and quarter-turn rotation. Every image here is row-major, row 0 at the top.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace metatape::tasks {

// Declared dimensions above this are refused right after the PNG header, before any pixel memory is
// allocated, and files above max_png_file_bytes before they are read.
constexpr std::int64_t max_png_side = 4096;
constexpr std::uintmax_t max_png_file_bytes = std::uintmax_t{64} << 20;

struct GrayImage {
  std::int64_t width = 0, height = 0;
  std::vector<std::uint8_t> pixels;  // height * width, row-major; 0 = black .. 255 = white
};

// Decodes a PNG of any kind libpng reads (1/2/4/8/16-bit gray, gray+alpha, palette, RGB, RGBA,
// interlaced) to 8-bit gray through libpng's transforms: colour becomes its luminance, an alpha
// channel is composited onto white (transparent = background). `name` (a file path, usually) starts
// every error message; errors say what is wrong and what to do: not a PNG, truncated or damaged data,
// dimensions above max_png_side. Never crashes on hostile input: libpng reports through its own
// error handler and nothing is allocated before the dimensions are checked.
GrayImage decode_png_gray(const std::uint8_t* bytes, std::size_t size, const std::string& name);
// Reads `file` (refused when missing, empty, not a regular file or above max_png_file_bytes) and
// decodes it as above.
GrayImage read_png_gray(const std::filesystem::path& file);

// Ink intensity in [0, 1]: 1 - gray/255 (black ink = 1, white background = 0), row-major.
std::vector<float> ink_from_gray(const GrayImage& image);

// Resizes a (height, width) row-major image to (out_height, out_width) by exact area averaging: each
// output pixel is the mean of the source over its footprint, the source rectangle
// [i*height/out_height, (i+1)*height/out_height) x [j*width/out_width, (j+1)*width/out_width), with
// source pixels cut by the footprint's fractional edges weighted by the area they share with it.
// Overlaps are computed in integers (units of 1/out_height, 1/out_width), sums in double, so the
// result is deterministic and exact to float rounding. Works both ways (down- and up-sampling);
// equal sizes return the input. Throws when a size is < 1 or pixels.size() != height*width.
std::vector<float> resize_area(const std::vector<float>& pixels, std::int64_t height, std::int64_t width,
                               std::int64_t out_height, std::int64_t out_width);

// Rotates a side x side row-major image counter-clockwise by quarter_turns * 90 degrees (as
// numpy.rot90): one turn maps out[r][c] = in[c][side-1-r]. A permutation of the pixels, no
// interpolation. quarter_turns may be any integer (taken mod 4). Throws when pixels.size() != side^2.
std::vector<float> rotate_quarter_turns(const std::vector<float>& pixels, std::int64_t side, int quarter_turns);

}  // namespace metatape::tasks
