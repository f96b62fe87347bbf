// The explicit random generator: xoshiro256** seeded through splitmix64. Integer arithmetic only for
// the raw stream, so the same seed gives the same numbers on every machine; normals use the Marsaglia
// polar method (only log and sqrt, both correctly rounded by common libms).
#pragma once

#include <array>
#include <cstdint>

namespace metatape {

// SplitMix64's output function (Steele, Lea and Flood 2014) applied to x + 0x9e3779b97f4a7c15: a
// bijective 64-bit mix. The one definition in the project: it seeds Generator (each state word is
// splitmix64 of the seed advanced by k golden-ratio steps), and derives the sampler's per-task and
// eval's per-run seeds. Values pinned in tests/autograd/hash_test.cpp.
constexpr std::uint64_t splitmix64_gamma = 0x9e3779b97f4a7c15ULL;
constexpr std::uint64_t splitmix64(std::uint64_t x) {
  x += splitmix64_gamma;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0x5eed);

  std::uint64_t next_u64();
  double uniform();                      // [0, 1), 53 random bits
  double uniform(double lo, double hi);  // [lo, hi)
  double normal();                       // mean 0, standard deviation 1
  std::uint64_t below(std::uint64_t n);  // uniform integer in [0, n), unbiased

  // Derives an independent generator (e.g. one per task or worker) without touching this one's stream
  // position other than by one draw.
  Generator split();

  // The full state, for checkpoints: resuming from it continues the stream bit-identically.
  struct State {
    std::array<std::uint64_t, 4> words{};
    bool has_spare_normal = false;
    double spare_normal = 0.0;
  };
  State state() const;
  void set_state(const State& state);

 private:
  std::array<std::uint64_t, 4> s_{};
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace metatape
