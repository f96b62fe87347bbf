// metatape run / bench: meta-train the configured learners, evaluate them against the baselines on
// the same episodes, print the report table and write the report files.
#include <unistd.h>

#include <cmath>
#include <cstdlib>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "dist/communicator.h"
#include "eval/report.h"
#include "meta/registry.h"
#include "tasks/families.h"

namespace metatape::apps {

namespace {

CLI::Validator number_check(bool zero_allowed) {
  return CLI::Validator(
      [zero_allowed](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        const bool ok =
            !text.empty() && end != nullptr && *end == '\0' && std::isfinite(v) && (zero_allowed ? v >= 0 : v > 0);
        if (ok) return {};
        return std::string("must be a number ") + (zero_allowed ? ">= 0" : "> 0") + ", got '" + text + "'";
      },
      zero_allowed ? "NUMBER >= 0" : "NUMBER > 0");
}

}  // namespace

CLI::Validator positive() { return number_check(false); }
CLI::Validator non_negative() { return number_check(true); }

void add_run_options(CLI::App& cmd, RunOptions& o) {
  cmd.add_option("-c,--config", o.config, "YAML configuration (see configs/*.yaml)")->check(CLI::ExistingFile);
  cmd.add_option("-s,--set", o.set, "override a config key: section.key=value (repeatable)");
  cmd.add_option("-o,--out", o.out, "output directory (checkpoints, logs, report); config key out");
  cmd.add_option("--data", o.data, "directory of the market files listed in data.files (sets data.root)");
  cmd.add_option("--seed", o.seed, "base seed");
  cmd.add_option("--episodes", o.episodes, "test episodes per shots value");
  cmd.add_option("--meta-steps", o.meta_steps, "meta-training steps per learner");
  cmd.add_option("--learners", o.learners, "learners to run (" + meta::learner_names_text(" ", " ") + ")");
  cmd.add_option("--families", o.families, "task families (" + tasks::family_names_text(" ") + ")");
  cmd.add_flag("--resume", o.resume, "continue from the checkpoints in the output directory");
  cmd.add_flag("--no-progress", o.no_progress, "no progress bar");
  cmd.add_flag("--progress", o.progress,
               "show progress even when stderr is not a terminal (then as a line every 10 s, for logs)");
  cmd.add_flag("-q,--quiet", o.quiet, "do not print the report table");
}

eval::ProgressMode progress_mode(const RunOptions& o) {
  if (o.no_progress || dist::world().rank() > 0) return eval::ProgressMode::off;
  if (isatty(fileno(stderr))) return eval::ProgressMode::bar;
  return o.progress ? eval::ProgressMode::lines : eval::ProgressMode::off;
}

void write_sampler_stats(const eval::RunConfig& config, const std::vector<eval::FamilySource>& sources) {
  if (!dist::world().writes_files()) return;  // rank 0 writes the job's files
  nlohmann::json j = nlohmann::json::object();
  for (const eval::FamilySource& f : sources) {
    if (!f.train_sampler_stats) continue;
    const tasks::SamplerStats s = f.train_sampler_stats();
    j[f.name] = {{"built", s.built},
                 {"memory_hits", s.memory_hits},
                 {"disk_hits", s.disk_hits},
                 {"disk_rebuilt", s.disk_rebuilt},
                 {"skipped_quality", s.skipped_quality}};
    std::fprintf(stderr,
                 "metatape: sampler %s: %lld tasks built, %lld from memory, %lld from the disk cache, %lld "
                 "skipped below min_quality\n",
                 f.name.c_str(), static_cast<long long>(s.built), static_cast<long long>(s.memory_hits),
                 static_cast<long long>(s.disk_hits), static_cast<long long>(s.skipped_quality));
  }
  const std::filesystem::path path = std::filesystem::path(config.benchmark.out_dir) / "sampler_stats.json";
  std::ofstream out(path, std::ios::trunc);
  out << j.dump(2) << '\n';
  if (!out) throw Error("metatape: cannot write " + path.string() + " (check that --out is a writable directory)");
}

void write_resolved_config(const eval::RunConfig& config) {
  if (!dist::world().writes_files()) return;  // rank 0 writes the job's files
  const std::string path = eval::resolved_config_path(config.benchmark.out_dir);
  std::error_code ec;
  std::filesystem::create_directories(config.benchmark.out_dir, ec);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << eval::resolved_config_yaml(config);
    out.flush();
    if (!out) throw Error("metatape: cannot write " + tmp + " (check that --out is a writable directory)");
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw Error("metatape: cannot rename " + tmp + " to " + path + ": " + ec.message());
}

void check_resumable(const eval::RunConfig& config, const std::vector<eval::FamilySource>& sources, int runs) {
  const eval::BenchmarkConfig& b = config.benchmark;
  for (int run = 0; run < runs; ++run) {
    for (std::size_t fi = 0; fi < sources.size(); ++fi) {
      for (std::size_t li = 0; li < b.learners.size(); ++li) {
        const std::string path = eval::learner_checkpoint_path(b, run, sources[fi].name, b.learners[li]);
        if (path.empty() || !std::filesystem::exists(path)) continue;
        eval::TrainingRecord unused;
        try {
          (void)eval::load_benchmark_learner(b, sources[fi], fi, li, run, unused);
        } catch (const Error& e) {
          throw eval::DataError("metatape: --resume: the checkpoint " + path + " cannot be resumed: " + e.what() +
                                " (delete it to train that learner from the start)");
        }
      }
    }
  }
}

eval::RunConfig resolve_run_config(const RunOptions& o) {
  std::vector<std::string> overrides = o.set;
  auto list = [](const std::vector<std::string>& v) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + v[i];
    return s + "]";
  };
  if (!o.out.empty()) overrides.push_back("out=" + o.out);
  if (!o.data.empty()) overrides.push_back("data.root=" + o.data);
  if (o.seed >= 0) overrides.push_back("seed=" + std::to_string(o.seed));
  if (o.episodes >= 0) overrides.push_back("evaluation.episodes=" + std::to_string(o.episodes));
  if (o.meta_steps >= 0) overrides.push_back("training.meta_steps=" + std::to_string(o.meta_steps));
  if (!o.learners.empty()) overrides.push_back("learners=" + list(o.learners));
  if (!o.families.empty()) overrides.push_back("tasks.families=" + list(o.families));
  eval::RunConfig c = eval::load_run_config(o.config, overrides);
  c.benchmark.resume = o.resume;
  if (!o.data.empty() && c.data.source != "files") {
    throw eval::ConfigError(
        "--data was given but the config reads the simulator (data.source: simulator); "
        "use a config that lists data.files, e.g. configs/real.yaml");
  }
  if (!o.data.empty() && !std::filesystem::is_directory(o.data)) {
    throw eval::DataError("metatape: data: --data " + o.data + " is not a directory");
  }
  return c;
}

namespace {

int run_and_report(const RunOptions& o, const char* what) {
  eval::RunConfig config = resolve_run_config(o);
  SigintScope sigint;
  std::string description;
  std::vector<eval::FamilySource> sources = eval::build_sources(config, &description);
  if (config.benchmark.out_dir.empty()) config.benchmark.out_dir = "runs/main";
  if (config.benchmark.resume) check_resumable(config, sources, config.benchmark.runs);
  write_resolved_config(config);
  eval::ProgressBar bar(1, what, progress_mode(o));
  eval::BenchmarkResult result = eval::run_benchmark(config.benchmark, sources, &bar, &interrupt_requested());
  bar.finish(result.interrupted ? "interrupted" : "done");
  write_sampler_stats(config, sources);
  result.data_description = description;
  const std::string out = config.benchmark.out_dir.empty() ? std::string("runs/main") : config.benchmark.out_dir;
  const std::string report_dir = (std::filesystem::path(out) / "report").string();
  if (dist::world().writes_files()) {  // every process has the same result; rank 0 writes it
    eval::write_report(result, report_dir);
    {
      std::ofstream cfg(std::filesystem::path(out) / "config.yaml");
      cfg << config.source_text << '\n';
    }
    if (!o.quiet) std::cout << eval::report_markdown(result) << std::flush;
    std::fprintf(stderr,
                 "metatape: report written to %s (report.md, report.json, *.csv); plot with "
                 "python3 scripts/plot_report.py %s\n",
                 report_dir.c_str(), report_dir.c_str());
  }
  if (result.interrupted) {
    std::fprintf(stderr,
                 "metatape: interrupted; checkpoints are in %s, continue with the same command "
                 "plus --resume\n",
                 out.c_str());
    throw CommandExit{interrupted};
  }
  return ok;
}

}  // namespace

void register_run(CLI::App& app) {
  auto opts = std::make_shared<RunOptions>();
  CLI::App* run =
      app.add_subcommand("run",
                         "the main job: meta-train MAML, FOMAML, MAML++, Meta-SGD, Reptile, ANIL, ProtoNets and "
                         "Matching Nets on price-direction and regime tasks of the built-in simulator, evaluate them "
                         "against the baselines and print the report (the defaults are configs/main.yaml; "
                         "configs/real.yaml with --data ../shared/data/market runs on market files)");
  add_run_options(*run, *opts);
  run->callback([opts] { run_and_report(*opts, "run"); });

  auto bopts = std::make_shared<RunOptions>();
  CLI::App* bench =
      app.add_subcommand("bench",
                         "the few-shot benchmark from a config file: learners x families x shots x steps x runs x "
                         "episodes, baselines, paired tests with Holm correction; writes JSON, Markdown and CSV");
  add_run_options(*bench, *bopts);
  bench->get_option("--config")->required();
  bench->callback([bopts] { run_and_report(*bopts, "bench"); });
}

}  // namespace metatape::apps
