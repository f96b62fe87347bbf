#include "eval/run_config.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "tasks/families.h"
#include "tasks/loaders.h"

namespace metatape::eval {
namespace {

bool present(const YAML::Node& node) { return node && node.IsDefined() && !node.IsNull(); }

void check_keys(const YAML::Node& node, const std::string& section, const std::set<std::string>& allowed) {
  if (!present(node)) return;
  if (!node.IsMap()) throw ConfigError(section + " must be a map of keys");
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    if (allowed.count(key) == 0) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      throw ConfigError("unknown key '" + (section.empty() ? key : section + "." + key) + "'; expected one of: " + list);
    }
  }
}

template <class T>
void read(const YAML::Node& node, const char* key, T& out, const std::string& section) {
  if (!present(node) || !node.IsMap() || !present(node[key])) return;
  try {
    out = node[key].as<T>();
  } catch (const YAML::Exception&) {
    std::ostringstream s;
    s << node[key];
    throw ConfigError("'" + (section.empty() ? std::string(key) : section + "." + key) + "' has an invalid value '" +
                      s.str() + "'");
  }
}

YAML::Node apply_override(YAML::Node root, const std::string& text) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ConfigError("override '" + text + "' must look like section.key=value (e.g. training.meta_steps=50)");
  }
  const std::string path = text.substr(0, eq);
  YAML::Node value;
  try {
    value = YAML::Load(text.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw ConfigError("override '" + text + "': the value is not valid YAML (" + e.msg + ")");
  }
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
  // Walk and create maps; yaml-cpp nodes are handles, so assignments through `cur` reach `root`.
  std::vector<YAML::Node> chain{root};
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = chain.back()[parts[i]];
    if (!next || !next.IsMap()) {
      chain.back()[parts[i]] = YAML::Node(YAML::NodeType::Map);
      next = chain.back()[parts[i]];
    }
    chain.push_back(next);
  }
  chain.back()[parts.back()] = value;
  return root;
}

}  // namespace

RunConfig parse_run_config(const std::string& yaml_text, const std::vector<std::string>& overrides,
                           const std::string& name) {
  YAML::Node root;
  try {
    root = yaml_text.empty() ? YAML::Node(YAML::NodeType::Map) : YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(name + ": not valid YAML at line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) throw ConfigError(name + ": the top level must be a map (seed:, data:, tasks:, ...)");
  for (const auto& o : overrides) root = apply_override(root, o);

  const YAML::Node& croot = root;
  check_keys(root, "", {"seed", "out", "learners", "data", "tasks", "training", "evaluation"});
  RunConfig c;
  BenchmarkConfig& b = c.benchmark;
  b.learners = {"maml", "fomaml", "maml++", "meta-sgd", "reptile", "anil", "protonet", "matching"};
  b.out_dir = "runs/main";
  c.distribution.families = {"price_direction", "market_regime"};
  read(croot, "seed", b.seed, "");
  read(croot, "out", b.out_dir, "");
  read(croot, "learners", b.learners, "");

  const YAML::Node data = croot["data"];
  check_keys(data, "data", {"source", "root", "files", "align", "policy", "simulator"});
  read(data, "source", c.data.source, "data");
  read(data, "root", c.data.root, "data");
  read(data, "align", c.data.align, "data");
  read(data, "policy", c.data.policy, "data");
  if (present(data) && present(data["files"])) {
    if (!data["files"].IsSequence()) throw ConfigError("data.files must be a list of paths or {path, exchange, ...} maps");
    for (const auto& f : data["files"]) {
      DataFile file;
      if (f.IsScalar()) {
        file.path = f.as<std::string>();
      } else {
        check_keys(f, "data.files[]", {"path", "exchange", "symbol", "interval"});
        read(f, "path", file.path, "data.files[]");
        read(f, "exchange", file.exchange, "data.files[]");
        read(f, "symbol", file.symbol, "data.files[]");
        read(f, "interval", file.interval, "data.files[]");
      }
      if (file.path.empty()) throw ConfigError("data.files: an entry has no path");
      c.data.files.push_back(file);
    }
  }
  const YAML::Node sim = present(data) ? data["simulator"] : YAML::Node();
  check_keys(sim, "data.simulator", {"seed", "assets", "exchanges", "bars", "cross_pairs"});
  c.data.simulator.seed = 7;
  c.data.simulator.bars = 3000;
  c.data.simulator.assets = 4;
  read(sim, "seed", c.data.simulator.seed, "data.simulator");
  read(sim, "assets", c.data.simulator.assets, "data.simulator");
  read(sim, "exchanges", c.data.simulator.exchanges, "data.simulator");
  read(sim, "bars", c.data.simulator.bars, "data.simulator");
  read(sim, "cross_pairs", c.data.simulator.cross_pairs, "data.simulator");

  const YAML::Node t = croot["tasks"];
  check_keys(t, "tasks", {"families", "symbols", "query_size", "horizon", "stride", "embargo", "train_end",
                          "validation_end", "holdout_symbols", "direction_threshold",
                          "regime_trend_threshold", "portfolio_assets", "rebalance"});
  tasks::DistributionConfig& d = c.distribution;
  std::int64_t horizon = 4;
  read(t, "families", d.families, "tasks");
  read(t, "symbols", d.symbols, "tasks");
  read(t, "query_size", d.query_size, "tasks");
  read(t, "horizon", horizon, "tasks");
  d.horizons = {horizon};
  read(t, "stride", d.stride, "tasks");
  read(t, "embargo", d.embargo, "tasks");
  read(t, "train_end", d.splits.train_end, "tasks");
  read(t, "validation_end", d.splits.validation_end, "tasks");
  read(t, "holdout_symbols", d.splits.holdout_symbols, "tasks");
  read(t, "direction_threshold", d.family.direction_threshold, "tasks");
  read(t, "regime_trend_threshold", d.family.regime_trend_threshold, "tasks");
  read(t, "portfolio_assets", d.family.portfolio_assets, "tasks");
  read(t, "rebalance", d.family.rebalance, "tasks");

  const YAML::Node tr = croot["training"];
  check_keys(tr, "training", {"meta_steps", "meta_batch", "train_shots", "outer_optimizer", "outer_lr",
                              "clip_norm", "inner_lr", "inner_steps", "first_order", "recompute_inner", "reptile_steps",
                              "hidden", "activation", "diagnose_every"});
  b.meta_steps = 1000;
  b.meta_batch = 8;
  b.hidden = {64, 64};
  read(tr, "meta_steps", b.meta_steps, "training");
  read(tr, "meta_batch", b.meta_batch, "training");
  read(tr, "train_shots", b.train_shots, "training");
  read(tr, "outer_optimizer", b.outer_optimizer, "training");
  read(tr, "outer_lr", b.outer_lr, "training");
  read(tr, "clip_norm", b.clip_norm, "training");
  read(tr, "hidden", b.hidden, "training");
  read(tr, "activation", b.activation, "training");
  read(tr, "diagnose_every", b.diagnose_every, "training");
  double inner_lr = 0.05;
  int inner_steps = 1, reptile_steps = 5;
  bool first_order = false, recompute_inner = false;
  read(tr, "inner_lr", inner_lr, "training");
  read(tr, "recompute_inner", recompute_inner, "training");
  read(tr, "inner_steps", inner_steps, "training");
  read(tr, "first_order", first_order, "training");
  read(tr, "reptile_steps", reptile_steps, "training");
  meta::LearnerOptions& lo = b.learner_options;
  lo.maml.inner_lr = inner_lr;
  lo.maml.inner_steps = inner_steps;
  lo.maml.first_order = first_order;
  lo.maml.recompute_inner = recompute_inner;
  lo.meta_sgd.recompute_inner = recompute_inner;
  lo.anil.recompute_inner = recompute_inner;
  lo.meta_sgd.alpha_init = inner_lr;
  lo.meta_sgd.inner_steps = inner_steps;
  lo.meta_sgd.first_order = first_order;
  lo.anil.inner_lr = inner_lr;
  lo.anil.inner_steps = inner_steps;
  lo.anil.first_order = first_order;
  lo.reptile.inner_lr = inner_lr;
  lo.reptile.inner_steps = reptile_steps;

  const YAML::Node ev = croot["evaluation"];
  check_keys(ev, "evaluation", {"shots", "steps", "runs", "episodes", "baseline_lr", "bootstrap_resamples",
                                "alpha", "fee_rate", "slippage_rate", "headline_shots", "selection_episodes",
                                "verdict_against"});
  read(ev, "shots", b.shots, "evaluation");
  read(ev, "steps", b.steps, "evaluation");
  read(ev, "runs", b.runs, "evaluation");
  read(ev, "episodes", b.episodes, "evaluation");
  read(ev, "baseline_lr", b.baseline_lr, "evaluation");
  read(ev, "bootstrap_resamples", b.bootstrap_resamples, "evaluation");
  read(ev, "alpha", b.alpha, "evaluation");
  read(ev, "fee_rate", b.trading.fee_rate, "evaluation");
  read(ev, "slippage_rate", b.trading.slippage_rate, "evaluation");
  read(ev, "headline_shots", b.headline_shots, "evaluation");
  read(ev, "selection_episodes", b.selection_episodes, "evaluation");
  read(ev, "verdict_against", b.verdict_against, "evaluation");

  if (c.data.source != "simulator" && c.data.source != "files") {
    throw ConfigError("data.source must be 'simulator' or 'files', got '" + c.data.source + "'");
  }
  if (c.data.source == "files" && c.data.files.empty()) {
    throw ConfigError("data.source is 'files' but data.files is empty; list the market files to load");
  }
  if (c.data.align != "intersect" && c.data.align != "forward_fill") {
    throw ConfigError("data.align must be 'intersect' or 'forward_fill', got '" + c.data.align + "'");
  }
  if (c.data.policy != "fail" && c.data.policy != "drop" && c.data.policy != "repair") {
    throw ConfigError("data.policy must be fail, drop or repair, got '" + c.data.policy + "'");
  }
  const auto names = tasks::family_names();
  for (const auto& f : d.families) {
    if (std::find(names.begin(), names.end(), f) == names.end()) {
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      throw ConfigError("tasks.families: unknown family '" + f + "'; expected some of: " + list);
    }
  }
  static const std::set<std::string> kinds = {"maml", "fomaml", "maml++", "meta-sgd", "reptile", "anil", "protonet", "matching"};
  for (const auto& l : b.learners) {
    if (kinds.count(l) == 0) {
      throw ConfigError("learners: unknown learner '" + l + "'; expected some of: maml, fomaml, maml++, meta-sgd, reptile, anil, protonet, matching");
    }
  }
  if (b.meta_steps < 0 || b.meta_batch < 1 || b.episodes < 2 || b.runs < 1) {
    throw ConfigError("need training.meta_steps >= 0, training.meta_batch >= 1, evaluation.episodes >= 2, evaluation.runs >= 1");
  }
  std::ostringstream out;
  out << root;
  c.source_text = out.str();
  return c;
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  if (path.empty()) return parse_run_config("", overrides, "<defaults>");
  std::ifstream in(path);
  if (!in) throw ConfigError("cannot read the config file '" + path + "' (check the path)");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_run_config(ss.str(), overrides, path);
}

std::vector<FamilySource> build_sources(const RunConfig& config, std::string* description) {
  tasks::Market market;
  std::string desc;
  if (config.data.source == "simulator") {
    try {
      market = tasks::simulate_market(config.data.simulator).market;
    } catch (const Error& e) {
      throw ConfigError(std::string("data.simulator: ") + e.what());
    }
    desc = "built-in simulator (seed " + std::to_string(config.data.simulator.seed) + ", " +
           std::to_string(config.data.simulator.assets) + " assets x " +
           std::to_string(config.data.simulator.exchanges) + " exchanges, " +
           std::to_string(config.data.simulator.bars) + " hourly bars)";
  } else {
    std::vector<tasks::Series> series;
    std::string labels;
    for (const DataFile& f : config.data.files) {
      std::filesystem::path p(f.path);
      if (p.is_relative() && !config.data.root.empty()) p = std::filesystem::path(config.data.root) / p;
      if (!std::filesystem::exists(p)) {
        throw DataError("metatape: data: file not found: " + p.string() +
                        " (check data.root / --data and data.files)");
      }
      tasks::LoadOptions lo;
      lo.policy = config.data.policy == "fail" ? tasks::ValidationPolicy::fail
                  : config.data.policy == "drop" ? tasks::ValidationPolicy::drop
                                                 : tasks::ValidationPolicy::repair;
      lo.exchange = f.exchange;
      lo.symbol = f.symbol;
      lo.interval = f.interval;
      try {
        tasks::LoadResult r = tasks::load_series(p.string(), lo);
        labels += (labels.empty() ? "" : ", ") + r.series.label();
        series.push_back(std::move(r.series));
      } catch (const Error& e) {
        throw DataError(e.what());
      }
    }
    try {
      market = tasks::align(std::move(series), config.data.align == "forward_fill" ? tasks::AlignMode::forward_fill
                                                                                 : tasks::AlignMode::intersect);
    } catch (const Error& e) {
      throw DataError(e.what());
    }
    desc = "market files under " + (config.data.root.empty() ? std::string(".") : config.data.root) + ": " + labels +
           " (" + std::to_string(market.rows()) + " aligned bars)";
  }
  auto prepared = tasks::PreparedMarket::make(std::move(market));
  MarketSourceOptions options;
  options.train_shots = config.benchmark.train_shots;
  options.query_size = config.distribution.query_size;
  if (description != nullptr) *description = desc;
  try {
    return make_market_sources(prepared, config.distribution, options);
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {
    throw ConfigError(std::string("tasks: ") + e.what());
  }
}

}  // namespace metatape::eval
