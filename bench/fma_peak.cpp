// The floor beside the meta-step numbers: single-thread FMA throughput of this CPU, f32 and f64.
//   fma_peak/<dtype>/<isa>/chains:<c>: c independent accumulator registers, each updated acc = acc * a + b
//   with one fused multiply-add per step, so the loop is bound by FMA issue, not latency (an FMA's
//   latency is ~4 cycles and two pipes issue per cycle, so at least 8 chains of full-width vectors
//   are needed; 12 and 16 are measured so the peak is seen to have levelled off; with 16 AVX2 chains
//   a machine with only 16 vector registers spills). Reported:
//   FLOP/s (2 per lane per FMA). ISAs: avx512 (zmm, where the compiler targets AVX-512F), avx2
//   (ymm with FMA3) and scalar (std::fma).
//   Run pinned: taskset -c 0 build/bench/bench_fma_peak
// Also: flop_count/<workload> prints the FLOP count of one W1 / W2 meta-step (bench/flop_count.h) as
// a counter, so the numbers the meta-step benchmarks divide by are on record.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/flop_count.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace {

constexpr std::int64_t steps_per_iteration = 4096;

// Keeps an accumulator in its register and opaque to the optimiser, at no cost.
template <class V>
void keep(V& v) {
  asm volatile("" : "+v"(v));
}

// The chains are named locals, not an array: an array captured by a lambda or indexed in a loop
// ends up on the stack, and a load and a store per FMA then bound the loop instead of the FMA pipes.
#define METATAPE_FMA_STEP(i) \
  acc##i = fma(acc##i, a, b); \
  keep(acc##i);

template <int Chains, class Vec, class Fma, class Splat>
void run_chains(benchmark::State& state, int lanes, Fma fma, Splat splat) {
  static_assert(Chains == 8 || Chains == 12 || Chains == 16);
  Vec acc0 = splat(1.00), acc1 = splat(1.01), acc2 = splat(1.02), acc3 = splat(1.03), acc4 = splat(1.04),
      acc5 = splat(1.05), acc6 = splat(1.06), acc7 = splat(1.07), acc8 = splat(1.08), acc9 = splat(1.09),
      acc10 = splat(1.10), acc11 = splat(1.11), acc12 = splat(1.12), acc13 = splat(1.13), acc14 = splat(1.14),
      acc15 = splat(1.15);
  Vec a = splat(0.999999), b = splat(1e-6);  // acc converges to 1: no overflow, no denormals
  keep(a);
  keep(b);
  for (auto _ : state) {
    for (std::int64_t s = 0; s < steps_per_iteration; ++s) {
      METATAPE_FMA_STEP(0) METATAPE_FMA_STEP(1) METATAPE_FMA_STEP(2) METATAPE_FMA_STEP(3)
      METATAPE_FMA_STEP(4) METATAPE_FMA_STEP(5) METATAPE_FMA_STEP(6) METATAPE_FMA_STEP(7)
      if constexpr (Chains > 8) {
        METATAPE_FMA_STEP(8) METATAPE_FMA_STEP(9) METATAPE_FMA_STEP(10) METATAPE_FMA_STEP(11)
      }
      if constexpr (Chains > 12) {
        METATAPE_FMA_STEP(12) METATAPE_FMA_STEP(13) METATAPE_FMA_STEP(14) METATAPE_FMA_STEP(15)
      }
    }
  }
  // The results are consumed by keep() (an asm statement the compiler must run), so no chain can be
  // dropped; nothing takes their address, so none of them lives in memory.
  keep(acc0), keep(acc1), keep(acc2), keep(acc3), keep(acc4), keep(acc5), keep(acc6), keep(acc7);
  keep(acc8), keep(acc9), keep(acc10), keep(acc11), keep(acc12), keep(acc13), keep(acc14), keep(acc15);
  const double flops_per_iteration = 2.0 * lanes * Chains * static_cast<double>(steps_per_iteration);
  state.counters["FLOP/s"] = benchmark::Counter(flops_per_iteration, benchmark::Counter::kIsIterationInvariantRate);
}
#undef METATAPE_FMA_STEP

template <class Vec, class Fma, class Splat>
void register_isa(const std::string& name, int lanes, Fma fma, Splat splat) {
  benchmark::RegisterBenchmark((name + "/chains:8").c_str(), [=](benchmark::State& s) {
    run_chains<8, Vec>(s, lanes, fma, splat);
  });
  benchmark::RegisterBenchmark((name + "/chains:12").c_str(), [=](benchmark::State& s) {
    run_chains<12, Vec>(s, lanes, fma, splat);
  });
  benchmark::RegisterBenchmark((name + "/chains:16").c_str(), [=](benchmark::State& s) {
    run_chains<16, Vec>(s, lanes, fma, splat);
  });
}

// The FLOPs of one meta-step, as counters (no timing: the loop body is empty).
void BM_flop_count(benchmark::State& state, std::vector<std::int64_t> sizes, std::int64_t n, std::int64_t m,
                   std::int64_t K, std::int64_t tasks) {
  for (auto _ : state) benchmark::DoNotOptimize(sizes.data());
  state.counters["maml_MFLOP"] =
      1e-6 * static_cast<double>(tasks * metatape::bench::fused_meta_gradient_flops(sizes, n, m, K, true));
  state.counters["fomaml_MFLOP"] =
      1e-6 * static_cast<double>(tasks * metatape::bench::fused_meta_gradient_flops(sizes, n, m, K, false));
}

}  // namespace

int main(int argc, char** argv) {
  register_isa<float>(
      "fma_peak/f32/scalar", 1, [](float x, float a, float b) { return std::fma(x, a, b); },
      [](double v) { return static_cast<float>(v); });
  register_isa<double>(
      "fma_peak/f64/scalar", 1, [](double x, double a, double b) { return std::fma(x, a, b); },
      [](double v) { return v; });
#if defined(__AVX2__) && defined(__FMA__)
  register_isa<__m256>(
      "fma_peak/f32/avx2", 8, [](__m256 x, __m256 a, __m256 b) { return _mm256_fmadd_ps(x, a, b); },
      [](double v) { return _mm256_set1_ps(static_cast<float>(v)); });
  register_isa<__m256d>(
      "fma_peak/f64/avx2", 4, [](__m256d x, __m256d a, __m256d b) { return _mm256_fmadd_pd(x, a, b); },
      [](double v) { return _mm256_set1_pd(v); });
#endif
#if defined(__AVX512F__)
  register_isa<__m512>(
      "fma_peak/f32/avx512", 16, [](__m512 x, __m512 a, __m512 b) { return _mm512_fmadd_ps(x, a, b); },
      [](double v) { return _mm512_set1_ps(static_cast<float>(v)); });
  register_isa<__m512d>(
      "fma_peak/f64/avx512", 8, [](__m512d x, __m512d a, __m512d b) { return _mm512_fmadd_pd(x, a, b); },
      [](double v) { return _mm512_set1_pd(v); });
#endif
  for (std::int64_t tasks : {8, 32}) {
    benchmark::RegisterBenchmark(("flop_count/W1_mb" + std::to_string(tasks)).c_str(), BM_flop_count,
                                 std::vector<std::int64_t>{50, 128, 128, 3}, 15, 45, 5, tasks)
        ->Iterations(1);
  }
  benchmark::RegisterBenchmark("flop_count/W2_mb25", BM_flop_count, std::vector<std::int64_t>{1, 40, 40, 1}, 10, 10,
                               1, 25)
      ->Iterations(1);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
