#include "serve/adapted_cache.h"

#include <cstdio>

#include "kernels/error.h"

namespace metatape::serve {

AdaptedCache::AdaptedCache(CacheOptions options, std::function<Clock::time_point()> now)
    : options_(options), now_(std::move(now)) {
  if (options_.max_bytes <= 0 || options_.max_entries <= 0) {
    fail("serve: the adapted-model cache needs max_bytes > 0 and max_entries > 0");
  }
  std::random_device device;
  rng_.seed((static_cast<std::uint64_t>(device()) << 32) ^ device());
}

void AdaptedCache::drop(std::list<Entry>::iterator it) {
  stats_.bytes -= it->adapted->bytes;
  --stats_.entries;
  index_.erase(it->id);
  lru_.erase(it);
}

void AdaptedCache::expire(Clock::time_point now) {
  while (!lru_.empty() && now - lru_.back().last_used >= options_.ttl) {
    drop(std::prev(lru_.end()));
    ++stats_.expired;
  }
}

std::string AdaptedCache::insert(std::shared_ptr<const capi::Adapted> adapted) {
  if (adapted->bytes > options_.max_bytes) {
    fail("serve: the adapted model needs " + std::to_string(adapted->bytes) + " bytes, more than the cache's " +
         std::to_string(options_.max_bytes) + " (raise --cache-mb)");
  }
  const Clock::time_point now = now_();
  std::lock_guard<std::mutex> lock(mutex_);
  expire(now);
  while (!lru_.empty() &&
         (stats_.bytes + adapted->bytes > options_.max_bytes || stats_.entries + 1 > options_.max_entries)) {
    drop(std::prev(lru_.end()));
    ++stats_.evicted;
  }
  std::string id;
  do {
    char text[33];
    std::snprintf(text, sizeof(text), "%016llx%016llx", static_cast<unsigned long long>(rng_()),
                  static_cast<unsigned long long>(rng_()));
    id = text;
  } while (index_.count(id));
  stats_.bytes += adapted->bytes;
  ++stats_.entries;
  ++stats_.inserted;
  lru_.push_front(Entry{id, std::move(adapted), now});
  index_[id] = lru_.begin();
  return id;
}

std::shared_ptr<const capi::Adapted> AdaptedCache::find(const std::string& id) {
  const Clock::time_point now = now_();
  std::lock_guard<std::mutex> lock(mutex_);
  expire(now);
  auto it = index_.find(id);
  if (it == index_.end()) return nullptr;
  it->second->last_used = now;
  lru_.splice(lru_.begin(), lru_, it->second);
  return lru_.front().adapted;
}

CacheStats AdaptedCache::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

}  // namespace metatape::serve
