// libFuzzer: the PNG decoder (tasks/gray_image.h) on in-memory bytes, then the ink conversion and a
// resize of what it decoded. metatape::Error is the only acceptable failure: hostile PNGs must be
// refused with a message, never crash, hang or allocate past max_png_side^2.
#include <cstdint>

#include "kernels/error.h"
#include "tasks/gray_image.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const metatape::tasks::GrayImage image = metatape::tasks::decode_png_gray(data, size, "fuzz.png");
    const auto ink = metatape::tasks::ink_from_gray(image);
    (void)metatape::tasks::resize_area(ink, image.height, image.width, 7, 5);
  } catch (const metatape::Error&) {}
  return 0;
}
