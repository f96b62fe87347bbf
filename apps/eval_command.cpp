// metatape eval: evaluate learners trained by `metatape train` (their checkpoints under --out) against
// the baselines; the same report as `run`.
//
// eval never trains and never writes a checkpoint or a JSONL log: the configuration comes from
// <out>/config.resolved.yaml (written by train), each learner is loaded from its checkpoint as it is,
// and only <out>/report/ is written. From the command line it takes the evaluation keys (evaluation.*,
// limits.*, data.root) and subsets of the trained learners and families; a training key that differs
// from the recorded one is refused, naming both values.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "apps/commands.h"
#include "dist/communicator.h"
#include "eval/report.h"

namespace metatape::apps {
namespace {

namespace fs = std::filesystem;

std::string quoted(const std::string& arg) {
  if (!arg.empty() && arg.find_first_of(" \t'\"$\\[]*?;&|<>(){}") == std::string::npos) return arg;
  std::string q = "'";
  for (char c : arg) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// The `metatape train` command that writes what this eval command reads.
std::string train_command(const RunOptions& o, const std::string& out) {
  std::string cmd = "metatape train";
  auto add = [&](const std::string& a) { cmd += " " + quoted(a); };
  if (!o.config.empty()) add("--config"), add(o.config);
  for (const auto& s : o.set) {
    if (!eval::is_evaluation_key(s.substr(0, s.find('=')))) add("--set"), add(s);
  }
  if (!o.data.empty()) add("--data"), add(o.data);
  if (o.seed >= 0) add("--seed"), add(std::to_string(o.seed));
  if (o.meta_steps >= 0) add("--meta-steps"), add(std::to_string(o.meta_steps));
  if (!o.learners.empty()) {
    add("--learners");
    for (const auto& l : o.learners) add(l);
  }
  if (!o.families.empty()) {
    add("--families");
    for (const auto& f : o.families) add(f);
  }
  add("--out");
  add(out);
  return cmd;
}

std::vector<std::string> as_list(const std::string& flow) {
  std::vector<std::string> items;
  std::string body = flow;
  if (!body.empty() && body.front() == '[') body = body.substr(1, body.size() - 2);
  std::stringstream ss(body);
  for (std::string item; std::getline(ss, item, ',');) {
    const auto b = item.find_first_not_of(' '), e = item.find_last_not_of(' ');
    if (b != std::string::npos) items.push_back(item.substr(b, e - b + 1));
  }
  return items;
}

}  // namespace

eval::RunConfig recorded_run_config(const eval::RunConfig& requested, const std::string& recorded_path) {
  std::ifstream in(recorded_path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) throw eval::ConfigError("eval: cannot read " + recorded_path);
  const auto recorded = eval::flatten_config(text.str());
  const auto given = eval::flatten_config(requested.source_text);
  const auto wanted = eval::flatten_config(eval::resolved_config_yaml(requested));
  std::vector<std::string> overrides, conflicts;
  for (const auto& [key, raw] : given) {
    if (key == "out" || key == "data.root") continue;
    const std::string value = wanted.count(key) ? wanted.at(key) : raw;
    if (eval::is_evaluation_key(key)) {
      overrides.push_back(key + "=" + value);
      continue;
    }
    const auto it = recorded.find(key);
    const std::string have = it == recorded.end() ? std::string("(not recorded)") : it->second;
    if (value == have) continue;
    if ((key == "learners" || key == "tasks.families") && it != recorded.end()) {
      const auto trained = as_list(have);
      const std::set<std::string> pool(trained.begin(), trained.end());
      bool subset = true;
      for (const auto& x : as_list(value)) subset = subset && pool.count(x) > 0;
      if (subset) {
        overrides.push_back(key + "=" + value);
        continue;
      }
    }
    conflicts.push_back(key + " is " + value + " here but " + have + " in training");
  }
  if (!conflicts.empty()) {
    std::string list;
    for (const auto& c : conflicts) list += "\n  " + c;
    throw eval::ConfigError(
        "eval: the checkpoints under " + requested.benchmark.out_dir + " were trained with another configuration (" +
        recorded_path + "):" + list +
        "\neval takes every training key from that file and never retrains: drop these options (evaluation.* "
        "and limits.* keys may change; learners and tasks.families may name a subset of the trained ones), "
        "or train the new configuration into another --out");
  }
  eval::RunConfig c = eval::parse_run_config(text.str(), overrides, recorded_path);
  c.benchmark.out_dir = requested.benchmark.out_dir;
  if (given.count("data.root")) c.data.root = requested.data.root;
  return c;
}

namespace {

void evaluate(const RunOptions& options) {
  if (options.resume) {
    throw eval::ConfigError(
        "eval: --resume does not apply (eval never trains); to continue training use "
        "metatape train ... --resume");
  }
  const eval::RunConfig requested = resolve_run_config(options);
  const std::string out = requested.benchmark.out_dir;
  const std::string recorded_path = eval::resolved_config_path(out);
  if (!fs::exists(recorded_path)) {
    throw eval::ConfigError("eval: nothing trained under " + out + ": " + recorded_path +
                            " is missing (metatape train writes it beside its checkpoints); train first with: " +
                            train_command(options, out));
  }
  eval::RunConfig config = recorded_run_config(requested, recorded_path);
  eval::BenchmarkConfig& b = config.benchmark;
  if (b.runs != 1) {
    throw eval::ConfigError("eval: evaluation.runs is " + std::to_string(b.runs) +
                            " but metatape train trains run 0 only; evaluate with evaluation.runs=1, or use "
                            "metatape run for several runs");
  }
  b.evaluate_only = true;
  b.resume = false;

  // The exact command that trains what is missing here with the recorded configuration.
  const std::string retrain =
      "metatape train --config " + quoted(recorded_path) + " --out " + quoted(out) + " --resume";
  SigintScope sigint;
  std::string description;
  auto sources = eval::build_sources(config, &description);
  std::vector<std::string> missing;
  for (std::size_t fi = 0; fi < sources.size(); ++fi) {
    for (std::size_t li = 0; li < b.learners.size(); ++li) {
      if (!eval::learner_fits(b.learners[li], sources[fi])) continue;
      const std::string path = eval::learner_checkpoint_path(b, 0, sources[fi].name, b.learners[li]);
      if (!fs::exists(path)) {
        missing.push_back(path);
        continue;
      }
      eval::TrainingRecord record;
      try {
        (void)eval::load_benchmark_learner(b, sources[fi], fi, li, 0, record);
      } catch (const Error& e) {
        throw eval::DataError("metatape: eval: the checkpoint " + path + " cannot be used: " + e.what() +
                              " (delete it and train it again with " + retrain + ")");
      }
      if (record.steps < b.meta_steps) {
        std::fprintf(stderr,
                     "metatape: eval: %s on %s has %lld of %lld meta-steps (training stopped early); "
                     "evaluated as it is\n",
                     b.learners[li].c_str(), sources[fi].name.c_str(), static_cast<long long>(record.steps),
                     static_cast<long long>(b.meta_steps));
      }
    }
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += "\n  " + m;
    throw eval::ConfigError("eval: no checkpoint for " + std::to_string(missing.size()) + " learner(s):" + list +
                            "\ntrain them with: " + retrain +
                            " (the recorded configuration; learners already trained are kept)");
  }

  eval::ProgressBar bar(1, "eval", progress_mode(options));
  eval::BenchmarkResult result = eval::run_benchmark(b, sources, &bar, &interrupt_requested());
  bar.finish(result.interrupted ? "interrupted" : "done");
  result.data_description = description;
  const std::string dir = (fs::path(out) / "report").string();
  if (dist::world().writes_files()) {  // every process has the same result; rank 0 writes it
    eval::write_report(result, dir);
    if (!options.quiet) std::cout << eval::report_markdown(result) << std::flush;
    std::fprintf(stderr, "metatape: report written to %s\n", dir.c_str());
  }
  if (result.interrupted) throw CommandExit{interrupted};
}

}  // namespace

void register_eval(CLI::App& app) {
  auto opts = std::make_shared<RunOptions>();
  CLI::App* cmd =
      app.add_subcommand("eval",
                         "evaluate trained learners (checkpoints and config.resolved.yaml from `metatape train --out "
                         "DIR`) against the baselines on fresh test episodes, without training; writes and prints the "
                         "report");
  add_run_options(*cmd, *opts);
  cmd->callback([opts] { evaluate(*opts); });
}

}  // namespace metatape::apps
