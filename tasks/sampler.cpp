#include "tasks/sampler.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "autograd/hash.h"
#include "autograd/random.h"
#include "kernels/error.h"

namespace metatape::tasks {

namespace {

constexpr std::uint32_t kCacheVersion = 1;
constexpr char kMagic[8] = {'M', 'T', 'T', 'A', 'S', 'K', '0', '1'};

// The cache key: FNV-1a (autograd/hash.h) over the fields, in order.
struct Fnv {
  std::uint64_t h = fnv1a64_offset;
  void bytes(const void* p, std::size_t n) { h = fnv1a64(p, n, h); }
  template <class T>
  void pod(const T& v) {
    bytes(&v, sizeof v);
  }
  void str(const std::string& s) {
    pod(s.size());
    bytes(s.data(), s.size());
  }
};

// Little serialisation helpers for the cache payload.
struct Writer {
  std::string out;
  template <class T>
  void pod(const T& v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void str(const std::string& s) {
    pod(static_cast<std::uint32_t>(s.size()));
    out += s;
  }
  void tensor(const Tensor& t) {
    const Tensor c = t.to(Device::cpu);
    pod(static_cast<std::uint8_t>(c.dtype()));
    pod(static_cast<std::uint8_t>(c.rank()));
    for (int i = 0; i < c.rank(); ++i) pod(c.shape()[i]);
    const std::size_t bytes = static_cast<std::size_t>(c.numel()) * (c.dtype() == DType::f32 ? 4 : 8);
    out.append(static_cast<const char*>(c.raw_data()), bytes);
  }
};

struct Reader {
  const std::string& in;
  std::size_t pos = 0;
  bool ok = true;
  template <class T>
  T pod() {
    T v{};
    if (!ok || pos + sizeof v > in.size()) {
      ok = false;
      return v;
    }
    std::memcpy(&v, in.data() + pos, sizeof v);
    pos += sizeof v;
    return v;
  }
  std::string str() {
    const auto n = pod<std::uint32_t>();
    if (!ok || pos + n > in.size()) {
      ok = false;
      return {};
    }
    std::string s = in.substr(pos, n);
    pos += n;
    return s;
  }
  Tensor tensor() {
    const auto dtype = pod<std::uint8_t>();
    const auto rank = pod<std::uint8_t>();
    if (!ok || dtype > 2 || rank > 4) {
      ok = false;
      return {};
    }
    Shape shape = Shape::of_rank(rank);
    for (int i = 0; i < rank; ++i) {
      shape[i] = pod<std::int64_t>();
      if (shape[i] < 0 || shape[i] > (1LL << 32)) ok = false;
    }
    if (!ok) return {};
    const auto dt = static_cast<DType>(dtype);
    const std::size_t bytes = static_cast<std::size_t>(shape.numel()) * (dt == DType::f32 ? 4 : 8);
    if (pos + bytes > in.size()) {
      ok = false;
      return {};
    }
    Tensor t = Tensor::empty(shape, dt);
    std::memcpy(t.raw_data(), in.data() + pos, bytes);
    pos += bytes;
    return t;
  }
};

std::string serialise(const Task& t) {
  Writer w;
  w.tensor(t.support_x);
  w.tensor(t.support_y);
  w.tensor(t.query_x);
  w.tensor(t.query_y);
  w.pod(static_cast<std::int32_t>(t.kind));
  w.pod(t.num_classes);
  w.str(t.family);
  w.pod(static_cast<std::uint32_t>(t.symbols.size()));
  for (const std::string& s : t.symbols) w.str(s);
  w.pod(t.support_begin_ms);
  w.pod(t.support_end_ms);
  w.pod(t.query_begin_ms);
  w.pod(t.query_end_ms);
  w.pod(t.difficulty);
  w.pod(t.quality);
  return w.out;
}

bool deserialise(const std::string& payload, Task& t) {
  Reader r{payload};
  Task out;
  out.support_x = r.tensor();
  out.support_y = r.tensor();
  out.query_x = r.tensor();
  out.query_y = r.tensor();
  const auto kind = r.pod<std::int32_t>();
  if (kind < 0 || kind > 2) return false;
  out.kind = static_cast<TaskKind>(kind);
  out.num_classes = r.pod<std::int64_t>();
  out.family = r.str();
  const auto n = r.pod<std::uint32_t>();
  if (!r.ok || n > 1024) return false;
  for (std::uint32_t i = 0; i < n && r.ok; ++i) out.symbols.push_back(r.str());
  out.support_begin_ms = r.pod<std::int64_t>();
  out.support_end_ms = r.pod<std::int64_t>();
  out.query_begin_ms = r.pod<std::int64_t>();
  out.query_end_ms = r.pod<std::int64_t>();
  out.difficulty = r.pod<double>();
  out.quality = r.pod<double>();
  if (!r.ok || r.pos != payload.size()) return false;
  t = std::move(out);
  return true;
}

std::uint32_t crc(const std::string& s) {
  return static_cast<std::uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size())));
}

}  // namespace

const char* split_name(Split split) {
  switch (split) {
    case Split::train:
      return "train";
    case Split::validation:
      return "validation";
    case Split::test:
      return "test";
  }
  return "unknown";
}

std::string TaskKey::str() const {
  std::ostringstream s;
  s << "f" << family << "|" << split_name(split) << "|s";
  for (std::size_t i = 0; i < series.size(); ++i) s << (i ? "," : "") << series[i];
  s << "|b" << begin << "|h" << horizon;
  return s.str();
}

TaskDistribution::TaskDistribution(std::shared_ptr<const PreparedMarket> market, DistributionConfig config)
    : market_(std::move(market)), config_(std::move(config)) {
  if (!market_) fail("TaskDistribution: no market given");
  if (config_.families.empty()) fail("TaskDistribution: no families configured (e.g. {\"price_direction\"})");
  if (config_.horizons.empty()) fail("TaskDistribution: no horizons configured (e.g. {4})");
  for (std::int64_t h : config_.horizons)
    if (h < 1) fail("TaskDistribution: horizon " + std::to_string(h) + " must be >= 1 bar");
  if (config_.embargo != 0)
    for (std::int64_t h : config_.horizons)
      if (config_.embargo < h)
        fail("TaskDistribution: embargo " + std::to_string(config_.embargo) + " is shorter than horizon " +
             std::to_string(h) + " (labels would leak across support and query)");
  const SplitConfig& sc = config_.splits;
  if (!(0 < sc.train_end && sc.train_end < sc.validation_end && sc.validation_end < 1))
    fail("TaskDistribution: splits need 0 < train_end < validation_end < 1");
  const Market& m = market_->market;
  for (const std::string& s : config_.symbols)
    if (m.series_of(s).empty()) fail("TaskDistribution: symbol '" + s + "' is not in the market");
  for (const std::string& s : sc.holdout_symbols)
    if (m.series_of(s).empty()) fail("TaskDistribution: hold-out symbol '" + s + "' is not in the market");
  for (int k = 0; k < 3; ++k) split_candidates_[k].resize(config_.families.size());
  for (std::size_t f = 0; f < config_.families.size(); ++f) {
    families_.push_back(make_family(config_.families[f], config_.family));
    for (const std::vector<int>& group : families_.back()->candidates(m)) {
      bool allowed = true, holdout = false;
      for (int s : group) {
        const std::string& sym = m.series[static_cast<std::size_t>(s)].symbol;
        if (!config_.symbols.empty() &&
            std::find(config_.symbols.begin(), config_.symbols.end(), sym) == config_.symbols.end())
          allowed = false;
        if (std::find(sc.holdout_symbols.begin(), sc.holdout_symbols.end(), sym) != sc.holdout_symbols.end())
          holdout = true;
      }
      if (!allowed) continue;
      if (!holdout) {
        split_candidates_[0][f].push_back(group);
        split_candidates_[1][f].push_back(group);
      }
      split_candidates_[2][f].push_back(group);
    }
  }
  Fnv h;
  h.pod(kCacheVersion);
  for (const std::string& f : config_.families) h.str(f);
  for (const std::string& s : config_.symbols) h.str(s);
  h.pod(config_.support_size);
  h.pod(config_.query_size);
  for (std::int64_t x : config_.horizons) h.pod(x);
  h.pod(config_.embargo);
  h.pod(config_.stride);
  h.pod(sc.train_end);
  h.pod(sc.validation_end);
  for (const std::string& s : sc.holdout_symbols) h.str(s);
  const FamilyConfig& fc = config_.family;
  h.pod(fc.direction_threshold);
  h.pod(fc.trailing_vol_window);
  h.pod(fc.regime_trend_threshold);
  h.pod(fc.regime_high_vol_ratio);
  h.pod(fc.arbitrage_margin);
  h.pod(fc.portfolio_assets);
  h.str(fc.rebalance);
  h.pod(fc.risk_var_exceedance);
  h.pod(fc.var_level);
  h.pod(fc.var_window);
  for (const std::string& n : market_->feature_config.names()) h.str(n);
  h.bytes(m.time_ms.data(), m.time_ms.size() * sizeof(std::int64_t));
  for (const Series& s : m.series) {
    h.str(s.label());
    h.pod(s.fee_rate);
    for (const auto* col : {&s.open, &s.high, &s.low, &s.close, &s.volume})
      h.bytes(col->data(), col->size() * sizeof(double));
    h.bytes(s.filled.data(), s.filled.size());
  }
  std::ostringstream hex;
  hex << std::hex << h.h;
  fingerprint_ = hex.str();
}

std::pair<std::int64_t, std::int64_t> TaskDistribution::split_rows(Split split) const {
  const std::int64_t w = market_->warmup, R = market_->market.rows();
  const double n = static_cast<double>(std::max<std::int64_t>(0, R - w));
  const std::int64_t a = w + static_cast<std::int64_t>(config_.splits.train_end * n);
  const std::int64_t b = w + static_cast<std::int64_t>(config_.splits.validation_end * n);
  switch (split) {
    case Split::train:
      return {w, a};
    case Split::validation:
      return {a, b};
    case Split::test:
      return {b, R};
  }
  return {0, 0};
}

TaskKey TaskDistribution::draw(Split split, Generator& gen) const {
  const auto& cands = split_candidates_[static_cast<int>(split)];
  std::vector<int> usable;
  for (std::size_t f = 0; f < cands.size(); ++f)
    if (!cands[f].empty()) usable.push_back(static_cast<int>(f));
  if (usable.empty())
    fail(std::string("TaskDistribution: no series fit any configured family in the ") + split_name(split) +
         " split (arbitrage needs >= 2 exchanges per symbol, triangular_arbitrage three pairs X/Q, X/B, B/Q on "
         "one exchange; hold-out symbols appear only in test)");
  TaskKey key;
  key.split = split;
  key.family = usable[gen.below(usable.size())];
  key.horizon = config_.horizons[gen.below(config_.horizons.size())];
  const auto& groups = cands[static_cast<std::size_t>(key.family)];
  key.series = groups[gen.below(groups.size())];
  const TaskFamily& fam = *families_[static_cast<std::size_t>(key.family)];
  TaskRequest q;
  q.series = key.series;
  q.support_size = config_.support_size;
  q.query_size = config_.query_size;
  q.horizon = key.horizon;
  q.embargo = config_.embargo;
  q.stride = config_.stride;
  q = fam.normalise(*market_, q);
  const auto [lo_split, hi_split] = split_rows(split);
  const std::int64_t lo = std::max(lo_split, fam.min_begin(*market_));
  const std::int64_t hi = hi_split - q.span();
  if (hi < lo)
    fail(std::string("TaskDistribution: the ") + split_name(split) + " split has rows [" + std::to_string(lo_split) +
         ", " + std::to_string(hi_split) + ") but a " + fam.name() + " task needs " + std::to_string(q.span()) +
         " rows from row " + std::to_string(fam.min_begin(*market_)) +
         " (use more data, fewer shots, a shorter horizon or wider splits)");
  key.begin = lo + static_cast<std::int64_t>(gen.below(static_cast<std::uint64_t>(hi - lo + 1)));
  return key;
}

Task TaskDistribution::build(const TaskKey& key) const {
  if (key.family < 0 || key.family >= static_cast<int>(families_.size()))
    fail("TaskDistribution::build: family index " + std::to_string(key.family) + " out of range");
  TaskRequest q;
  q.series = key.series;
  q.begin = key.begin;
  q.support_size = config_.support_size;
  q.query_size = config_.query_size;
  q.horizon = key.horizon;
  q.embargo = config_.embargo;
  q.stride = config_.stride;
  return families_[static_cast<std::size_t>(key.family)]->make_task(*market_, q);
}

TaskBatch TaskDistribution::sample_batch(Split split, std::int64_t n, Generator& gen) const {
  TaskBatch out;
  out.reserve(static_cast<std::size_t>(std::max<std::int64_t>(n, 0)));
  for (std::int64_t i = 0; i < n; ++i) out.push_back(sample_task(split, gen));
  return out;
}

std::int64_t TaskDistribution::feature_dim(const std::string& family) const {
  for (std::size_t f = 0; f < config_.families.size(); ++f)
    if (config_.families[f] == family) return families_[f]->feature_dim(*market_);
  return make_family(family, config_.family)->feature_dim(*market_);
}

std::int64_t TaskDistribution::feature_dim() const {
  const std::int64_t d = families_.front()->feature_dim(*market_);
  for (std::size_t f = 1; f < families_.size(); ++f)
    if (families_[f]->feature_dim(*market_) != d)
      fail("TaskDistribution: families " + config_.families.front() + " (" + std::to_string(d) + " features) and " +
           config_.families[f] + " (" + std::to_string(families_[f]->feature_dim(*market_)) +
           " features) differ; use feature_dim(family) or one family per distribution");
  return d;
}

void write_task_file(const std::string& path, const std::string& fingerprint, const std::string& key_text,
                     const Task& task) {
  Writer w;
  w.out.append(kMagic, sizeof kMagic);
  w.pod(kCacheVersion);
  w.str(fingerprint);
  w.str(key_text);
  const std::string payload = serialise(task);
  w.pod(static_cast<std::uint64_t>(payload.size()));
  w.out += payload;
  w.pod(crc(w.out));
  std::ostringstream tmp_name;
  tmp_name << path << ".tmp." << std::hash<std::thread::id>{}(std::this_thread::get_id());
  {
    std::ofstream out(tmp_name.str(), std::ios::binary);
    if (!out) fail("task cache: cannot write " + tmp_name.str() + " (check cache_dir is writable)");
    out.write(w.out.data(), static_cast<std::streamsize>(w.out.size()));
    if (!out) fail("task cache: write to " + tmp_name.str() + " failed (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp_name.str(), path, ec);
  if (ec) fail("task cache: cannot rename " + tmp_name.str() + " to " + path + ": " + ec.message());
}

bool read_task_file(const std::string& path, const std::string& fingerprint, const std::string& key_text, Task& task) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < sizeof kMagic + 4 + 4 || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) return false;
  const std::string body = bytes.substr(0, bytes.size() - 4);
  std::uint32_t stored = 0;
  std::memcpy(&stored, bytes.data() + bytes.size() - 4, 4);
  if (crc(body) != stored) return false;
  Reader r{body};
  r.pos = sizeof kMagic;
  if (r.pod<std::uint32_t>() != kCacheVersion) return false;
  if (r.str() != fingerprint || !r.ok) return false;
  if (r.str() != key_text || !r.ok) return false;
  const auto n = r.pod<std::uint64_t>();
  if (!r.ok || r.pos + n != body.size()) return false;
  return deserialise(body.substr(r.pos), task);
}

Sampler::Sampler(std::shared_ptr<const TaskDistribution> distribution, SamplerConfig config)
    : dist_(std::move(distribution)), config_(std::move(config)) {
  start_workers();
}

Sampler::Sampler(std::shared_ptr<const TaskDistribution> distribution, SamplerConfig config, const Generator& keys)
    : dist_(std::move(distribution)), config_(std::move(config)), sequential_(true), key_gen_(keys) {
  consumed_state_ = key_gen_.state();
  start_workers();
}

void Sampler::start_workers() {
  if (!dist_) fail("Sampler: no distribution given");
  if (config_.workers < 0)
    fail("Sampler: workers is " + std::to_string(config_.workers) + "; use 0 (build on the calling thread) or more");
  if (config_.prefetch < 0)
    fail("Sampler: prefetch is " + std::to_string(config_.prefetch) + "; use 0 (no read-ahead) or more");
  if (config_.difficulty_bins < 1) fail("Sampler: difficulty_bins must be >= 1");
  if (const SamplerConfig::BatchShare& s = config_.share; s.batch > 0) {
    if (s.begin < 0 || s.end < s.begin || s.end > s.batch) {
      fail("Sampler: share [" + std::to_string(s.begin) + ", " + std::to_string(s.end) + ") of batches of " +
           std::to_string(s.batch) + " is outside the batch");
    }
    if (config_.min_quality > 0.0 || config_.balance_difficulty) {
      fail("Sampler: a share of each batch cannot be built with min_quality or balance_difficulty set (they "
           "decide which tasks are used by building them); build whole batches");
    }
  }
  if (!config_.cache_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(config_.cache_dir, ec);
    if (ec) fail("Sampler: cannot create cache_dir " + config_.cache_dir + ": " + ec.message());
  }
  bins_.resize(static_cast<std::size_t>(config_.difficulty_bins));
  for (int w = 0; w < config_.workers; ++w) threads_.emplace_back([this] { worker_loop(); });
}

Sampler::~Sampler() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

TaskKey Sampler::key_at(std::uint64_t index) const {
  if (sequential_) fail("Sampler::key_at: this sampler draws its keys from a generator, in order; use next()");
  Generator gen(splitmix64(config_.seed ^ splitmix64(index + 1) ^ (static_cast<std::uint64_t>(config_.split) << 56)));
  return dist_->draw(config_.split, gen);
}

std::string Sampler::cache_path(const TaskKey& key) const {
  Fnv h;
  h.str(dist_->fingerprint());
  h.str(key.str());
  std::ostringstream name;
  name << config_.cache_dir << "/task-v" << kCacheVersion << "-" << std::hex << h.h << ".bin";
  return name.str();
}

Task Sampler::load_or_build(const TaskKey& key) {
  const std::string text = key.str();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = lru_index_.find(text);
    if (it != lru_index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      stats_.memory_hits++;
      // A deep copy: callers may change tensor state (requires_grad, in-place updates).
      Task copy = it->second->second;
      for (Tensor* t : {&copy.support_x, &copy.support_y, &copy.query_x, &copy.query_y}) *t = t->copy();
      return copy;
    }
  }
  Task task;
  bool from_disk = false, rebuilt = false;
  std::string path;
  if (!config_.cache_dir.empty()) {
    path = cache_path(key);
    from_disk = read_task_file(path, dist_->fingerprint(), text, task);
    rebuilt = !from_disk && std::filesystem::exists(path);
  }
  if (!from_disk) {
    task = dist_->build(key);
    if (!path.empty()) write_task_file(path, dist_->fingerprint(), text, task);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (from_disk)
    stats_.disk_hits++;
  else
    stats_.built++;
  if (rebuilt) stats_.disk_rebuilt++;
  if (config_.lru_capacity > 0 && lru_index_.find(text) == lru_index_.end()) {
    Task kept = task;
    for (Tensor* t : {&kept.support_x, &kept.support_y, &kept.query_x, &kept.query_y}) *t = t->copy();
    lru_.emplace_front(text, std::move(kept));
    lru_index_[text] = lru_.begin();
    while (lru_.size() > config_.lru_capacity) {
      lru_index_.erase(lru_.back().first);
      lru_.pop_back();
    }
  }
  return task;
}

Generator Sampler::consumed_keys() const {
  if (!sequential_) fail("Sampler::consumed_keys: this sampler derives its keys from a seed; there is no generator");
  std::lock_guard<std::mutex> lock(mutex_);
  Generator g;
  g.set_state(consumed_state_);
  return g;
}

TaskKey Sampler::draw_next_key_locked() {
  TaskKey key = dist_->draw(config_.split, key_gen_);
  state_after_.emplace(next_to_schedule_, key_gen_.state());
  return key;
}

Task Sampler::produce(std::uint64_t index) {
  if (!sequential_) return make(index, key_at(index));
  TaskKey key;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    key = std::move(drawn_keys_.at(index));
    drawn_keys_.erase(index);
  }
  return make(index, key);
}

Task Sampler::make(std::uint64_t index, const TaskKey& key) {
  const SamplerConfig::BatchShare& s = config_.share;
  if (s.batch > 0) {
    const auto position = static_cast<std::int64_t>(index % static_cast<std::uint64_t>(s.batch));
    if (position < s.begin || position >= s.end) {
      const TaskFamily& family = dist_->family(key.family);
      Task shell;
      shell.kind = family.kind();
      shell.num_classes = family.num_classes();
      shell.family = family.name();
      return shell;
    }
  }
  return load_or_build(key);
}

void Sampler::worker_loop() {
  while (true) {
    std::uint64_t index = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_cv_.wait(lock, [this] {
        return stopping_ ||
               next_to_schedule_ < std::max(demand_, next_to_consume_ + static_cast<std::uint64_t>(config_.prefetch));
      });
      if (stopping_) return;
      index = next_to_schedule_;
      if (sequential_) {
        try {
          drawn_keys_.emplace(index, draw_next_key_locked());
        } catch (const std::exception& e) {
          failed_.emplace(index, e.what());
          ++next_to_schedule_;
          done_cv_.notify_all();
          continue;
        }
      }
      ++next_to_schedule_;
    }
    try {
      Task t = produce(index);
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(index, std::move(t));
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mutex_);
      failed_.emplace(index, e.what());
    }
    done_cv_.notify_all();
  }
}

Task Sampler::next_in_stream() {
  if (threads_.empty()) {
    const std::uint64_t index = next_to_consume_++;
    if (!sequential_) return produce(index);
    TaskKey key;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      next_to_schedule_ = index;
      key = draw_next_key_locked();
      next_to_schedule_ = index + 1;
      consumed_state_ = state_after_.at(index);
      state_after_.erase(index);
    }
    return make(index, key);
  }
  std::unique_lock<std::mutex> lock(mutex_);
  const std::uint64_t index = next_to_consume_;
  if (demand_ <= index) {
    demand_ = index + 1;
    work_cv_.notify_all();
  }
  done_cv_.wait(lock, [&] { return ready_.count(index) > 0 || failed_.count(index) > 0; });
  ++next_to_consume_;
  if (sequential_) {
    if (const auto s = state_after_.find(index); s != state_after_.end()) {
      consumed_state_ = s->second;
      state_after_.erase(s);
    }
  }
  work_cv_.notify_all();
  if (const auto f = failed_.find(index); f != failed_.end()) {
    const std::string what = f->second;
    failed_.erase(f);
    throw Error(what);
  }
  Task t = std::move(ready_.at(index));
  ready_.erase(index);
  return t;
}

Task Sampler::next() {
  const auto bins = static_cast<std::size_t>(config_.difficulty_bins);
  const std::size_t bin_cap = static_cast<std::size_t>(config_.prefetch) * 4 + 64;
  for (int pulled = 0;; ++pulled) {
    if (config_.balance_difficulty) {
      const std::size_t target = emitted_ % bins;
      const int patience = std::min(config_.max_skips, 8 * config_.difficulty_bins);
      if (!bins_[target].empty() || pulled >= patience) {
        // The target bin, else (after max_skips pulls) the nearest non-empty bin.
        for (std::size_t d = 0; d < bins; ++d)
          for (const std::size_t b : {target + d, target + bins - d})
            if (!bins_[b % bins].empty()) {
              Task t = std::move(bins_[b % bins].front());
              bins_[b % bins].pop_front();
              ++emitted_;
              return t;
            }
      }
    }
    if (pulled >= config_.max_skips)
      fail("Sampler: " + std::to_string(pulled) + " consecutive tasks were below min_quality " +
           std::to_string(config_.min_quality) +
           " (lower min_quality or check the data for gaps and one-class periods)");
    Task t = next_in_stream();
    if (t.quality < config_.min_quality) {
      std::lock_guard<std::mutex> lock(mutex_);
      stats_.skipped_quality++;
      continue;
    }
    if (!config_.balance_difficulty) {
      ++emitted_;
      return t;
    }
    const auto b =
        std::min(bins - 1, static_cast<std::size_t>(std::clamp(t.difficulty, 0.0, 1.0) * static_cast<double>(bins)));
    if (bins_[b].size() < bin_cap) bins_[b].push_back(std::move(t));
  }
}

TaskBatch Sampler::next_batch(std::int64_t n) {
  if (!threads_.empty() && n > 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    demand_ = std::max(demand_, next_to_consume_ + static_cast<std::uint64_t>(n));
  }
  work_cv_.notify_all();
  TaskBatch out;
  for (std::int64_t i = 0; i < n; ++i) out.push_back(next());
  return out;
}

SamplerStats& SamplerStats::operator+=(const SamplerStats& other) {
  built += other.built;
  memory_hits += other.memory_hits;
  disk_hits += other.disk_hits;
  disk_rebuilt += other.disk_rebuilt;
  skipped_quality += other.skipped_quality;
  return *this;
}

SamplerStats Sampler::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

}  // namespace metatape::tasks
