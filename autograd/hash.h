// The one 64-bit FNV-1a hash (Fowler-Noll-Vo, variant 1a) of the project: checkpoint checksums
// (nn/checkpoint.cpp), the task sampler's cache keys (tasks/sampler.cpp) and the benchmark's name
// seeds (eval/benchmark.cpp) all call it, so their values never drift apart. Not a cryptographic hash.
// The values are pinned in tests/autograd/hash_test.cpp: checkpoints already written and seeds already
// published depend on them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace metatape {

inline constexpr std::uint64_t fnv1a64_offset = 0xcbf29ce484222325ULL;  // 14695981039346656037
inline constexpr std::uint64_t fnv1a64_prime = 0x100000001b3ULL;        // 1099511628211

// FNV-1a of n bytes at data, continuing from h (the offset basis for a fresh hash; pass a previous
// result to hash a sequence of pieces as one byte string).
inline std::uint64_t fnv1a64(const void* data, std::size_t n, std::uint64_t h = fnv1a64_offset) {
  const auto* b = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= b[i];
    h *= fnv1a64_prime;
  }
  return h;
}

inline std::uint64_t fnv1a64(std::string_view text, std::uint64_t h = fnv1a64_offset) {
  return fnv1a64(text.data(), text.size(), h);
}

}  // namespace metatape
