#include "kernels/allocator.h"

#include <array>
#include <atomic>
#include <bit>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "kernels/error.h"
#ifdef METATAPE_WITH_CUDA
#include "kernels/cuda/caching_allocator.h"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define METATAPE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define METATAPE_ASAN 1
#endif
#endif
#ifdef METATAPE_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace metatape::kernels {
namespace {

std::atomic<std::size_t> host_in_use{0};
std::atomic<std::size_t> host_peak{0};
std::atomic<std::size_t> host_cached{0};

std::size_t rounded_host_bytes(std::size_t bytes) {
  const std::size_t rounded = (bytes + cpu_alignment - 1) / cpu_alignment * cpu_alignment;
  return rounded == 0 ? cpu_alignment : rounded;
}

void raise_host_peak(std::size_t now) {
  std::size_t peak = host_peak.load(std::memory_order_relaxed);
  while (now > peak && !host_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {}
}

// ---- size classes ---------------------------------------------------------------------------------
// Multiples of 64 up to 256 bytes (classes 0..3), then four classes per power of two: a size in
// (2^p, 2^(p+1)] rounds up to a multiple of 2^(p-2).
constexpr int class_count = 4 + 4 * (std::bit_width(host_pool_max_block - 1) - 1 - 8 + 1);

struct SizeClass {
  int index;
  std::size_t bytes;
};

SizeClass size_class(std::size_t rounded) {  // rounded: a multiple of 64, 64 .. host_pool_max_block
  if (rounded <= 256) return {static_cast<int>(rounded / 64) - 1, rounded};
  const int p = std::bit_width(rounded - 1) - 1;  // 2^p < rounded <= 2^(p+1), p >= 8
  const std::size_t step = std::size_t{1} << (p - 2);
  const std::size_t bytes = (rounded + step - 1) / step * step;
  return {4 + 4 * (p - 8) + static_cast<int>(bytes / step) - 5, bytes};
}

void poison(void* ptr, std::size_t bytes) {
#ifdef METATAPE_ASAN
  ASAN_POISON_MEMORY_REGION(ptr, bytes);
#else
  (void)ptr;
  (void)bytes;
#endif
}

void unpoison(void* ptr, std::size_t bytes) {
#ifdef METATAPE_ASAN
  ASAN_UNPOISON_MEMORY_REGION(ptr, bytes);
#else
  (void)ptr;
  (void)bytes;
#endif
}

void* system_allocate(std::size_t bytes, std::size_t requested) {
  void* ptr = std::aligned_alloc(cpu_alignment, bytes);
  if (ptr == nullptr) {
    fail("allocate: out of host memory allocating " + std::to_string(requested) + " bytes");
  }
  return ptr;
}

}  // namespace

std::size_t parse_host_pool_bytes(const char* text) {
  const std::string s(text);
  std::size_t pos = 0;
  unsigned long long value = 0;
  bool ok = !s.empty() && s[0] >= '0' && s[0] <= '9';
  if (ok) {
    try {
      value = std::stoull(s, &pos, 10);
    } catch (const std::exception&) {
      ok = false;
    }
  }
  if (ok && pos < s.size()) {
    const char unit = s[pos];
    const int shift = unit == 'K' || unit == 'k' ? 10 : unit == 'M' || unit == 'm' ? 20 : unit == 'G' || unit == 'g' ? 30 : -1;
    ok = shift > 0 && pos + 1 == s.size() && value <= (~0ULL >> shift);
    if (ok) value <<= shift;
  }
  if (!ok) {
    fail("allocate: METATAPE_HOST_POOL_BYTES='" + s +
         "' is not a byte count; set it to a non-negative integer, optionally with K, M or G "
         "(e.g. 256M; 0 disables the host buffer pool), or unset it for the default of 64M");
  }
  return static_cast<std::size_t>(value);
}

namespace {

std::size_t compute_default_limit() {
  if (const char* env = std::getenv("METATAPE_HOST_POOL_BYTES"); env != nullptr) return parse_host_pool_bytes(env);
#ifdef METATAPE_ASAN
  return 0;
#else
  return std::size_t{64} << 20;
#endif
}

// ---- the per-thread pool --------------------------------------------------------------------------
struct ThreadPool;
thread_local bool pool_gone = false;  // trivially destructible: still readable during thread exit

struct ThreadPool {
  std::array<std::vector<void*>, class_count> free;
  std::size_t limit = initial_limit();
  std::size_t cached_bytes = 0;
  HostPoolStats counts;

  ~ThreadPool() {
    trim();
    pool_gone = true;
  }

  void trim() {
    for (int c = 0; c < class_count; ++c) {
      auto& list = free[static_cast<std::size_t>(c)];
      if (list.empty()) continue;
      const std::size_t bytes = class_bytes_of(c);
      for (void* ptr : list) {
        unpoison(ptr, bytes);
        std::free(ptr);
      }
      host_cached.fetch_sub(bytes * list.size(), std::memory_order_relaxed);
      list.clear();
    }
    cached_bytes = 0;
  }

  // allocate() reports a malformed METATAPE_HOST_POOL_BYTES; a pool first made by a free (which must
  // not throw) starts disabled instead.
  static std::size_t initial_limit() noexcept {
    try {
      return default_host_pool_limit();
    } catch (...) {
      return 0;
    }
  }

  static std::size_t class_bytes_of(int index) {
    if (index < 4) return static_cast<std::size_t>(index + 1) * 64;
    const int p = 8 + (index - 4) / 4;
    return static_cast<std::size_t>((index - 4) % 4 + 5) << (p - 2);
  }
};

// The calling thread's pool, or null once it has been destroyed (storage freed by other
// thread_local or static destructors after that goes straight to the system).
ThreadPool* thread_pool() {
  if (pool_gone) return nullptr;
  thread_local ThreadPool pool;
  return &pool;
}

}  // namespace

std::size_t default_host_pool_limit() {
  static const std::size_t limit = compute_default_limit();
  return limit;
}

void* allocate(std::size_t bytes, Device device) {
  if (device == Device::cuda) {
#ifdef METATAPE_WITH_CUDA
    return cuda::CachingAllocator::instance().allocate(bytes);
#else
    fail(
        "allocate: CUDA memory requested but this build has no CUDA backend "
        "(configure with -DMETATAPE_CUDA=ON)");
#endif
  }
  (void)default_host_pool_limit();  // throws on a malformed METATAPE_HOST_POOL_BYTES
  const std::size_t rounded = rounded_host_bytes(bytes);
  void* ptr = nullptr;
  if (rounded > host_pool_max_block) {
    ptr = system_allocate(rounded, bytes);
    if (ThreadPool* pool = thread_pool()) ++pool->counts.fresh;
  } else {
    // Every poolable block has its class size, whether or not the pool is on now, so any free may
    // cache it and any later request of the class may take it.
    const SizeClass cls = size_class(rounded);
    ThreadPool* pool = thread_pool();
    auto* list = pool ? &pool->free[static_cast<std::size_t>(cls.index)] : nullptr;
    if (list && !list->empty()) {
      ptr = list->back();
      list->pop_back();
      pool->cached_bytes -= cls.bytes;
      host_cached.fetch_sub(cls.bytes, std::memory_order_relaxed);
      ++pool->counts.reused;
      unpoison(ptr, cls.bytes);
    } else {
      ptr = system_allocate(cls.bytes, bytes);
      if (pool) ++pool->counts.fresh;
    }
    // The slack past the aligned size asked for (ASan only): an overrun into it is reported.
    poison(static_cast<char*>(ptr) + rounded, cls.bytes - rounded);
  }
  raise_host_peak(host_in_use.fetch_add(rounded, std::memory_order_relaxed) + rounded);
  return ptr;
}

void deallocate(void* ptr, std::size_t bytes, Device device) {
  if (device == Device::cuda) {
#ifdef METATAPE_WITH_CUDA
    cuda::CachingAllocator::instance().deallocate(ptr);
#endif
    return;
  }
  if (ptr == nullptr) return;
  const std::size_t rounded = rounded_host_bytes(bytes);
  host_in_use.fetch_sub(rounded, std::memory_order_relaxed);
  ThreadPool* pool = thread_pool();
  if (rounded <= host_pool_max_block) {
    const SizeClass cls = size_class(rounded);
    unpoison(ptr, cls.bytes);
    if (pool && pool->cached_bytes + cls.bytes <= pool->limit) {
      auto& list = pool->free[static_cast<std::size_t>(cls.index)];
      bool kept = false;
      try {
        list.push_back(ptr);
        kept = true;
      } catch (const std::bad_alloc&) {  // no room for the free-list entry: give the block back
      }
      if (kept) {
        pool->cached_bytes += cls.bytes;
        host_cached.fetch_add(cls.bytes, std::memory_order_relaxed);
        ++pool->counts.cached;
        poison(ptr, cls.bytes);
        return;
      }
    }
  }
  std::free(ptr);
  if (pool) ++pool->counts.released;
}

HostMemoryStats host_memory_stats() {
  return {host_in_use.load(std::memory_order_relaxed), host_peak.load(std::memory_order_relaxed),
          host_cached.load(std::memory_order_relaxed)};
}

void reset_host_peak() { host_peak.store(host_in_use.load(std::memory_order_relaxed), std::memory_order_relaxed); }

HostPoolStats host_pool_stats() {
  ThreadPool* pool = thread_pool();
  if (!pool) return {};
  HostPoolStats s = pool->counts;
  s.limit_bytes = pool->limit;
  s.cached_bytes = pool->cached_bytes;
  return s;
}

void reset_host_pool_counters() {
  if (ThreadPool* pool = thread_pool()) pool->counts = {};
}

std::size_t set_host_pool_limit(std::size_t bytes) {
  ThreadPool* pool = thread_pool();
  if (!pool) return 0;
  const std::size_t previous = pool->limit;
  pool->limit = bytes;
  if (pool->cached_bytes > bytes) pool->trim();
  return previous;
}

void trim_host_pool() {
  if (ThreadPool* pool = thread_pool()) pool->trim();
}

}  // namespace metatape::kernels
