// The adapted models the server holds: an LRU keyed by random 128-bit ids, bounded by total bytes and
// entry count, with a time-to-live since last use. Thread-safe (one mutex; every operation is O(1)
// amortised apart from evicting expired entries, which scans from the least recently used end).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>

#include "capi/inference_model.h"

namespace metatape::serve {

struct CacheOptions {
  std::int64_t max_bytes = 64 << 20;  // sum of Adapted::bytes held
  std::int64_t max_entries = 100000;
  std::chrono::milliseconds ttl{std::chrono::minutes(5)};  // since last insert or find
};

struct CacheStats {
  std::int64_t entries = 0, bytes = 0;
  std::int64_t inserted = 0, evicted = 0, expired = 0;
};

class AdaptedCache {
 public:
  using Clock = std::chrono::steady_clock;
  // `now` is injectable for tests.
  explicit AdaptedCache(CacheOptions options, std::function<Clock::time_point()> now = Clock::now);

  // Stores the model, evicting expired entries, then least recently used ones until it fits.
  // Throws Error when the model alone is larger than max_bytes.
  std::string insert(std::shared_ptr<const capi::Adapted> adapted);
  // The model, marked as just used; null when the id is unknown or expired.
  std::shared_ptr<const capi::Adapted> find(const std::string& id);
  CacheStats stats() const;
  const CacheOptions& options() const { return options_; }

 private:
  struct Entry {
    std::string id;
    std::shared_ptr<const capi::Adapted> adapted;
    Clock::time_point last_used;
  };
  void drop(std::list<Entry>::iterator it);
  void expire(Clock::time_point now);

  CacheOptions options_;
  std::function<Clock::time_point()> now_;
  mutable std::mutex mutex_;
  std::list<Entry> lru_;  // front: most recently used
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  std::mt19937_64 rng_;
  CacheStats stats_;
};

}  // namespace metatape::serve
