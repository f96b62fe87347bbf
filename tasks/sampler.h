// The task distribution and the sampler.
//
// TaskDistribution: families x series groups x periods x horizons. Splits go forward in time: the
// common time axis after the feature warmup is cut at train_end and validation_end (fractions), and
// every row a task touches (features, labels) lies inside its split's range. Symbols listed in
// holdout_symbols appear only in the test split (whole-asset hold-out).
//
// Sampler: the key of stream index i is a pure function of i and where the stream started, so the
// sequence of tasks is the same whatever the number of worker threads and the prefetch depth. Two key
// streams: derived (the default constructor: key i from a generator seeded with (seed, split, i)) and
// sequential (the constructor taking a Generator: key i is the i-th TaskDistribution::draw from that
// generator, exactly what sample_batch would draw from it; keys are drawn in index order under the
// sampler's lock, only the building runs in parallel). Workers build the tasks the consumer is waiting
// for (a whole next_batch at once) plus `prefetch` beyond them; results are consumed in index order. Quality filtering and difficulty balancing are deterministic filters over
// that sequence. Built tasks are kept in an in-memory LRU cache (hits return deep copies of the
// tensors) and, optionally, an on-disk cache
// whose entries carry a format version, the distribution fingerprint, the task key and a CRC-32; an
// entry that fails any check is rebuilt and rewritten, never used.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "autograd/random.h"
#include "tasks/families.h"
#include "tasks/task.h"

namespace metatape::tasks {

enum class Split { train = 0, validation = 1, test = 2 };
const char* split_name(Split split);

struct SplitConfig {
  double train_end = 0.6;                    // fraction of the post-warmup axis
  double validation_end = 0.8;               // test is the rest
  std::vector<std::string> holdout_symbols;  // test split only
};

struct DistributionConfig {
  std::vector<std::string> families = {"price_direction"};
  std::vector<std::string> symbols;  // restrict to these symbols; empty = all
  std::int64_t support_size = 20;
  std::int64_t query_size = 20;
  std::vector<std::int64_t> horizons = {4};
  std::int64_t embargo = 0;  // 0 = horizon
  std::int64_t stride = 1;
  SplitConfig splits;
  FamilyConfig family;
};

// Everything that determines a task.
struct TaskKey {
  int family = 0;  // index into config.families
  Split split = Split::train;
  std::vector<int> series;
  std::int64_t begin = 0;
  std::int64_t horizon = 0;
  std::string str() const;  // stable text form, used as cache key
};

class TaskDistribution {
 public:
  TaskDistribution(std::shared_ptr<const PreparedMarket> market, DistributionConfig config);

  TaskKey draw(Split split, Generator& gen) const;
  Task build(const TaskKey& key) const;
  Task sample_task(Split split, Generator& gen) const { return build(draw(split, gen)); }
  TaskBatch sample_batch(Split split, std::int64_t n, Generator& gen) const;

  // Row range [begin, end) of a split on the common axis.
  std::pair<std::int64_t, std::int64_t> split_rows(Split split) const;
  std::int64_t feature_dim(const std::string& family) const;
  // Throws unless all configured families share one feature dimension.
  std::int64_t feature_dim() const;
  // Hash (hex) of the configuration, the feature set and the market data; versions cache entries.
  const std::string& fingerprint() const { return fingerprint_; }
  const DistributionConfig& config() const { return config_; }
  const PreparedMarket& market() const { return *market_; }
  const TaskFamily& family(int index) const { return *families_[static_cast<std::size_t>(index)]; }

 private:
  std::shared_ptr<const PreparedMarket> market_;
  DistributionConfig config_;
  std::vector<std::unique_ptr<TaskFamily>> families_;
  // [split][family] -> series groups allowed in that split (hold-out symbols only in test)
  std::vector<std::vector<std::vector<int>>> split_candidates_[3];
  std::string fingerprint_;
};

struct SamplerConfig {
  std::uint64_t seed = 1;
  Split split = Split::train;
  int workers = 2;    // 0 = build on the calling thread
  int prefetch = 16;  // tasks built ahead of those the consumer waits for (workers > 0 only)
  std::size_t lru_capacity = 256;
  std::string cache_dir;            // empty = no disk cache
  double min_quality = 0.0;         // tasks below are skipped
  bool balance_difficulty = false;  // cycle through difficulty_bins equal-width bins of [0, 1]
  int difficulty_bins = 4;
  int max_skips = 1000;  // consecutive skipped tasks before giving up with an error
  // Data parallelism (dist/communicator.h): when batch > 0, the stream is consumed in batches of
  // `batch` tasks and only positions [begin, end) of each batch (this process's share) are built; the
  // others are shells: kind, num_classes and family set, tensors undefined, never cached or counted.
  // Keys are drawn for every position, so the stream and consumed_keys() are those of a sampler
  // without a share. Needs min_quality 0 and no difficulty balancing (they judge built tasks).
  struct BatchShare {
    std::int64_t batch = 0, begin = 0, end = 0;
  } share;
};

struct SamplerStats {
  std::int64_t built = 0, memory_hits = 0, disk_hits = 0, disk_rebuilt = 0, skipped_quality = 0;
  SamplerStats& operator+=(const SamplerStats& other);
};

class Sampler {
 public:
  // Derived key stream (config.seed, config.split).
  Sampler(std::shared_ptr<const TaskDistribution> distribution, SamplerConfig config);
  // Sequential key stream: the draws of `keys` (config.seed is unused; config.split is the split).
  Sampler(std::shared_ptr<const TaskDistribution> distribution, SamplerConfig config, const Generator& keys);
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  Task next();
  TaskBatch next_batch(std::int64_t n);
  SamplerStats stats() const;

  // The key of stream index i (pure function of seed, split and i); derived key stream only.
  TaskKey key_at(std::uint64_t index) const;
  // Sequential key stream only: the key generator after the draws of every task taken from the stream
  // so far (handed out, skipped by the quality filter or held back by difficulty balancing), whatever
  // has been drawn ahead for prefetching. After next_batch(n) with no filtering this is the state
  // sample_batch(split, n, gen) leaves in gen, so a caller can store it (checkpoints) and resume.
  Generator consumed_keys() const;
  // The disk-cache file of a key (under config.cache_dir).
  std::string cache_path(const TaskKey& key) const;

 private:
  void start_workers();
  // Draws the key of next_to_schedule_ (sequential stream; caller holds mutex_).
  TaskKey draw_next_key_locked();
  Task produce(std::uint64_t index);
  Task load_or_build(const TaskKey& key);
  // load_or_build, or a shell when stream index `index` is outside config_.share.
  Task make(std::uint64_t index, const TaskKey& key);
  Task next_in_stream();
  void worker_loop();

  std::shared_ptr<const TaskDistribution> dist_;
  SamplerConfig config_;

  mutable std::mutex mutex_;
  std::condition_variable work_cv_, done_cv_;
  std::uint64_t next_to_schedule_ = 0, next_to_consume_ = 0;
  std::uint64_t demand_ = 0;  // indices below are awaited by the consumer (a batch, a skipped task)
  // Sequential key stream: the generator at next_to_schedule_, the keys drawn but not yet built (index
  // -> key) and the generator state after each drawn index not yet consumed.
  bool sequential_ = false;
  Generator key_gen_;
  std::map<std::uint64_t, TaskKey> drawn_keys_;
  std::map<std::uint64_t, Generator::State> state_after_;
  Generator::State consumed_state_{};
  std::map<std::uint64_t, Task> ready_;
  std::map<std::uint64_t, std::string> failed_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;

  std::list<std::pair<std::string, Task>> lru_;
  std::unordered_map<std::string, std::list<std::pair<std::string, Task>>::iterator> lru_index_;
  SamplerStats stats_;

  std::vector<std::deque<Task>> bins_;
  std::uint64_t emitted_ = 0;
};

// Disk cache entry format, exposed for tests: write_task_file writes an entry for `key_text` under
// `fingerprint`; read_task_file returns false (and leaves `task` alone) when the file is missing,
// truncated, has another version / fingerprint / key, or fails its CRC-32.
void write_task_file(const std::string& path, const std::string& fingerprint, const std::string& key_text,
                     const Task& task);
bool read_task_file(const std::string& path, const std::string& fingerprint, const std::string& key_text, Task& task);

}  // namespace metatape::tasks
