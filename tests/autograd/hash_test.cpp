// Pinned values of the one SplitMix64 (autograd/random.h) and the one FNV-1a hash (autograd/hash.h).
// Seeds derived by the sampler and eval::derive_seed, checkpoint checksums and the Generator stream
// are built on them: a change here changes every published number and breaks every written checkpoint.
// The expected values come from the reference definitions (SplitMix64: Steele, Lea and Flood 2014;
// FNV-1a 64: offset basis 14695981039346656037, prime 1099511628211), computed independently.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include "autograd/hash.h"
#include "autograd/random.h"

using namespace metatape;

TEST_CASE("splitmix64 pinned values") {
  CHECK(splitmix64(0) == 0xe220a8397b1dcdafULL);  // the reference stream's first output for seed 0
  CHECK(splitmix64(1) == 0x910a2dec89025cc1ULL);
  CHECK(splitmix64(0x5eed) == 0x09f1fd9d03f0a9b4ULL);
  CHECK(splitmix64(~0ULL) == 0xe4d971771b652c20ULL);
  static_assert(splitmix64(0) == 0xe220a8397b1dcdafULL, "splitmix64 is constexpr");
}

TEST_CASE("fnv1a64 pinned values") {
  CHECK(fnv1a64("") == 0xcbf29ce484222325ULL);
  CHECK(fnv1a64("a") == 0xaf63dc4c8601ec8cULL);
  CHECK(fnv1a64("maml") == 0x1f6744a2cea40e2aULL);
  CHECK(fnv1a64(std::string("price_direction")) == 0x00ecd357fb317648ULL);
  // Hashing in pieces, continuing from the previous value, equals hashing the whole.
  const std::string whole = "price_direction";
  CHECK(fnv1a64(whole.substr(6), fnv1a64(whole.substr(0, 6))) == fnv1a64(whole));
  const unsigned char bytes[] = {'m', 'a', 'm', 'l'};
  CHECK(fnv1a64(bytes, sizeof bytes) == 0x1f6744a2cea40e2aULL);
}

TEST_CASE("Generator is seeded by the splitmix64 stream of its seed") {
  Generator a(0x5eed);
  CHECK(a.next_u64() == 0xef33f17055244b74ULL);
  CHECK(a.next_u64() == 0xe1f591112fb5051bULL);
  Generator b(42);
  CHECK(b.next_u64() == 0x15780b2e0c2ec716ULL);
  CHECK(b.next_u64() == 0x6104d9866d113a7eULL);
}
