// The CUDA runtime pieces: the caching allocator (reuse, statistics, cache release, poisoning),
// host<->device copies, device-side error reporting, streams, determinism and the kernels that the
// op table reaches only partly (convert, i64 fill, gemm with beta, long reductions).
#include <doctest/doctest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tensor.h"
#include "gpu_available.h"
#include "kernels/kernels.h"
#ifdef METATAPE_WITH_CUDA
#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/runtime.h"
#endif

using namespace metatape;

TEST_CASE("cuda: availability is reported without throwing") {
  const bool available = kernels::cuda_available();
#ifndef METATAPE_WITH_CUDA
  CHECK_FALSE(available);
  CHECK_THROWS_WITH_AS(Tensor::zeros(Shape{2}, DType::f32, Device::cuda), doctest::Contains("no CUDA backend"), Error);
#else
  MESSAGE("CUDA device available: " << (available ? "yes" : "no"));
#endif
}

#ifdef METATAPE_WITH_CUDA
using kernels::cuda::AllocatorStats;
using kernels::cuda::CachingAllocator;

TEST_CASE("cuda allocator: size classes round up by less than a quarter") {
  CHECK(CachingAllocator::size_class(0) == 512);
  CHECK(CachingAllocator::size_class(512) == 512);
  CHECK(CachingAllocator::size_class(513) == 640);
  CHECK(CachingAllocator::size_class(1024) == 1024);
  CHECK(CachingAllocator::size_class(1025) == 1280);
  for (std::size_t bytes : {700ul, 5000ul, 123457ul, 9999999ul}) {
    const std::size_t c = CachingAllocator::size_class(bytes);
    CHECK(c >= bytes);
    CHECK(static_cast<double>(c) < 1.25 * static_cast<double>(bytes) + 512);
  }
}

TEST_CASE("cuda allocator: blocks are reused, statistics add up, the cache can be released") {
  if (!gpu_available()) return;
  CachingAllocator& a = CachingAllocator::instance();
  a.release_cache();
  const AllocatorStats s0 = a.stats();
  void* p = a.allocate(100000);
  const AllocatorStats s1 = a.stats();
  CHECK(s1.device_allocations == s0.device_allocations + 1);
  CHECK(s1.bytes_in_use == s0.bytes_in_use + CachingAllocator::size_class(100000));
  CHECK(s1.peak_bytes_in_use >= s1.bytes_in_use);
  a.deallocate(p);
  const AllocatorStats s2 = a.stats();
  CHECK(s2.bytes_in_use == s0.bytes_in_use);
  CHECK(s2.bytes_cached == CachingAllocator::size_class(100000));
  void* q = a.allocate(99000);  // same size class: served from the cache, no cudaMalloc
  const AllocatorStats s3 = a.stats();
  CHECK(q == p);
  CHECK(s3.device_allocations == s1.device_allocations);
  CHECK(s3.cache_hits == s2.cache_hits + 1);
  CHECK(s3.bytes_cached == 0);
  a.deallocate(q);
  a.release_cache();
  CHECK(a.stats().bytes_cached == 0);
  CHECK_THROWS_WITH_AS(a.deallocate(reinterpret_cast<void*>(0x1234)),
                       doctest::Contains("not allocated by the CUDA caching allocator"), Error);
}

TEST_CASE("cuda allocator: a warmed-up loop of tensor ops calls cudaMalloc no more") {
  if (!gpu_available()) return;
  Generator gen(3);
  const Tensor x = Tensor::normal(Shape{45, 50}, 0, 1, gen).to(Device::cuda);
  const Tensor w = Tensor::normal(Shape{128, 50}, 0, 1, gen).to(Device::cuda);
  const Tensor b = Tensor::normal(Shape{128}, 0, 1, gen).to(Device::cuda);
  auto step = [&] { return sum(relu(linear(x, w, b))).item(); };
  const double first = step();
  const std::uint64_t mallocs = CachingAllocator::instance().stats().device_allocations;
  for (int i = 0; i < 20; ++i) CHECK(step() == first);
  CHECK(CachingAllocator::instance().stats().device_allocations == mallocs);
}

TEST_CASE("cuda allocator: poisoning fills fresh blocks with NaN") {
  if (!gpu_available()) return;
  CachingAllocator::instance().set_poison(true);
  const Tensor t = Tensor::empty(Shape{3, 5}, DType::f32, Device::cuda);
  const Tensor d = Tensor::empty(Shape{7}, DType::f64, Device::cuda);
  CachingAllocator::instance().set_poison(false);
  for (double v : t.to_vector<double>()) CHECK(std::isnan(v));
  for (double v : d.to_vector<double>()) CHECK(std::isnan(v));
}

TEST_CASE("cuda copies: host to device to host, device to device, small and large") {
  if (!gpu_available()) return;
  for (std::int64_t n : {1, 1000, 400000}) {  // 400000 f64 = 3.2 MB: past the pinned staging buffer
    std::vector<double> values(static_cast<std::size_t>(n));
    std::iota(values.begin(), values.end(), -5.0);
    const Tensor host = Tensor::from_vector(values, Shape{n}, DType::f64);
    const Tensor dev = host.to(Device::cuda);
    const Tensor dev2 = dev.copy();
    CHECK(dev2.device() == Device::cuda);
    CHECK(dev2.to_vector<double>() == values);
    CHECK(dev.to(Device::cpu).to_vector<double>() == values);
  }
  const Tensor idx = Tensor::indices({4, -2, 9}, Device::cuda);
  CHECK(idx.to_vector<std::int64_t>() == std::vector<std::int64_t>{4, -2, 9});
  CHECK(Tensor::full(Shape{4}, 7, DType::i64, Device::cuda).to_vector<std::int64_t>() ==
        std::vector<std::int64_t>{7, 7, 7, 7});
}

TEST_CASE("cuda convert: every dtype pair matches the CPU") {
  if (!gpu_available()) return;
  const Tensor src = Tensor::from_vector(std::vector<double>{-2.75, -1, 0, 0.5, 3.25, 1e6}, Shape{2, 3}, DType::f64);
  for (DType from : {DType::f32, DType::f64, DType::i64}) {
    for (DType to : {DType::f32, DType::f64, DType::i64}) {
      const Tensor a = src.to(from);
      CHECK(a.to(Device::cuda).to(to).to_vector<double>() == a.to(to).to_vector<double>());
    }
  }
}

TEST_CASE("cuda device errors: bad labels and indices are reported at the next synchronisation") {
  if (!gpu_available()) return;
  const Tensor logits = Tensor::zeros(Shape{4, 3}, DType::f32, Device::cuda);
  const Tensor bad = Tensor::indices({0, 1, 3, 2}, Device::cuda);
  const Tensor loss = cross_entropy(logits, bad);  // queued; nothing thrown yet
  CHECK_THROWS_WITH_AS(loss.item(), doctest::Contains("cross_entropy: label 3 in row 2 is outside [0, 3)"), Error);
  CHECK(std::isnan(loss.item()));  // the record was cleared; the value stays NaN
  const Tensor x = Tensor::ones(Shape{5, 2}, DType::f32, Device::cuda);
  const Tensor out = index_select(x, Tensor::indices({1, 7}, Device::cuda));
  CHECK_THROWS_WITH_AS(kernels::cuda::synchronize(),
                       doctest::Contains("index_select: index 7 at position 1 is outside [0, 5)"), Error);
  const Tensor good = cross_entropy(logits, Tensor::indices({0, 1, 2, 2}, Device::cuda));
  CHECK(good.item() == doctest::Approx(std::log(3.0)));
}

TEST_CASE("cuda determinism: reductions and scatters are bit-identical run to run") {
  if (!gpu_available()) return;
  Generator gen(17);
  const Tensor big = Tensor::normal(Shape{300, 700}, 0, 1, gen).to(Device::cuda);
  const Tensor tall = Tensor::normal(Shape{3, 70000}, 0, 1, gen).to(Device::cuda);
  const double s1 = sum(big).item();
  const std::vector<double> r1 = sum(tall, 1).to_vector<double>();
  std::vector<std::int64_t> idx;
  for (int i = 0; i < 500; ++i) idx.push_back(i % 7);
  const Tensor index = Tensor::indices(idx, Device::cuda);
  const Tensor src = Tensor::normal(Shape{500, 33}, 0, 1, gen).to(Device::cuda);
  const std::vector<double> a1 = index_add(src, index, 7).to_vector<double>();
  for (int k = 0; k < 3; ++k) {
    CHECK(sum(big).item() == s1);
    CHECK(sum(tall, 1).to_vector<double>() == r1);
    CHECK(index_add(src, index, 7).to_vector<double>() == a1);
  }
}

TEST_CASE("cuda long reductions: one- and two-pass sums against an f64 reference") {
  if (!gpu_available()) return;
  Generator gen(5);
  for (const Shape& shape : {Shape{300, 700}, Shape{3, 70000}, Shape{70, 2000}, Shape{5, 3, 40000}}) {
    const Tensor x = Tensor::uniform(shape, 0.5, 2.0, gen);
    const Tensor x64 = x.to(DType::f64);
    for (int axis = 0; axis < shape.rank; ++axis) {
      INFO("shape " << shape.str() << " axis " << axis);
      const std::vector<double> expected = sum(x64, axis).to_vector<double>();
      const std::vector<double> got = sum(x.to(Device::cuda), axis).to_vector<double>();
      REQUIRE(got.size() == expected.size());
      for (std::size_t i = 0; i < got.size(); ++i) CHECK(std::abs(got[i] - expected[i]) <= 1e-5 * expected[i]);
    }
    const double total = sum(x64).item();
    CHECK(std::abs(sum(x.to(Device::cuda)).item() - total) <= 1e-5 * total);
  }
}

TEST_CASE("cuda gemm: alpha and beta, and every transpose of a batched product, against the CPU") {
  if (!gpu_available()) return;
  Generator gen(9);
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const Tensor a = Tensor::normal(ta ? Shape{2, 6, 5} : Shape{2, 5, 6}, 0, 1, gen, DType::f64);
      const Tensor b = Tensor::normal(tb ? Shape{4, 6} : Shape{6, 4}, 0, 1, gen, DType::f64);
      const Tensor c = Tensor::normal(Shape{2, 5, 4}, 0, 1, gen, DType::f64);
      const Tensor c_dev = c.to(Device::cuda);
      const Tensor a_dev = a.to(Device::cuda);
      const Tensor b_dev = b.to(Device::cuda);
      kernels::gemm(a.view(), ta, b.view(), tb, c.view(), 0.5, -2.0);
      kernels::gemm(a_dev.view(), ta, b_dev.view(), tb, c_dev.view(), 0.5, -2.0);
      const std::vector<double> e = c.to_vector<double>();
      const std::vector<double> g = c_dev.to_vector<double>();
      for (std::size_t i = 0; i < e.size(); ++i) CHECK(g[i] == doctest::Approx(e[i]).epsilon(1e-12));
    }
  }
}

TEST_CASE("cuda streams: work on a caller's stream is ordered on it") {
  if (!gpu_available()) return;
  cudaStream_t stream = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess);
  {
    kernels::cuda::StreamGuard guard(stream);
    CHECK(kernels::cuda::current_stream() == stream);
    const Tensor x = Tensor::full(Shape{1000}, 2.0, DType::f32, Device::cuda);
    CHECK(sum(mul(x, x)).item() == 4000.0);
  }
  CHECK(kernels::cuda::current_stream() != stream);
  CachingAllocator::instance().release_cache();  // blocks cached for `stream` go before it does
  CHECK(cudaStreamDestroy(stream) == cudaSuccess);
}
#endif
