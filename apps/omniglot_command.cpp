// `metatape omniglot`: the few-shot image benchmark (W3 of BENCHMARKS.md) on the Omniglot subset in
// ../shared/data/omniglot (tasks/omniglot.h). Meta-trains the chosen learners on a Conv-4 backbone
// (nn/conv4.h) over the meta-training characters of the two "small" background sets (each character
// at 0/90/180/270 degrees a class), then evaluates on held-out characters and on the 20 official
// one-shot runs:
//   (a) N-way K-shot accuracy for every --ways x --shots, over --eval-episodes episodes drawn once
//       from the meta-test characters (the same episodes for every learner and the controls), mean
//       and 95% CI (t interval over episodes);
//   (b) the 20 within-alphabet 20-way one-shot runs of Lake et al. (2015): error rate over their 400
//       test images, with the published numbers beside it.
// Gradient learners (MAML, FOMAML, Meta-SGD, ANIL, Reptile) have an N-way head, so one model is
// trained per N in --ways (with the MAML paper's inner loop for that N unless overridden: 5-way 1 step
// of lr 0.4, evaluated with 3 steps; 20-way 5 steps of lr 0.1). Metric learners (ProtoNets, Matching
// Nets) are trained once, with --metric-train-ways classes per episode, and evaluated at every N.
// Controls, on the same episodes: each learner's network before meta-training, and "pixels" (the
// nearest class mean in pixel space, which is 1-NN at one shot), the baseline a learner must beat.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "apps/commands.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "eval/run_config.h"
#include "eval/statistics.h"
#include "kernels/allocator.h"
#include "kernels/error.h"
#include "meta/learners.h"
#include "meta/registry.h"
#include "nn/conv4.h"
#include "nn/optimizer.h"
#include "tasks/omniglot.h"

namespace metatape::apps {
namespace {

struct OmniglotConfig {
  std::string data = "../shared/data/omniglot";
  std::vector<std::string> learners{"maml", "fomaml", "protonet"};
  std::int64_t iterations = 60000;  // per trained model (the MAML paper: 60000)
  double seconds = 0.0;             // > 0: wall-clock budget per trained model
  std::int64_t meta_batch = 32;     // the MAML paper: 32 (5-way), 16 (20-way)
  std::vector<std::int64_t> ways{5, 20};
  std::vector<std::int64_t> shots{1, 5};
  std::int64_t train_shots = 1;
  std::int64_t train_queries = 15;
  std::int64_t metric_train_ways = 20;  // ProtoNets' paper: 60 (needs a larger background set)
  int inner_steps = 0;                  // 0: by N (the MAML paper): 1 for N <= 5, else 5
  double inner_lr = 0.0;                // 0: by N: 0.4 for N <= 5, else 0.1
  int eval_steps = 0;                   // 0: by N: 3 for N <= 5, else 5
  std::int64_t eval_episodes = 600;
  std::int64_t eval_queries = 15;
  std::int64_t channels = 64;
  std::string downsample;  // "" : stride for gradient learners (MAML's Omniglot net), max_pool for metric ones
  double outer_lr = 1e-3;
  std::uint64_t seed = 1;
  std::int64_t log_every = 100;
  int threads = 0;  // evaluation threads; 0: std::thread::hardware_concurrency()
  bool one_shot_runs = true;
  std::string json_path, markdown_path;
};

// A Conv-4 meta-step frees and allocates hundreds of MB of activations each step, above the host
// pool's default cache of 64 MiB per thread (kernels/allocator.h), so each step would go back to
// malloc and page faults. Unless METATAPE_HOST_POOL_BYTES is set, the threads of this command cache
// up to 2 GiB: a ProtoNet 20-way meta-step took 0.80 s with the default and 0.55 s with this.
void raise_pool_limit() {
  if (std::getenv("METATAPE_HOST_POOL_BYTES") == nullptr) kernels::set_host_pool_limit(std::size_t{2} << 30);
}

int steps_for(const OmniglotConfig& c, std::int64_t ways) { return c.inner_steps > 0 ? c.inner_steps : ways <= 5 ? 1 : 5; }
double lr_for(const OmniglotConfig& c, std::int64_t ways) { return c.inner_lr > 0 ? c.inner_lr : ways <= 5 ? 0.4 : 0.1; }
int eval_steps_for(const OmniglotConfig& c, std::int64_t ways) { return c.eval_steps > 0 ? c.eval_steps : ways <= 5 ? 3 : 5; }

// Per-episode accuracies of one method on one evaluation cell, and what they summarise to.
struct CellResult {
  std::vector<double> accuracies;
  eval::Summary summary;
};

struct Row {
  std::string method;  // "maml", "maml (before training)", "pixels", ...
  std::map<std::string, CellResult> cells;  // "5-way 1-shot" -> result
  std::vector<double> one_shot_run_accuracy;  // per official run, when evaluated
  std::string note;
};

std::string cell_name(std::int64_t ways, std::int64_t shots) {
  return std::to_string(ways) + "-way " + std::to_string(shots) + "-shot";
}

// "pixels": each query is given the class whose mean support image is nearest (squared Euclidean).
double pixel_accuracy(const tasks::Task& t) {
  NoGradGuard off;
  const Tensor onehot = one_hot(t.support_y, t.num_classes);  // (rows, classes)
  const Tensor protos = div(gemm(onehot, true, t.support_x, false), transpose(reshape(sum(onehot, 0), Shape{1, t.num_classes})));
  return meta::accuracy(neg(pairwise_sqdist(t.query_x, protos)), t.query_y);
}

double learner_accuracy(meta::Learner& learner, const tasks::Task& t, int steps) {
  const auto e = learner.evaluate(t, {steps});
  if (!e.front().accuracy || !std::isfinite(e.front().loss)) {
    fail("omniglot: " + learner.name() + " produced a non-finite query loss on an evaluation episode (diverged); "
         "lower --inner-lr or --outer-lr");
  }
  return *e.front().accuracy;
}

struct Benchmark {
  const OmniglotConfig& c;
  tasks::OmniglotDataset data;
  tasks::OmniglotSplit split;
  std::map<std::string, std::vector<tasks::Task>> episodes;  // cell -> the fixed evaluation episodes
  std::vector<tasks::Task> runs;                             // the official one-shot runs

  explicit Benchmark(const OmniglotConfig& config) : c(config) {
    const std::filesystem::path root(c.data);
    if (!std::filesystem::is_directory(root)) {
      throw eval::DataError("metatape: omniglot: no data folder '" + c.data +
                            "' (point --data at the folder holding images_background_small1/2 and one_shot_runs, "
                            "see ../shared/data/omniglot/SOURCES.md)");
    }
    try {
      data = tasks::load_omniglot({root / "images_background_small1", root / "images_background_small2"});
      tasks::OmniglotSplitOptions so;
      so.seed = c.seed;
      split = tasks::split_omniglot(data, so);
      Generator eval_gen(c.seed * 7919 + 104729);  // independent of the training streams
      for (auto n : c.ways) {
        for (auto k : c.shots) {
          tasks::OmniglotEpisodeOptions eo{n, k, c.eval_queries};
          auto& list = episodes[cell_name(n, k)];
          for (std::int64_t e = 0; e < c.eval_episodes; ++e) {
            list.push_back(tasks::sample_omniglot_episode(data, split.test_classes, eval_gen, eo));
          }
        }
      }
      if (c.one_shot_runs) {
        for (int r = 1; r <= tasks::omniglot_one_shot_runs; ++r) {
          runs.push_back(tasks::load_omniglot_one_shot_run(root / "one_shot_runs", r));
        }
      }
    } catch (const eval::DataError&) {
      throw;
    } catch (const Error& e) {
      throw eval::DataError("metatape: omniglot: " + std::string(e.what()));
    }
  }

  // Evaluates `accuracy(task, ways)` on every cell whose N `fits`, and on the one-shot runs when 20 fits.
  // Episodes are spread over --threads threads (episode i on thread i mod threads); each result lands
  // in its episode's slot, so the numbers do not depend on the thread count.
  template <class Accuracy, class Fits>
  void evaluate(Row& row, Accuracy accuracy, Fits fits) const {
    for (auto n : c.ways) {
      if (!fits(n)) continue;
      for (auto k : c.shots) {
        CellResult r;
        r.accuracies = parallel_accuracy(episodes.at(cell_name(n, k)), n, accuracy);
        r.summary = eval::summarize(r.accuracies);
        row.cells[cell_name(n, k)] = std::move(r);
      }
    }
    if (!runs.empty() && fits(tasks::omniglot_one_shot_ways)) {
      row.one_shot_run_accuracy = parallel_accuracy(runs, tasks::omniglot_one_shot_ways, accuracy);
    }
  }

  template <class Accuracy>
  std::vector<double> parallel_accuracy(const std::vector<tasks::Task>& list, std::int64_t ways, Accuracy& accuracy) const {
    std::vector<double> out(list.size());
    const int threads = std::max(1, std::min<int>(c.threads, static_cast<int>(list.size())));
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(threads));
    auto work = [&](int id) {
      try {
        raise_pool_limit();
        for (std::size_t i = static_cast<std::size_t>(id); i < list.size(); i += static_cast<std::size_t>(threads)) {
          out[i] = accuracy(list[i], ways);
        }
      } catch (...) {
        errors[static_cast<std::size_t>(id)] = std::current_exception();
      }
    };
    std::vector<std::thread> pool;
    for (int id = 1; id < threads; ++id) pool.emplace_back(work, id);
    work(0);
    for (auto& t : pool) t.join();
    for (const auto& e : errors) {
      if (e) std::rethrow_exception(e);
    }
    return out;
  }
};

std::shared_ptr<const nn::Conv4> make_net(const OmniglotConfig& c, bool metric, std::int64_t ways) {
  nn::Conv4Spec spec;
  spec.channels = c.channels;
  spec.image_size = 28;
  spec.downsample = !c.downsample.empty() ? nn::parse_downsample(c.downsample)
                    : metric              ? nn::Conv4Spec::Downsample::max_pool
                                          : nn::Conv4Spec::Downsample::stride;
  spec.out_features = metric ? 0 : ways;
  return std::make_shared<const nn::Conv4>(spec);
}

std::unique_ptr<meta::Learner> make(const OmniglotConfig& c, const std::string& kind,
                                    std::shared_ptr<const nn::Conv4> net, std::int64_t ways, Generator& gen) {
  meta::LearnerOptions o;
  o.maml.inner_steps = steps_for(c, ways);
  o.maml.inner_lr = lr_for(c, ways);
  o.meta_sgd.inner_steps = steps_for(c, ways);
  o.meta_sgd.alpha_init = lr_for(c, ways);
  o.anil.inner_steps = steps_for(c, ways);
  o.anil.inner_lr = lr_for(c, ways);
  // Reptile as its paper runs Omniglot: 5 inner Adam steps (lr 1e-3, beta1 0), an outer SGD step
  // epsilon 1 decaying linearly to 0 over an --iterations run (constant under --seconds).
  o.reptile.inner_steps = 5;
  o.reptile.inner_lr = 1e-3;
  o.reptile.inner_adam = true;
  o.reptile.epsilon = 1.0;
  o.reptile.decay_steps = c.seconds > 0.0 ? 0 : c.iterations;
  nn::OptimizerOptions outer;
  if (kind == "reptile") {
    outer.lr = o.reptile.epsilon;
    return meta::make_learner(kind, net, net->init(gen), nn::make_sgd(outer), o);
  }
  outer.lr = c.outer_lr;
  return meta::make_learner(kind, net, net->init(gen), nn::make_adam(outer), o);
}

// Meta-trains until --iterations or --seconds; returns (iterations, seconds).
std::pair<std::int64_t, double> train(const OmniglotConfig& c, const Benchmark& b, meta::Learner& learner,
                                      std::int64_t ways, const std::string& label) {
  Generator gen(c.seed * 31 + static_cast<std::uint64_t>(ways));
  const tasks::OmniglotEpisodeOptions eo{ways, c.train_shots, c.train_queries};
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0.0;
  std::int64_t it = 0;
  double loss_sum = 0.0, acc_sum = 0.0;
  std::int64_t logged = 0;
  while (it < c.iterations && !(c.seconds > 0.0 && elapsed >= c.seconds)) {
    if (interrupt_requested().load()) throw CommandExit{interrupted};
    tasks::TaskBatch batch;
    for (std::int64_t t = 0; t < c.meta_batch; ++t) {
      batch.push_back(tasks::sample_omniglot_episode(b.data, b.split.train_classes, gen, eo));
    }
    const auto m = learner.meta_train_step(batch, {true});
    ++it;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!std::isfinite(m.query_loss)) {
      fail("omniglot: " + label + " diverged at iteration " + std::to_string(it) + " (non-finite query loss); lower --outer-lr or --inner-lr");
    }
    loss_sum += m.query_loss;
    acc_sum += m.query_accuracy.value_or(0.0);
    ++logged;
    if (c.log_every > 0 && it % c.log_every == 0) {
      std::printf("  %-22s iteration %6lld  %7.1f s  train query loss %.4f  accuracy %.3f\n", label.c_str(),
                  static_cast<long long>(it), elapsed, loss_sum / static_cast<double>(logged),
                  acc_sum / static_cast<double>(logged));
      std::fflush(stdout);
      loss_sum = acc_sum = 0.0;
      logged = 0;
    }
  }
  return {it, elapsed};
}

std::string fmt_percent(const eval::Summary& s) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f ± %.1f", 100.0 * s.mean, 100.0 * (s.ci_high - s.mean));
  return buf;
}

double mean_of(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

// The published numbers printed beside ours (full background set unless said).
const char* published_note() {
  return "Published, full background set (30 alphabets, 1200 training characters + rotations), accuracy %: "
         "MAML (Finn et al. 2017) 98.7 / 99.9 / 95.8 / 98.9 and ProtoNets (Snell et al. 2017) 98.8 / 99.7 / 96.0 / "
         "98.9 for 5-way 1-shot / 5-way 5-shot / 20-way 1-shot / 20-way 5-shot. The 20 one-shot runs (Lake et al. "
         "2015), error %: humans 4.5, BPL 3.3, Siamese convnet 8.0, deep convnet 13.5 (full background); with one "
         "small background set (as here, but we use both): BPL 4.3 / 4.0, deep convnet 24.0 / 22.3.";
}

void run(const OmniglotConfig& c) {
  if (c.learners.empty()) throw eval::ConfigError("omniglot: --learners is empty");
  for (const auto& l : c.learners) {
    if (!meta::find_learner(l)) {
      throw eval::ConfigError("omniglot: unknown learner '" + l + "' (choose " + meta::learner_names_text(", ", " or ") + ")");
    }
  }
  if (c.train_shots + c.train_queries > 20 || c.eval_queries + *std::max_element(c.shots.begin(), c.shots.end()) > 20) {
    throw eval::ConfigError("omniglot: every character has 20 drawings; shots + queries must be <= 20 (lower --eval-queries or --train-queries)");
  }
  SigintScope sigint;
  raise_pool_limit();
  const auto load_start = std::chrono::steady_clock::now();
  const Benchmark b(c);
  std::printf("metatape omniglot: %s\n", tasks::omniglot_summary(b.data).c_str());
  std::printf(
      "  split (seed %llu): %zu meta-training characters (%zu classes with rotations), %zu validation, %zu test; "
      "%lld evaluation episodes per cell, %lld queries per class; %zu one-shot runs; loaded in %.1f s\n",
      static_cast<unsigned long long>(c.seed), b.split.train_characters.size(), b.split.train_classes.size(),
      b.split.validation_characters.size(), b.split.test_characters.size(), static_cast<long long>(c.eval_episodes),
      static_cast<long long>(c.eval_queries), b.runs.size(),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count());
  std::fflush(stdout);

  std::vector<Row> rows;
  {
    Row pixels{"pixels (nearest class mean)", {}, {}, "control: no learning"};
    b.evaluate(pixels, [](const tasks::Task& t, std::int64_t) { return pixel_accuracy(t); },
               [](std::int64_t) { return true; });
    rows.push_back(std::move(pixels));
  }
  nlohmann::json training = nlohmann::json::object();
  for (const auto& kind : c.learners) {
    const bool metric = meta::is_metric_learner(kind);
    // Metric learners: one model trained with metric_train_ways; gradient learners: one per N.
    std::vector<std::int64_t> train_ways = metric ? std::vector<std::int64_t>{c.metric_train_ways} : c.ways;
    Row before{kind + " (before training)", {}, {}, "control: the same network at its initialisation"};
    Row after{kind, {}, {}, ""};
    for (auto n : train_ways) {
      Generator init_gen(c.seed + 7);
      const auto net = make_net(c, metric, n);
      auto learner = make(c, kind, net, n, init_gen);
      const auto fits = [&](std::int64_t ways) { return metric || ways == n; };
      const int steps = eval_steps_for(c, n);
      const auto score = [&](const tasks::Task& t, std::int64_t) { return learner_accuracy(*learner, t, steps); };
      b.evaluate(before, score, fits);
      const std::string label = kind + (metric ? "" : " " + std::to_string(n) + "-way");
      const auto [iterations, seconds] = train(c, b, *learner, n, label);
      b.evaluate(after, score, fits);
      char note[200];
      std::snprintf(note, sizeof note, "%s: %lld meta-steps in %.0f s (%.2f s each)",
                    metric ? ("trained on " + std::to_string(n) + "-way episodes").c_str() : (std::to_string(n) + "-way head").c_str(),
                    static_cast<long long>(iterations), seconds, iterations ? seconds / static_cast<double>(iterations) : 0.0);
      after.note += (after.note.empty() ? "" : "; ") + std::string(note);
      training[label] = {{"model", net->describe()}, {"iterations", iterations}, {"seconds", seconds},
                         {"inner_steps", steps_for(c, n)}, {"inner_lr", lr_for(c, n)}, {"eval_steps", steps},
                         {"train_ways", n}, {"train_shots", c.train_shots}, {"train_queries", c.train_queries},
                         {"meta_batch", c.meta_batch}};
      std::printf("  %-22s %s\n", label.c_str(), note);
      std::fflush(stdout);
    }
    rows.push_back(std::move(before));
    rows.push_back(std::move(after));
  }

  // The table: accuracy % (mean ± 95% CI half-width) per cell, and the one-shot runs' error %.
  std::vector<std::string> cells;
  for (auto n : c.ways)
    for (auto k : c.shots) cells.push_back(cell_name(n, k));
  std::ostringstream md;
  md << "| method |";
  for (const auto& cell : cells) md << " " << cell << " |";
  if (c.one_shot_runs) md << " one-shot runs, error % |";
  md << "\n|---|";
  for (std::size_t i = 0; i < cells.size() + (c.one_shot_runs ? 1 : 0); ++i) md << "---|";
  md << "\n";
  nlohmann::json report;
  for (const auto& row : rows) {
    md << "| " << row.method << " |";
    nlohmann::json jr;
    for (const auto& cell : cells) {
      const auto it = row.cells.find(cell);
      if (it == row.cells.end()) {
        md << " – |";
        continue;
      }
      md << " " << fmt_percent(it->second.summary) << " |";
      jr[cell] = {{"mean", it->second.summary.mean}, {"ci_low", it->second.summary.ci_low},
                  {"ci_high", it->second.summary.ci_high}, {"episodes", it->second.summary.n}};
    }
    if (c.one_shot_runs) {
      if (row.one_shot_run_accuracy.empty()) {
        md << " – |";
      } else {
        char buf[32];
        std::snprintf(buf, sizeof buf, " %.1f |", 100.0 * (1.0 - mean_of(row.one_shot_run_accuracy)));
        md << buf;
        jr["one_shot_runs"] = {{"error", 1.0 - mean_of(row.one_shot_run_accuracy)},
                               {"per_run_accuracy", row.one_shot_run_accuracy}};
      }
    }
    md << "\n";
    jr["note"] = row.note;
    report["results"][row.method] = jr;
  }
  std::printf("\nAccuracy %% on held-out characters (mean ± 95%% CI half-width over %lld episodes, %lld queries per class); "
              "one-shot runs: error %% over their 400 test images\n\n%s\n",
              static_cast<long long>(c.eval_episodes), static_cast<long long>(c.eval_queries), md.str().c_str());
  for (const auto& row : rows) {
    if (!row.note.empty()) std::printf("  %s: %s\n", row.method.c_str(), row.note.c_str());
  }
  std::printf("\n%s\n", published_note());
  report["training"] = training;
  report["config"] = {{"learners", c.learners}, {"ways", c.ways}, {"shots", c.shots}, {"eval_episodes", c.eval_episodes},
                      {"eval_queries", c.eval_queries}, {"channels", c.channels}, {"seed", c.seed},
                      {"outer_lr", c.outer_lr}, {"data", tasks::omniglot_summary(b.data)}};
  report["published"] = published_note();
  auto write = [](const std::string& path, const std::string& text, const char* what) {
    const std::filesystem::path p(path);
    const std::filesystem::path tmp = p.string() + ".tmp";
    {
      std::ofstream out(tmp);
      if (!out || !(out << text)) throw eval::DataError(std::string("metatape: omniglot: cannot write ") + what + " '" + path + "'");
    }
    std::filesystem::rename(tmp, p);
  };
  if (!c.json_path.empty()) write(c.json_path, report.dump(2) + "\n", "--json file");
  if (!c.markdown_path.empty()) write(c.markdown_path, md.str(), "--markdown file");
}

}  // namespace

void register_omniglot(CLI::App& app) {
  auto config = std::make_shared<OmniglotConfig>();
  CLI::App* cmd = app.add_subcommand(
      "omniglot",
      "Omniglot few-shot benchmark (W3): meta-train learners on a Conv-4 over the small background sets, report "
      "N-way K-shot accuracy on held-out characters (95% CIs) and the 20 official one-shot runs' error. Quick "
      "start: metatape omniglot --learners protonet --seconds 120 --ways 5 --eval-episodes 100");
  cmd->add_option("--data", config->data, "the Omniglot folder (images_background_small1/2, one_shot_runs)");
  cmd->add_option("--learners", config->learners, "learners to train: " + meta::learner_names_text())->delimiter(',');
  cmd->add_option("--iterations", config->iterations, "meta-steps per trained model (the MAML paper: 60000)")->check(positive());
  cmd->add_option("--seconds", config->seconds, "wall-clock training budget per trained model (0 = none)")->check(non_negative());
  cmd->add_option("--meta-batch", config->meta_batch, "episodes per meta-step")->check(positive());
  cmd->add_option("--ways", config->ways, "N of the evaluation cells (a gradient learner trains one head per N)")->delimiter(',')->check(positive());
  cmd->add_option("--shots", config->shots, "K of the evaluation cells")->delimiter(',')->check(positive());
  cmd->add_option("--train-shots", config->train_shots, "support drawings per class in training episodes")->check(positive());
  cmd->add_option("--train-queries", config->train_queries, "query drawings per class in training episodes")->check(positive());
  cmd->add_option("--metric-train-ways", config->metric_train_ways, "classes per training episode of ProtoNets / Matching Nets")->check(positive());
  cmd->add_option("--inner-steps", config->inner_steps, "inner SGD steps in training (default by N: 1 for N <= 5, else 5)")->check(positive());
  cmd->add_option("--inner-lr", config->inner_lr, "inner SGD learning rate (default by N: 0.4 for N <= 5, else 0.1)")->check(positive());
  cmd->add_option("--eval-steps", config->eval_steps, "inner SGD steps at evaluation (default by N: 3 for N <= 5, else 5)")->check(positive());
  cmd->add_option("--eval-episodes", config->eval_episodes, "evaluation episodes per cell (600 as the papers)")->check(CLI::Range(2, 100000));
  cmd->add_option("--eval-queries", config->eval_queries, "query drawings per class in evaluation episodes")->check(positive());
  cmd->add_option("--channels", config->channels, "filters per Conv-4 block")->check(positive());
  cmd->add_option("--downsample", config->downsample,
                  "stride (MAML's Omniglot net) or max_pool (ProtoNets'); default: stride for gradient learners, "
                  "max_pool for metric ones")
      ->check(CLI::IsMember({"stride", "max_pool"}));
  cmd->add_option("--outer-lr", config->outer_lr, "outer Adam learning rate")->check(positive());
  cmd->add_option("--seed", config->seed, "seed of the split, initialisation, training and evaluation episodes");
  cmd->add_option("--log-every", config->log_every, "print the mean training loss every N meta-steps (0 = never)");
  cmd->add_option("--threads", config->threads,
                  "evaluation threads (episodes are independent; results do not depend on it); 0 = one per core")
      ->check(non_negative());
  cmd->add_flag("!--no-one-shot-runs", config->one_shot_runs, "skip the 20 official one-shot runs");
  cmd->add_option("--json", config->json_path, "also write the results as JSON to this file");
  cmd->add_option("--markdown", config->markdown_path, "also write the results table as Markdown to this file");
  cmd->callback([config] {
    if (config->seconds > 0.0 && config->iterations == 60000) config->iterations = 1000000000;
    if (config->threads == 0) config->threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    run(*config);
  });
}

}  // namespace metatape::apps
