// The host buffer pool (kernels/allocator.h) under tensors and the tape: buffers are reused, reuse
// never leaks old values into tensors that must start at a value, a steady-state step does no
// malloc, the limit is honoured, and under AddressSanitizer cached blocks stay poisoned. Also the
// tape's in-place gradient accumulation (autograd/tape.cpp), which must never write into a tensor
// it does not own.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

#include "autograd/ops.h"
#include "autograd/tape.h"
#include "kernels/allocator.h"

#if defined(__SANITIZE_ADDRESS__)
#define POOL_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_TEST_ASAN 1
#endif
#endif
#ifdef POOL_TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

using namespace metatape;

namespace {

// Turns the calling thread's pool on with an empty cache (the default is off under ASan) and
// restores the previous limit at the end of the test.
struct PoolOn {
  std::size_t previous;
  explicit PoolOn(std::size_t limit = std::size_t{64} << 20) : previous(kernels::set_host_pool_limit(limit)) {
    kernels::trim_host_pool();
    kernels::reset_host_pool_counters();
  }
  ~PoolOn() {
    kernels::trim_host_pool();
    kernels::set_host_pool_limit(previous);
  }
};

bool all_equal(const Tensor& t, double value) {
  for (double v : t.to_vector<double>()) {
    if (v != value) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("host pool: a freed buffer is reused by the next request of its size class") {
  PoolOn on;
  void* first = nullptr;
  {
    Tensor t = Tensor::full(Shape{1000}, 7.0);  // 4000 bytes: class 4096
    first = t.raw_data();
  }
  auto s = kernels::host_pool_stats();
  CHECK(s.cached == 1);
  CHECK(s.cached_bytes == 4096);
  CHECK(kernels::host_memory_stats().pool_cached_bytes >= 4096);

  // Another size of the same class takes the same block, and zeros() is zero all the same.
  const Tensor z = Tensor::zeros(Shape{990});
  CHECK(z.raw_data() == first);
  CHECK(all_equal(z, 0.0));
  s = kernels::host_pool_stats();
  CHECK(s.reused == 1);
  CHECK(s.cached_bytes == 0);

  // A different class does not.
  const Tensor big = Tensor::zeros(Shape{5000});
  CHECK(big.raw_data() != first);
  CHECK(kernels::host_pool_stats().fresh >= 1);
  CHECK(reinterpret_cast<std::uintptr_t>(big.raw_data()) % kernels::cpu_alignment == 0);
}

TEST_CASE("host pool: reused buffers never carry old values into tensors that start at a value") {
  PoolOn on;
  const Shape shape{64, 33};
  for (DType dtype : {DType::f32, DType::f64}) {
    for (int round = 0; round < 3; ++round) {
      { Tensor dirty = Tensor::full(shape, -3.5, dtype); }
      const Tensor z = Tensor::zeros(shape, dtype);
      CHECK(all_equal(z, 0.0));
      { Tensor dirty = Tensor::full(shape, 9.0, dtype); }
      const Tensor o = Tensor::ones(shape, dtype);
      CHECK(all_equal(o, 1.0));
    }
  }
  // An unused input's gradient (allow_unused) is a fresh zeros tensor, also after reuse.
  Tensor x = Tensor::full(Shape{8, 8}, 2.0, DType::f64);
  Tensor unused = Tensor::full(Shape{8, 8}, 5.0, DType::f64);
  x.requires_grad_();
  unused.requires_grad_();
  { Tensor dirty = Tensor::full(Shape{8, 8}, 123.0, DType::f64); }
  GradOptions o;
  o.allow_unused = true;
  const auto g = grad({sum(mul(x, x))}, {x, unused}, o);
  CHECK(all_equal(g[0], 4.0));
  CHECK(all_equal(g[1], 0.0));
  CHECK(kernels::host_pool_stats().reused > 0);
}

TEST_CASE("host pool: a steady-state second-order step allocates nothing from the system") {
  PoolOn on;
  Generator gen(5);
  Tensor w1 = Tensor::normal(Shape{16, 6}, 0.0, 0.3, gen, DType::f64);
  Tensor b1 = Tensor::zeros(Shape{16}, DType::f64);
  Tensor w2 = Tensor::normal(Shape{2, 16}, 0.0, 0.3, gen, DType::f64);
  for (Tensor* p : {&w1, &b1, &w2}) p->requires_grad_();
  const Tensor x = Tensor::normal(Shape{10, 6}, 0.0, 1.0, gen, DType::f64);
  const Tensor y = Tensor::normal(Shape{10, 2}, 0.0, 1.0, gen, DType::f64);
  auto loss_of = [&](const Tensor& a, const Tensor& b, const Tensor& c) {
    return mean(square(sub(linear(relu(linear(x, a, b)), c, Tensor()), y)));
  };
  std::vector<double> first;
  auto step = [&] {
    TapeScope scope;
    GradOptions second;
    second.create_graph = true;
    const auto g = grad({loss_of(w1, b1, w2)}, {w1, b1, w2}, second);
    const Tensor outer = loss_of(sub(w1, affine(g[0], 0.1, 0.0)), sub(b1, affine(g[1], 0.1, 0.0)),
                                 sub(w2, affine(g[2], 0.1, 0.0)));
    const auto meta = grad({outer}, {w1, b1, w2});
    return meta[0].to_vector<double>();
  };
  first = step();  // warm-up: fills the pool
  kernels::reset_host_pool_counters();
  for (int i = 0; i < 3; ++i) CHECK(step() == first);  // same values from recycled buffers
  const auto s = kernels::host_pool_stats();
  CHECK(s.reused > 50);
  // to_vector's std::vector is not tensor storage; every tensor buffer came from the pool.
  CHECK(s.fresh == 0);
  CHECK(s.released == 0);
}

TEST_CASE("host pool: the limit caps what a thread caches; 0 turns the pool off") {
  {
    PoolOn on(8192);
    { Tensor a = Tensor::zeros(Shape{1000}); }  // 4096 bytes cached
    { Tensor b = Tensor::zeros(Shape{1500}); }  // 6144 more would pass the limit: back to the system
    auto s = kernels::host_pool_stats();
    CHECK(s.limit_bytes == 8192);
    CHECK(s.cached == 1);
    CHECK(s.released == 1);
    CHECK(s.cached_bytes == 4096);
    kernels::set_host_pool_limit(1024);  // below what is cached: given back at once
    CHECK(kernels::host_pool_stats().cached_bytes == 0);
  }
  {
    PoolOn off(0);
    { Tensor a = Tensor::zeros(Shape{1000}); }
    const auto s = kernels::host_pool_stats();
    CHECK(s.cached == 0);
    CHECK(s.released == 1);
    CHECK(s.cached_bytes == 0);
    const Tensor b = Tensor::zeros(Shape{1000});
    CHECK(kernels::host_pool_stats().reused == 0);
    CHECK(all_equal(b, 0.0));
  }
}

TEST_CASE("host pool: blocks freed on another thread go to that thread's pool, and live on") {
  PoolOn on;
  Tensor made_here = Tensor::full(Shape{300}, 4.0);
  Tensor made_there;
  std::uint64_t cached_on_worker = 0;
  std::thread worker([&] {
    kernels::set_host_pool_limit(std::size_t{1} << 20);
    made_there = Tensor::full(Shape{200}, 2.0);
    made_here = Tensor();  // freed on the worker: cached by its pool, freed at its exit
    { Tensor scratch = Tensor::zeros(Shape{4096}); }
    cached_on_worker = kernels::host_pool_stats().cached;
  });
  worker.join();
  CHECK(cached_on_worker == 2);
  CHECK(all_equal(made_there, 2.0));  // the worker's pool is gone; its live tensor is not
  made_there = Tensor();              // freed here: into this thread's pool
  CHECK(kernels::host_pool_stats().cached == 1);
}

TEST_CASE("host pool: METATAPE_HOST_POOL_BYTES is read as a byte count; anything else is an error") {
  CHECK(kernels::parse_host_pool_bytes("0") == 0);
  CHECK(kernels::parse_host_pool_bytes("4096") == 4096);
  CHECK(kernels::parse_host_pool_bytes("256M") == std::size_t{256} << 20);
  CHECK(kernels::parse_host_pool_bytes("2g") == std::size_t{2} << 30);
  for (const char* bad : {"", "lots", "-1", "12MB", "1.5G", "99999999999999999999"}) {
    CHECK_THROWS_WITH_AS(kernels::parse_host_pool_bytes(bad), doctest::Contains("METATAPE_HOST_POOL_BYTES"), Error);
  }
}

#ifdef POOL_TEST_ASAN
TEST_CASE("host pool under AddressSanitizer: off by default, cached blocks and slack poisoned") {
  if (std::getenv("METATAPE_HOST_POOL_BYTES") == nullptr) CHECK(kernels::default_host_pool_limit() == 0);
  PoolOn on;
  char* p = nullptr;
  {
    Tensor t = Tensor::zeros(Shape{1000});  // 4000 bytes, aligned 4032, class 4096
    p = static_cast<char*>(t.raw_data());
    CHECK_FALSE(__asan_address_is_poisoned(p));
    CHECK_FALSE(__asan_address_is_poisoned(p + 4031));
    CHECK(__asan_address_is_poisoned(p + 4032));  // slack past the aligned size
  }
  CHECK(__asan_address_is_poisoned(p));  // cached: a use after free is reported
  CHECK(__asan_address_is_poisoned(p + 2000));
  const Tensor again = Tensor::zeros(Shape{1000});
  CHECK(static_cast<char*>(again.raw_data()) == p);
  CHECK_FALSE(__asan_address_is_poisoned(p + 2000));
}
#endif

TEST_CASE("tape: gradient sums are accumulated in place only into buffers the walk made") {
  PoolOn on;
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3}, Shape{3}, DType::f64);
  x.requires_grad_();
  // u reaches v by three paths; add's backward hands its incoming gradient to both inputs as is.
  const Tensor u = mul(x, x);
  const Tensor v = add(add(u, u), u);
  const Tensor seed = Tensor::from_vector(std::vector<double>{1, 10, 100}, Shape{3}, DType::f64);
  const auto g = grad({v}, {x, u}, {}, {seed});
  CHECK(seed.to_vector<double>() == std::vector<double>{1, 10, 100});  // never written to
  CHECK(g[1].to_vector<double>() == std::vector<double>{3, 30, 300});
  CHECK(g[0].to_vector<double>() == std::vector<double>{6, 120, 1800});  // 3 seed * 2x

  // backward(): leaf gradients accumulate over calls, with four contributions in one walk.
  Tensor w = Tensor::from_vector(std::vector<double>{1, -1}, Shape{2}, DType::f64);
  w.requires_grad_();
  sum(add(add(w, w), add(w, w))).backward();
  CHECK(w.grad().to_vector<double>() == std::vector<double>{4, 4});
  sum(add(add(w, w), add(w, w))).backward();
  CHECK(w.grad().to_vector<double>() == std::vector<double>{8, 8});

  // create_graph: the sums stay differentiable (no in-place): d/dx of sum(d v/d x) = 6 each.
  GradOptions second;
  second.create_graph = true;
  const Tensor u2 = mul(x, x);  // u's node was released by the first grad()
  const Tensor v2 = add(add(u2, u2), u2);
  const auto gx = grad({sum(v2)}, {x}, second);
  const auto hx = grad({sum(gx[0])}, {x});
  CHECK(hx[0].to_vector<double>() == std::vector<double>{6, 6, 6});
}

// linear starts its output at the broadcast bias and lets the GEMM accumulate into it (beta 1); the
// CPU broadcast copies contiguous blocks. Both checked against sums written out here, for a shared
// bias over rows, a per-task bias (T, 1, out) over rows and tasks, and widths below and above the
// block fast path's minimum of 8.
TEST_CASE("linear with a bias and expand over blocks equal the written-out sums") {
  PoolOn on;  // reused, dirty buffers underneath: a missed element would show old values
  for (int round = 0; round < 2; ++round) {
    { Tensor dirty = Tensor::full(Shape{4096}, 1e6, DType::f64); }
    Generator gen(11);
    for (const std::int64_t out_f : {3, 8, 13}) {
      const std::int64_t T = 3, n = 5, in = 7;
      const Tensor x = Tensor::normal(Shape{T, n, in}, 0.0, 1.0, gen, DType::f64);
      const Tensor w = Tensor::normal(Shape{T, out_f, in}, 0.0, 1.0, gen, DType::f64);
      const Tensor b_task = Tensor::normal(Shape{T, 1, out_f}, 0.0, 1.0, gen, DType::f64);
      const Tensor b_shared = Tensor::normal(Shape{out_f}, 0.0, 1.0, gen, DType::f64);
      const auto xv = x.to_vector<double>(), wv = w.to_vector<double>();
      const auto btv = b_task.to_vector<double>(), bsv = b_shared.to_vector<double>();
      const auto y_task = linear(x, w, b_task).to_vector<double>();
      const auto y_shared = linear(x, w, b_shared).to_vector<double>();
      const auto y_none = linear(x, w, Tensor()).to_vector<double>();
      for (std::int64_t t = 0; t < T; ++t) {
        for (std::int64_t r = 0; r < n; ++r) {
          for (std::int64_t o = 0; o < out_f; ++o) {
            double acc = 0.0;
            for (std::int64_t i = 0; i < in; ++i) acc += xv[(t * n + r) * in + i] * wv[(t * out_f + o) * in + i];
            const std::size_t at = static_cast<std::size_t>((t * n + r) * out_f + o);
            CHECK(y_none[at] == doctest::Approx(acc).epsilon(1e-12));
            CHECK(y_task[at] == doctest::Approx(acc + btv[t * out_f + o]).epsilon(1e-12));
            CHECK(y_shared[at] == doctest::Approx(acc + bsv[o]).epsilon(1e-12));
          }
        }
      }
      // expand: (T, 1, out) over rows, and (out) over tasks and rows.
      const auto e_task = expand(b_task, Shape{T, n, out_f}).to_vector<double>();
      const auto e_shared = expand(b_shared, Shape{T, n, out_f}).to_vector<double>();
      for (std::int64_t t = 0; t < T; ++t) {
        for (std::int64_t r = 0; r < n; ++r) {
          for (std::int64_t o = 0; o < out_f; ++o) {
            const std::size_t at = static_cast<std::size_t>((t * n + r) * out_f + o);
            CHECK(e_task[at] == btv[t * out_f + o]);
            CHECK(e_shared[at] == bsv[o]);
          }
        }
      }
    }
  }
}
