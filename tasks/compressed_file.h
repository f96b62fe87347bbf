// Reading one data file whole, gunzipping it when it is gzip (internal to the loaders, public through
// tasks/loaders.h).
// Contract: read_file(path, max_bytes) returns the file's bytes, inflated when they start with the gzip
// magic 1f 8b (concatenated gzip members are read in turn). It refuses, naming the path, before
// reading: a missing or unreadable path, a directory, a device, FIFO or socket, and a file larger than
// max_bytes; while inflating: corrupt or truncated gzip data and output past max_bytes (a "gzip
// bomb"; the buffer grows geometrically to max_bytes + 1, never beyond). Refusals of size name
// LoadOptions::max_decompressed_bytes, the knob that raises the limit.
#pragma once

#include <cstdint>
#include <string>

namespace metatape::tasks {

inline constexpr std::int64_t default_max_decompressed_bytes = std::int64_t{2} << 30;

std::string read_file(const std::string& path, std::int64_t max_bytes = default_max_decompressed_bytes);

}  // namespace metatape::tasks
