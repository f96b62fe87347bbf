#include "eval/run_config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <type_traits>

#include <yaml-cpp/yaml.h>

#include "meta/registry.h"
#include "nn/mlp.h"
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
      throw ConfigError("unknown key '" + (section.empty() ? key : section + "." + key) +
                        "'; expected one of: " + list);
    }
  }
}

std::string key_name(const std::string& section, const std::string& key) {
  return section.empty() ? key : section + "." + key;
}

std::string yaml_text(const YAML::Node& node) {
  YAML::Emitter e;
  e << YAML::Flow << node;
  return e.c_str();
}

template <class T>
struct is_vector : std::false_type {};
template <class T>
struct is_vector<std::vector<T>> : std::true_type {};

// An integer written in float notation (1e9) is read as that integer when it is one, so the range
// checks below name the value instead of calling it malformed.
template <class T>
bool read_integral(const YAML::Node& node, T& out) {
  double v = 0.0;
  try {
    v = node.as<double>();
  } catch (const YAML::Exception&) {
    return false;
  }
  if (!std::isfinite(v) || v != std::floor(v)) return false;
  if (v < static_cast<double>(std::numeric_limits<T>::min()) || v >= std::ldexp(1.0, std::numeric_limits<T>::digits)) {
    return false;
  }
  out = static_cast<T>(v);
  return true;
}

template <class T>
const char* expected_form() {
  if constexpr (std::is_same_v<T, bool>)
    return "true or false";
  else if constexpr (std::is_integral_v<T>)
    return "an integer";
  else if constexpr (std::is_floating_point_v<T>)
    return "a number";
  else if constexpr (std::is_same_v<T, std::string>)
    return "a string";
  else
    return "a list, e.g. [1, 2]";
}

template <class T>
void read(const YAML::Node& node, const char* key, T& out, const std::string& section) {
  if (!present(node) || !node.IsMap()) return;
  const YAML::Node value = node[key];
  if (!value || !value.IsDefined()) return;
  const std::string name = key_name(section, key);
  if (value.IsNull()) {
    throw ConfigError("'" + name +
                      "' has no value (empty or null); give one, or delete the key to use the "
                      "default");
  }
  try {
    out = value.as<T>();
    return;
  } catch (const YAML::Exception&) {}
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (read_integral(value, out)) return;
  } else if constexpr (is_vector<T>::value) {
    using E = typename T::value_type;
    if constexpr (std::is_integral_v<E>) {
      if (value.IsSequence()) {
        T v;
        bool ok = true;
        for (const auto& item : value) {
          E e{};
          ok = ok && item.IsScalar() && read_integral(item, e);
          v.push_back(e);
        }
        if (ok) {
          out = std::move(v);
          return;
        }
      }
    }
  }
  std::string form = expected_form<T>();
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    form += " from " + std::to_string(std::numeric_limits<T>::min()) + " to " +
            std::to_string(std::numeric_limits<T>::max());
  }
  throw ConfigError("'" + name + "' has an invalid value '" + yaml_text(value) + "' (expected " + form + ")");
}

// yaml-cpp keeps the first of two equal keys in a map and drops the other without a word.
void check_duplicate_keys(const YAML::Node& node, const std::string& path, const std::string& file) {
  if (node.IsMap()) {
    std::map<std::string, int> seen;
    for (const auto& kv : node) {
      const std::string key = kv.first.Scalar();
      const std::string name = path.empty() ? key : path + "." + key;
      const int line = kv.first.Mark().line + 1;
      const auto [it, fresh] = seen.emplace(key, line);
      if (!fresh) {
        throw ConfigError(file + ": key '" + name + "' is given twice (line " + std::to_string(it->second) +
                          " and line " + std::to_string(line) + "); keep one of them");
      }
      check_duplicate_keys(kv.second, name, file);
    }
  } else if (node.IsSequence()) {
    for (std::size_t i = 0; i < node.size(); ++i) check_duplicate_keys(node[i], path + "[]", file);
  }
}

YAML::Node apply_override(YAML::Node root, const std::string& text) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ConfigError("override '" + text + "' must look like section.key=value (e.g. training.meta_steps=50)");
  }
  const std::string path = text.substr(0, eq);
  if (text.find_first_not_of(" \t", eq + 1) == std::string::npos) {
    throw ConfigError("override '" + text + "' has no value after '='; give one (e.g. " + path +
                      "=...), or drop the --set to keep the value of the config file");
  }
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

std::string num(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

template <class T>
std::string list_text(const std::vector<T>& v) {
  std::ostringstream s;
  s << "[";
  for (std::size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
  s << "]";
  return s.str();
}

// Range checks of every value, naming its key: components (learners, optimizers, families) check
// again, but their messages name themselves, not the key the user has to change.
void check_values(const RunConfig& c) {
  const BenchmarkConfig& b = c.benchmark;
  const tasks::DistributionConfig& d = c.distribution;
  const meta::LearnerOptions& lo = b.learner_options;
  auto at_least = [](const char* key, long long value, long long min) {
    if (value < min) {
      throw ConfigError(std::string(key) + " must be >= " + std::to_string(min) + ", got " + std::to_string(value));
    }
  };
  auto finite = [](const char* key, double value, double lo, double hi, bool lo_open, bool hi_open, const char* range) {
    const bool ok =
        std::isfinite(value) && (lo_open ? value > lo : value >= lo) && (hi_open ? value < hi : value <= hi);
    if (!ok) throw ConfigError(std::string(key) + " must be a finite number " + range + ", got " + num(value));
  };
  constexpr double inf = std::numeric_limits<double>::infinity();
  auto no_repeats = [](const char* key, const std::vector<std::string>& v) {
    std::set<std::string> seen;
    for (const auto& x : v) {
      if (!seen.insert(x).second) throw ConfigError(std::string(key) + " lists '" + x + "' twice");
    }
  };

  if (b.learners.empty()) {
    throw ConfigError("learners is empty; list at least one of: " + meta::learner_names_text());
  }
  no_repeats("learners", b.learners);
  if (d.families.empty()) {
    throw ConfigError("tasks.families is empty; list at least one of: " + tasks::family_names_text());
  }
  no_repeats("tasks.families", d.families);

  if (c.data.source == "simulator") {
    at_least("data.simulator.assets", c.data.simulator.assets, 1);
    at_least("data.simulator.exchanges", c.data.simulator.exchanges, 1);
    at_least("data.simulator.bars", c.data.simulator.bars, 2);
  }

  at_least("tasks.query_size", d.query_size, 1);
  at_least("tasks.horizon", d.horizons.front(), 1);
  at_least("tasks.stride", d.stride, 1);
  at_least("tasks.embargo", d.embargo, 0);
  finite("tasks.train_end", d.splits.train_end, 0.0, 1.0, true, true, "in (0, 1)");
  finite("tasks.validation_end", d.splits.validation_end, 0.0, 1.0, true, true, "in (0, 1)");
  if (!(d.splits.train_end < d.splits.validation_end)) {
    throw ConfigError("tasks.train_end (" + num(d.splits.train_end) + ") must be below tasks.validation_end (" +
                      num(d.splits.validation_end) + ")");
  }
  finite("tasks.direction_threshold", d.family.direction_threshold, 0.0, inf, false, true, ">= 0");
  finite("tasks.regime_trend_threshold", d.family.regime_trend_threshold, 0.0, inf, false, true, ">= 0");
  at_least("tasks.portfolio_assets", d.family.portfolio_assets, 1);
  {
    const std::string& r = d.family.rebalance;
    const bool count =
        !r.empty() && r.find_first_not_of("0123456789") == std::string::npos && std::atoll(r.c_str()) > 0;
    if (r != "daily" && r != "weekly" && !count) {
      throw ConfigError("tasks.rebalance must be daily, weekly or a positive bar count (e.g. 12), got '" + r + "'");
    }
  }

  if (c.features.is_raw_window()) at_least("tasks.raw_window.length", c.features.raw_window.length, 2);
  if (b.model != "mlp" && b.model != "temporal") {
    throw ConfigError("training.model must be mlp or temporal, got '" + b.model + "'");
  }
  if (b.model == "temporal") {
    if (!c.features.is_raw_window()) {
      throw ConfigError(
          "training.model is temporal, which reads raw windows, but tasks.features is indicators; set "
          "tasks.features: raw_window (or training.model: mlp)");
    }
    at_least("training.temporal.channels", b.temporal.channels, 1);
    at_least("training.temporal.layers", b.temporal.layers, 1);
    at_least("training.temporal.kernel", b.temporal.kernel, 1);
    if (b.temporal.layers > 30) {
      throw ConfigError("training.temporal.layers must be <= 30 (the last dilation is 2^(layers-1)), got " +
                        std::to_string(b.temporal.layers));
    }
  }
  at_least("training.meta_steps", b.meta_steps, 0);
  at_least("training.meta_batch", b.meta_batch, 1);
  at_least("training.train_shots", b.train_shots, 1);
  if (b.outer_optimizer != "sgd" && b.outer_optimizer != "adam" && b.outer_optimizer != "adamw") {
    throw ConfigError("training.outer_optimizer must be sgd, adam or adamw, got '" + b.outer_optimizer + "'");
  }
  finite("training.outer_lr", b.outer_lr, 0.0, inf, true, true, "> 0");
  finite("training.clip_norm", b.clip_norm, 0.0, inf, false, true, ">= 0 (0 = no clipping)");
  finite("training.inner_lr", lo.maml.inner_lr, 0.0, inf, true, true, "> 0");
  at_least("training.inner_steps", lo.maml.inner_steps, 1);
  at_least("training.reptile_steps", lo.reptile.inner_steps, 1);
  if (b.hidden.empty()) throw ConfigError("training.hidden must list at least one layer width (e.g. [64, 64])");
  for (std::int64_t h : b.hidden) {
    if (h < 1) throw ConfigError("training.hidden: every layer width must be >= 1, got " + list_text(b.hidden));
  }
  try {
    (void)nn::parse_activation(b.activation);
  } catch (const Error& e) {
    throw ConfigError("training.activation: " + std::string(e.what()));
  }
  if (b.diagnose_every < 1) {
    throw ConfigError(
        "training.diagnose_every must be >= 1 (meta-steps between gradient diagnostics; a value "
        "above training.meta_steps runs them at the first and last step only), got " +
        std::to_string(b.diagnose_every));
  }
  at_least("training.validate_every", b.validate_every, 0);  // 0: no checkpoint selection
  at_least("training.validation_episodes", b.validation_episodes, 1);

  if (b.shots.empty()) throw ConfigError("evaluation.shots is empty (e.g. [1, 5, 10])");
  for (int v : b.shots) {
    if (v < 1) throw ConfigError("evaluation.shots: every value must be >= 1, got " + list_text(b.shots));
  }
  if (b.steps.empty()) throw ConfigError("evaluation.steps is empty (e.g. [1, 5, 10])");
  for (int v : b.steps) {
    if (v < 1) throw ConfigError("evaluation.steps: every value must be >= 1, got " + list_text(b.steps));
  }
  at_least("evaluation.runs", b.runs, 1);
  at_least("evaluation.episodes", b.episodes, 2);  // paired tests need two pairs
  finite("evaluation.baseline_lr", b.baseline_lr, 0.0, inf, true, true, "> 0");
  at_least("evaluation.bootstrap_resamples", b.bootstrap_resamples, 1);
  finite("evaluation.alpha", b.alpha, 0.0, 1.0, true, true, "in (0, 1) (the significance level, e.g. 0.05)");
  finite("evaluation.fee_rate", b.trading.fee_rate, 0.0, 1.0, false, true, "in [0, 1)");
  finite("evaluation.slippage_rate", b.trading.slippage_rate, 0.0, 1.0, false, true, "in [0, 1)");
  if (b.headline_shots != 0 && std::find(b.shots.begin(), b.shots.end(), b.headline_shots) == b.shots.end()) {
    throw ConfigError("evaluation.headline_shots is " + std::to_string(b.headline_shots) + " but evaluation.shots " +
                      list_text(b.shots) + " does not list it (use one of them, or 0 for the middle value)");
  }
  at_least("evaluation.selection_episodes", b.selection_episodes, 0);
  at_least("evaluation.walk_forward.readapt_every", b.walk_forward.readapt_every, 1);
  at_least("evaluation.walk_forward.resamples", b.walk_forward.resamples, 10);
  if (b.walk_forward.shots != 0 && std::find(b.shots.begin(), b.shots.end(), b.walk_forward.shots) == b.shots.end()) {
    throw ConfigError("evaluation.walk_forward.shots is " + std::to_string(b.walk_forward.shots) +
                      " but evaluation.shots " + list_text(b.shots) + " does not list it (or 0: the middle value)");
  }
  if (b.walk_forward.block_length != 0.0) {
    finite("evaluation.walk_forward.block_length", b.walk_forward.block_length, 1.0, inf, false, true,
           ">= 1 day (or 0: chosen automatically, Politis-White)");
  }

  at_least("limits.max_parameters", c.limits.max_parameters, 1);
  at_least("limits.max_rows", c.limits.max_rows, 1);
  at_least("limits.max_inner_steps_x_episodes", c.limits.max_inner_steps_x_episodes, 1);
  at_least("limits.max_bars", c.limits.max_bars, 1);
}

// Products in double: the factors can be up to 2^63 each.
void within(double amount, std::int64_t limit, const std::string& what, const char* limit_key, const char* fix) {
  if (amount > static_cast<double>(limit)) {
    std::ostringstream s;
    s.precision(15);
    s << what << " = " << amount << ", above " << limit_key << " (" << limit << "); " << fix << ", or raise "
      << limit_key;
    throw ConfigError(s.str());
  }
}

double mlp_parameters(double inputs, const std::vector<std::int64_t>& hidden, double outputs) {
  double total = 0.0, in = inputs;
  for (std::int64_t h : hidden) {
    total += (in + 1.0) * static_cast<double>(h);
    in = static_cast<double>(h);
  }
  return total + (in + 1.0) * outputs;
}

// nn::TemporalEncoder's parameter count: conv layers (in * kernel + 1) x channels, then the head
// (channels + 1) x outputs (outputs 0: the embedding variant, no head).
double temporal_parameters(const nn::TemporalSpec& t, double in_channels, double outputs) {
  const double ch = static_cast<double>(t.channels), k = static_cast<double>(t.kernel);
  double total = 0.0, in = in_channels;
  for (std::int64_t l = 0; l < t.layers; ++l) {
    total += (in * k + 1.0) * ch;
    in = ch;
  }
  return total + (ch + 1.0) * outputs;
}

void check_limits(const RunConfig& c) {
  const BenchmarkConfig& b = c.benchmark;
  const ResourceLimits& l = c.limits;
  const meta::LearnerOptions& lo = b.learner_options;
  if (c.data.source == "simulator") {
    const auto& sim = c.data.simulator;
    within(static_cast<double>(sim.bars) * sim.assets * sim.exchanges, l.max_bars,
           "data.simulator.bars (" + std::to_string(sim.bars) + ") x assets (" + std::to_string(sim.assets) +
               ") x exchanges (" + std::to_string(sim.exchanges) + ")",
           "limits.max_bars", "simulate fewer bars");
  }
  // At least one input feature and one output: the exact count is checked once the features are known.
  if (b.model == "temporal") {
    within(temporal_parameters(b.temporal, 1, 1), l.max_parameters,
           "parameters per learner with training.temporal (channels " + std::to_string(b.temporal.channels) +
               ", layers " + std::to_string(b.temporal.layers) + ", kernel " + std::to_string(b.temporal.kernel) +
               ") (at least)",
           "limits.max_parameters", "use fewer channels or layers");
  } else {
    within(mlp_parameters(1, b.hidden, 1), l.max_parameters,
           "parameters per learner with training.hidden " + list_text(b.hidden) + " (at least)",
           "limits.max_parameters", "use narrower or fewer layers");
  }
  const double query = static_cast<double>(c.distribution.query_size);
  within(static_cast<double>(b.meta_batch) * (static_cast<double>(b.train_shots) + query), l.max_rows,
         "training.meta_batch (" + std::to_string(b.meta_batch) + ") x (training.train_shots (" +
             std::to_string(b.train_shots) + ") + tasks.query_size (" + std::to_string(c.distribution.query_size) +
             ")) task rows per meta-step",
         "limits.max_rows", "lower training.meta_batch");
  const int max_shots = *std::max_element(b.shots.begin(), b.shots.end());
  within(static_cast<double>(b.episodes) * (max_shots + query), l.max_rows,
         "evaluation.episodes (" + std::to_string(b.episodes) + ") x (largest evaluation.shots (" +
             std::to_string(max_shots) + ") + tasks.query_size) test rows per shots value",
         "limits.max_rows", "lower evaluation.episodes");
  if (b.validate_every > 0) {
    const int headline = b.headline_shots != 0 ? b.headline_shots : b.shots[b.shots.size() / 2];
    within(static_cast<double>(b.validation_episodes) * (headline + query), l.max_rows,
           "training.validation_episodes (" + std::to_string(b.validation_episodes) + ") x (headline shots (" +
               std::to_string(headline) + ") + tasks.query_size) validation rows held while training",
           "limits.max_rows", "lower training.validation_episodes");
  }
  const std::int64_t inner = std::max(lo.maml.inner_steps, lo.reptile.inner_steps);
  within(static_cast<double>(inner) * static_cast<double>(b.meta_batch), l.max_inner_steps_x_episodes,
         "training.inner_steps / reptile_steps (" + std::to_string(inner) + ") x training.meta_batch (" +
             std::to_string(b.meta_batch) + ") adaptation steps per meta-step",
         "limits.max_inner_steps_x_episodes", "lower training.inner_steps or training.meta_batch");
  double steps = 0.0;
  for (int s : b.steps) steps += s;
  within(steps * b.episodes * static_cast<double>(b.shots.size()) * b.runs, l.max_inner_steps_x_episodes,
         "sum of evaluation.steps " + list_text(b.steps) + " x evaluation.episodes (" + std::to_string(b.episodes) +
             ") x " + std::to_string(b.shots.size()) + " evaluation.shots values x evaluation.runs (" +
             std::to_string(b.runs) + ") adaptation steps per learner",
         "limits.max_inner_steps_x_episodes", "lower evaluation.steps or evaluation.episodes");
}

YAML::Node scalar(const std::string& v) { return YAML::Node(v); }
YAML::Node scalar(double v) { return YAML::Node(num(v)); }
template <class T>
YAML::Node sequence(const std::vector<T>& v) {
  YAML::Node n(YAML::NodeType::Sequence);
  for (const auto& x : v) {
    if constexpr (std::is_floating_point_v<T>)
      n.push_back(num(x));
    else
      n.push_back(x);
  }
  n.SetStyle(YAML::EmitterStyle::Flow);
  return n;
}

// Copies keys of `given` that `into` lacks (keys the resolved writer does not know yet).
void merge_missing(YAML::Node into, const YAML::Node& given) {
  if (!given.IsMap() || !into.IsMap()) return;
  for (const auto& kv : given) {
    const std::string key = kv.first.Scalar();
    if (!into[key])
      into[key] = YAML::Clone(kv.second);
    else if (kv.second.IsMap())
      merge_missing(into[key], kv.second);
  }
}

void flatten_into(const YAML::Node& node, const std::string& path, std::map<std::string, std::string>& out) {
  if (node.IsMap()) {
    for (const auto& kv : node)
      flatten_into(kv.second, path.empty() ? kv.first.Scalar() : path + "." + kv.first.Scalar(), out);
  } else if (!path.empty() && !node.IsNull()) {
    out[path] = node.IsScalar() ? node.Scalar() : yaml_text(node);
  }
}

// What the families need of the market, checked before any task is built so the message names the
// key to change instead of failing inside a family (portfolio: score shapes; arbitrage: "needs two
// series").
void check_market_fits(const RunConfig& config, const tasks::Market& market,
                       const std::vector<std::string>& unknown_exchange) {
  const auto& families = config.distribution.families;
  auto uses = [&](const char* f) { return std::find(families.begin(), families.end(), f) != families.end(); };
  std::vector<std::string> symbols;
  for (const auto& s : market.symbols()) {
    const auto& wanted = config.distribution.symbols;
    if (wanted.empty() || std::find(wanted.begin(), wanted.end(), s) != wanted.end()) symbols.push_back(s);
  }
  std::string symbol_list;
  for (const auto& s : symbols) symbol_list += (symbol_list.empty() ? "" : ", ") + s;
  const std::string source = config.data.source == "simulator" ? "data.simulator.assets" : "data.files";
  const int assets = config.distribution.family.portfolio_assets;
  if (uses("portfolio") && static_cast<int>(symbols.size()) < assets) {
    throw ConfigError("tasks.portfolio_assets is " + std::to_string(assets) + " but the market has " +
                      std::to_string(symbols.size()) + " symbol" + (symbols.size() == 1 ? "" : "s") +
                      (symbol_list.empty() ? "" : " (" + symbol_list + ")") + "; set tasks.portfolio_assets to " +
                      std::to_string(std::max<std::size_t>(1, symbols.size())) + " or fewer, or load more symbols (" +
                      source + (config.distribution.symbols.empty() ? "" : ", tasks.symbols") + ")");
  }
  if (uses("arbitrage")) {
    bool any = false;
    std::string seen;
    for (const auto& s : symbols) {
      const auto ex = market.exchanges_of(s);
      any = any || ex.size() >= 2;
      std::string list;
      for (const auto& e : ex) list += (list.empty() ? "" : "+") + e;
      seen += (seen.empty() ? "" : ", ") + s + " on " + list;
    }
    if (!any) {
      std::string message =
          "tasks.families includes arbitrage, which needs one symbol quoted on >= 2 exchanges, but "
          "the market has " +
          (seen.empty() ? std::string("no symbol") : seen);
      if (!unknown_exchange.empty()) {
        std::string files;
        for (const auto& f : unknown_exchange) files += (files.empty() ? "" : ", ") + f;
        message += "; the exchange of " + files +
                   " was inferred as 'unknown' (the file name names no known "
                   "exchange): name it per file in data.files, e.g. - {path: " +
                   unknown_exchange.front() + ", exchange: binance}";
      } else if (config.data.source == "simulator") {
        message += "; set data.simulator.exchanges >= 2";
      } else {
        message += "; add the same symbol from a second exchange to data.files";
      }
      throw ConfigError(message);
    }
  }
}

// Section `sampler:` (how training builds its tasks; no key changes which tasks, except the
// filters min_quality and balance_difficulty).
void read_sampler(const YAML::Node& node, tasks::SamplerConfig& s) {
  check_keys(node, "sampler", {"workers", "prefetch", "cache_dir", "balance_difficulty", "min_quality"});
  read(node, "workers", s.workers, "sampler");
  read(node, "prefetch", s.prefetch, "sampler");
  read(node, "cache_dir", s.cache_dir, "sampler");
  read(node, "balance_difficulty", s.balance_difficulty, "sampler");
  read(node, "min_quality", s.min_quality, "sampler");
  if (s.workers < 0 || s.workers > 256) {
    throw ConfigError("sampler.workers must be from 0 to 256, got " + std::to_string(s.workers) +
                      " (0 builds tasks on the training thread; about the number of idle cores is enough)");
  }
  if (s.prefetch < 0 || s.prefetch > 4096) {
    throw ConfigError("sampler.prefetch must be from 0 to 4096, got " + std::to_string(s.prefetch) +
                      " (tasks built ahead of the meta-batch; a few meta-batches' worth is enough)");
  }
  if (!std::isfinite(s.min_quality) || s.min_quality < 0.0 || s.min_quality > 1.0) {
    throw ConfigError("sampler.min_quality must be a number in [0, 1], got " + num(s.min_quality) +
                      " (tasks with a lower quality score are skipped; 0 keeps every task)");
  }
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
  check_duplicate_keys(root, "", name);
  for (const auto& o : overrides) root = apply_override(root, o);

  const YAML::Node& croot = root;
  check_keys(root, "",
             {"seed", "out", "learners", "data", "tasks", "training", "sampler", "evaluation", "limits"});
  RunConfig c;
  BenchmarkConfig& b = c.benchmark;
  b.learners = meta::learner_names();
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
    if (!data["files"].IsSequence())
      throw ConfigError("data.files must be a list of paths or {path, exchange, ...} maps");
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
  check_keys(t, "tasks",
             {"families", "symbols", "query_size", "horizon", "stride", "embargo", "train_end", "validation_end",
              "holdout_symbols", "direction_threshold", "regime_trend_threshold", "portfolio_assets", "rebalance",
              "features", "raw_window"});
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
  std::string feature_set = tasks::feature_set_name(c.features.set);
  read(t, "features", feature_set, "tasks");
  if (feature_set != "indicators" && feature_set != "raw_window") {
    throw ConfigError("tasks.features must be indicators or raw_window, got '" + feature_set + "'");
  }
  c.features.set = tasks::parse_feature_set(feature_set);
  const YAML::Node rw = present(t) ? t["raw_window"] : YAML::Node();
  check_keys(rw, "tasks.raw_window", {"length"});
  read(rw, "length", c.features.raw_window.length, "tasks.raw_window");

  const YAML::Node tr = croot["training"];
  check_keys(tr, "training",
             {"meta_steps", "meta_batch", "train_shots", "outer_optimizer", "outer_lr", "clip_norm", "inner_lr",
              "inner_steps", "first_order", "recompute_inner", "reptile_steps", "model", "hidden", "temporal",
              "activation", "diagnose_every", "validate_every", "validation_episodes", "select_best"});
  b.meta_steps = 1000;
  b.meta_batch = 8;
  b.hidden = {64, 64};
  read(tr, "meta_steps", b.meta_steps, "training");
  read(tr, "meta_batch", b.meta_batch, "training");
  read(tr, "train_shots", b.train_shots, "training");
  read(tr, "outer_optimizer", b.outer_optimizer, "training");
  read(tr, "outer_lr", b.outer_lr, "training");
  read(tr, "clip_norm", b.clip_norm, "training");
  read(tr, "model", b.model, "training");
  read(tr, "hidden", b.hidden, "training");
  const YAML::Node tm = present(tr) ? tr["temporal"] : YAML::Node();
  check_keys(tm, "training.temporal", {"channels", "layers", "kernel"});
  read(tm, "channels", b.temporal.channels, "training.temporal");
  read(tm, "layers", b.temporal.layers, "training.temporal");
  read(tm, "kernel", b.temporal.kernel, "training.temporal");
  read(tr, "activation", b.activation, "training");
  read(tr, "diagnose_every", b.diagnose_every, "training");
  read(tr, "validate_every", b.validate_every, "training");
  read(tr, "validation_episodes", b.validation_episodes, "training");
  read(tr, "select_best", b.select_best, "training");
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
  check_keys(ev, "evaluation",
             {"shots", "steps", "runs", "episodes", "baseline_lr", "bootstrap_resamples", "alpha", "fee_rate",
              "slippage_rate", "headline_shots", "selection_episodes", "verdict_against", "walk_forward"});
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
  const YAML::Node wf = present(ev) ? ev["walk_forward"] : YAML::Node();
  check_keys(wf, "evaluation.walk_forward", {"enabled", "readapt_every", "shots", "block_length", "resamples"});
  read(wf, "enabled", b.walk_forward.enabled, "evaluation.walk_forward");
  read(wf, "readapt_every", b.walk_forward.readapt_every, "evaluation.walk_forward");
  read(wf, "shots", b.walk_forward.shots, "evaluation.walk_forward");
  read(wf, "block_length", b.walk_forward.block_length, "evaluation.walk_forward");
  read(wf, "resamples", b.walk_forward.resamples, "evaluation.walk_forward");

  read_sampler(croot["sampler"], c.sampler);

  const YAML::Node lim = croot["limits"];
  check_keys(lim, "limits", {"max_parameters", "max_rows", "max_inner_steps_x_episodes", "max_bars"});
  read(lim, "max_parameters", c.limits.max_parameters, "limits");
  read(lim, "max_rows", c.limits.max_rows, "limits");
  read(lim, "max_inner_steps_x_episodes", c.limits.max_inner_steps_x_episodes, "limits");
  read(lim, "max_bars", c.limits.max_bars, "limits");

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
  for (const auto& f : d.families) {
    if (tasks::find_family(f) == nullptr) {
      throw ConfigError("tasks.families: unknown family '" + f + "'; expected some of: " + tasks::family_names_text());
    }
  }
  for (const auto& l : b.learners) {
    if (meta::find_learner(l) == nullptr) {
      throw ConfigError("learners: unknown learner '" + l + "'; expected some of: " + meta::learner_names_text());
    }
  }
  check_values(c);
  check_limits(c);
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

std::string resolved_config_path(const std::string& out_dir) {
  return (std::filesystem::path(out_dir) / kResolvedConfigName).string();
}

std::string resolved_config_yaml(const RunConfig& c) {
  const BenchmarkConfig& b = c.benchmark;
  const tasks::DistributionConfig& d = c.distribution;
  const meta::LearnerOptions& lo = b.learner_options;
  YAML::Node root(YAML::NodeType::Map);
  root["seed"] = b.seed;
  root["out"] = b.out_dir;
  root["learners"] = sequence(b.learners);
  YAML::Node data = root["data"];
  data["source"] = c.data.source;
  data["root"] = c.data.root;
  YAML::Node files(YAML::NodeType::Sequence);
  for (const DataFile& f : c.data.files) {
    YAML::Node e;
    e["path"] = f.path;
    e["exchange"] = f.exchange;
    e["symbol"] = f.symbol;
    e["interval"] = f.interval;
    e.SetStyle(YAML::EmitterStyle::Flow);
    files.push_back(e);
  }
  data["files"] = files;
  data["align"] = c.data.align;
  data["policy"] = c.data.policy;
  YAML::Node sim = data["simulator"];
  sim["seed"] = c.data.simulator.seed;
  sim["assets"] = c.data.simulator.assets;
  sim["exchanges"] = c.data.simulator.exchanges;
  sim["bars"] = c.data.simulator.bars;
  sim["cross_pairs"] = c.data.simulator.cross_pairs;
  YAML::Node t = root["tasks"];
  t["families"] = sequence(d.families);
  t["symbols"] = sequence(d.symbols);
  t["query_size"] = d.query_size;
  t["horizon"] = d.horizons.front();
  t["stride"] = d.stride;
  t["embargo"] = d.embargo;
  t["train_end"] = scalar(d.splits.train_end);
  t["validation_end"] = scalar(d.splits.validation_end);
  t["holdout_symbols"] = sequence(d.splits.holdout_symbols);
  t["direction_threshold"] = scalar(d.family.direction_threshold);
  t["regime_trend_threshold"] = scalar(d.family.regime_trend_threshold);
  t["portfolio_assets"] = d.family.portfolio_assets;
  t["rebalance"] = d.family.rebalance;
  t["features"] = tasks::feature_set_name(c.features.set);
  t["raw_window"]["length"] = c.features.raw_window.length;
  YAML::Node tr = root["training"];
  tr["meta_steps"] = b.meta_steps;
  tr["meta_batch"] = b.meta_batch;
  tr["train_shots"] = b.train_shots;
  tr["outer_optimizer"] = b.outer_optimizer;
  tr["outer_lr"] = scalar(b.outer_lr);
  tr["clip_norm"] = scalar(b.clip_norm);
  tr["inner_lr"] = scalar(lo.maml.inner_lr);
  tr["inner_steps"] = lo.maml.inner_steps;
  tr["first_order"] = lo.maml.first_order;
  tr["recompute_inner"] = lo.maml.recompute_inner;
  tr["reptile_steps"] = lo.reptile.inner_steps;
  tr["model"] = b.model;
  tr["hidden"] = sequence(b.hidden);
  tr["temporal"]["channels"] = b.temporal.channels;
  tr["temporal"]["layers"] = b.temporal.layers;
  tr["temporal"]["kernel"] = b.temporal.kernel;
  tr["activation"] = b.activation;
  tr["diagnose_every"] = b.diagnose_every;
  tr["validate_every"] = b.validate_every;
  tr["validation_episodes"] = b.validation_episodes;
  tr["select_best"] = b.select_best;
  YAML::Node sm = root["sampler"];
  sm["workers"] = c.sampler.workers;
  sm["prefetch"] = c.sampler.prefetch;
  sm["cache_dir"] = c.sampler.cache_dir;
  sm["balance_difficulty"] = c.sampler.balance_difficulty;
  sm["min_quality"] = scalar(c.sampler.min_quality);
  YAML::Node ev = root["evaluation"];
  ev["shots"] = sequence(b.shots);
  ev["steps"] = sequence(b.steps);
  ev["runs"] = b.runs;
  ev["episodes"] = b.episodes;
  ev["baseline_lr"] = scalar(b.baseline_lr);
  ev["bootstrap_resamples"] = b.bootstrap_resamples;
  ev["alpha"] = scalar(b.alpha);
  ev["fee_rate"] = scalar(b.trading.fee_rate);
  ev["slippage_rate"] = scalar(b.trading.slippage_rate);
  ev["headline_shots"] = b.headline_shots;
  ev["selection_episodes"] = b.selection_episodes;
  ev["verdict_against"] = sequence(b.verdict_against);
  YAML::Node wf = ev["walk_forward"];
  wf["enabled"] = b.walk_forward.enabled;
  wf["readapt_every"] = b.walk_forward.readapt_every;
  wf["shots"] = b.walk_forward.shots;
  wf["block_length"] = scalar(b.walk_forward.block_length);
  wf["resamples"] = b.walk_forward.resamples;
  YAML::Node lim = root["limits"];
  lim["max_parameters"] = c.limits.max_parameters;
  lim["max_rows"] = c.limits.max_rows;
  lim["max_inner_steps_x_episodes"] = c.limits.max_inner_steps_x_episodes;
  lim["max_bars"] = c.limits.max_bars;
  if (!c.source_text.empty()) {
    try {
      merge_missing(root, YAML::Load(c.source_text));
    } catch (const YAML::Exception&) {}
  }
  YAML::Emitter e;
  e << root;
  return "# Written by metatape train: every key with the value these checkpoints were trained with.\n"
         "# metatape eval reads it; edit nothing here (train again into another --out instead).\n" +
         std::string(e.c_str()) + "\n";
}

std::map<std::string, std::string> flatten_config(const std::string& yaml_text_in) {
  std::map<std::string, std::string> out;
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text_in);
  } catch (const YAML::Exception& e) {
    throw ConfigError("not valid YAML at line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  flatten_into(root, "", out);
  return out;
}

bool is_evaluation_key(const std::string& key) {
  return key.rfind("evaluation.", 0) == 0 || key.rfind("limits.", 0) == 0 || key == "out" || key == "data.root" ||
         key == "sampler.workers" || key == "sampler.prefetch" || key == "sampler.cache_dir";
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
    check_market_fits(config, market, {});
  } else {
    std::vector<tasks::Series> series;
    std::string labels;
    std::vector<std::string> unknown_exchange;  // files whose exchange was inferred as "unknown"
    for (const DataFile& f : config.data.files) {
      std::filesystem::path p(f.path);
      if (p.is_relative() && !config.data.root.empty()) p = std::filesystem::path(config.data.root) / p;
      if (!std::filesystem::exists(p)) {
        throw DataError("metatape: data: file not found: " + p.string() + " (check data.root / --data and data.files)");
      }
      if (!std::filesystem::is_regular_file(p)) {
        throw DataError("metatape: data: " + p.string() + " is " +
                        (std::filesystem::is_directory(p) ? "a directory" : "not a regular file") +
                        "; data.files lists market files (check data.root / --data and data.files)");
      }
      tasks::LoadOptions lo;
      lo.policy = config.data.policy == "fail"   ? tasks::ValidationPolicy::fail
                  : config.data.policy == "drop" ? tasks::ValidationPolicy::drop
                                                 : tasks::ValidationPolicy::repair;
      lo.exchange = f.exchange;
      lo.symbol = f.symbol;
      lo.interval = f.interval;
      try {
        tasks::LoadResult r = tasks::load_series(p.string(), lo);
        labels += (labels.empty() ? "" : ", ") + r.series.label();
        if (r.series.exchange == "unknown") unknown_exchange.push_back(p.string());
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
    check_market_fits(config, market, unknown_exchange);
    desc = "market files under " + (config.data.root.empty() ? std::string(".") : config.data.root) + ": " + labels +
           " (" + std::to_string(market.rows()) + " aligned bars)";
  }
  auto prepared = tasks::PreparedMarket::make(std::move(market), config.features);
  MarketSourceOptions options;
  options.train_shots = config.benchmark.train_shots;
  options.query_size = config.distribution.query_size;
  options.sampler = config.sampler;
  if (description != nullptr) *description = desc;
  std::vector<FamilySource> sources;
  try {
    sources = make_market_sources(prepared, config.distribution, options);
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {
    throw ConfigError(std::string("tasks: ") + e.what());
  }
  const BenchmarkConfig& b = config.benchmark;
  for (const FamilySource& f : sources) {
    for (const std::string& kind : b.learners) {
      if (b.model == "temporal") {
        const double channels = f.window > 0 ? static_cast<double>(f.feature_dim / f.window) : 1.0;
        within(
            temporal_parameters(b.temporal, channels, is_metric_learner(kind) ? 0.0 : static_cast<double>(f.outputs)),
            config.limits.max_parameters,
            kind + " on " + f.name + " (" + std::to_string(f.feature_dim) + " features, training.temporal) parameters",
            "limits.max_parameters", "use fewer channels or layers");
        continue;
      }
      const double outputs =
          is_metric_learner(kind) ? static_cast<double>(b.hidden.back()) : static_cast<double>(f.outputs);
      std::vector<std::int64_t> hidden = b.hidden;
      if (is_metric_learner(kind)) hidden.pop_back();  // the last hidden layer is the embedding
      within(mlp_parameters(static_cast<double>(f.feature_dim), hidden, outputs), config.limits.max_parameters,
             kind + " on " + f.name + " (" + std::to_string(f.feature_dim) + " features, training.hidden " +
                 list_text(b.hidden) + ") parameters",
             "limits.max_parameters", "use narrower or fewer layers");
    }
  }
  return sources;
}

}  // namespace metatape::eval
