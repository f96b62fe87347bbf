// Checkpoints: a versioned binary format, written atomically and validated strictly on load.
//
// Layout (all integers little-endian):
//   magic        8 bytes  "MTCKPT\0\1"
//   version      u32      1
//   header_len   u64      length of the header text
//   header       JSON text: {"config": <object>, "step": <int>, "generator": {"words": [4 x u64 as
//                decimal strings], "has_spare": bool, "spare_bits": u64 string},
//                "sections": {"<section>": [{"name", "dtype": "f32"|"f64"|"i64", "shape": [...],
//                "offset", "bytes"}...]}}
//   data         raw tensor bytes, each entry at header offset (relative to the data start)
//   checksum     u64      FNV-1a 64 over every byte before it
// Sections: "params" (the model or learner meta-parameters), "optimizer" (Optimizer::state()), and
// any others the caller adds.
// Writes go to "<path>.tmp.<pid>", are fsync'ed, renamed over <path>, and the directory is fsync'ed,
// so a writer killed at any point leaves either the previous file or the new one.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "autograd/random.h"
#include "nn/parameters.h"

namespace metatape::nn {

struct Checkpoint {
  std::string config_json = "{}";  // any JSON object (the training configuration)
  std::int64_t step = 0;
  std::optional<Generator::State> generator;
  std::map<std::string, ParameterList> sections;  // "params", "optimizer", ...
};

void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);
// Most bytes load_checkpoint reads by default (4 GiB, about a billion f32 parameters).
inline constexpr std::uint64_t default_max_checkpoint_bytes = std::uint64_t{4} << 30;

// Throws metatape::Error naming the file and what is wrong: missing, not a regular file (a
// directory, a device, a FIFO), larger than max_bytes, too short, bad magic, unknown version,
// truncated, checksum mismatch, malformed header. Every entry is checked with overflow-safe
// arithmetic before any byte is copied: offset and bytes non-negative integers with
// [offset, offset + bytes) inside the data block, dims non-negative integers whose product times the
// dtype size fits in 63 bits and equals bytes, a known dtype, rank <= 4, a unique non-empty name;
// the message names the file, the section, the entry and the bad value.
Checkpoint load_checkpoint(const std::string& path, std::uint64_t max_bytes = default_max_checkpoint_bytes);
// Copies a loaded section's values into `target` in place, refusing (naming the first difference) a
// missing or extra name, or a shape or dtype mismatch.
void restore_section(const Checkpoint& checkpoint, const std::string& section, ParameterList& target);

}  // namespace metatape::nn
