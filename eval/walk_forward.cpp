#include "eval/walk_forward.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <sstream>

#include "kernels/error.h"
#include "tasks/families.h"

namespace metatape::eval {
namespace {

constexpr std::int64_t kDayMs = 86'400'000;
constexpr double kDaysPerYear = 365.0;

std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// Where the walk runs on the market axis, the same for every method of a family.
struct WalkPlan {
  std::int64_t support = 0, stride = 1, horizon = 1, embargo = 1, per_block = 1;
  std::int64_t first = 0;          // d0
  std::int64_t last_decision = 0;  // last decision row
  std::int64_t last_bar = 0;       // last traded bar (needs close[last_bar + 1])
};

void check_family(const FamilySource& family) {
  if (family.name != "price_direction" && family.name != "market_regime") {
    fail("walk_forward: family '" + family.name +
         "' is not traded (walk-forward runs on price_direction and market_regime)");
  }
  if (!family.market || !family.family || !family.episode_at) {
    fail("walk_forward: family '" + family.name +
         "' has no market (walk-forward needs a market source, not synthetic tasks)");
  }
}

WalkPlan plan_walk(const FamilySource& family, const WalkForwardConfig& config) {
  check_family(family);
  if (config.readapt_every < 1)
    fail("walk_forward: readapt_every must be >= 1 bar, got " + std::to_string(config.readapt_every));
  if (config.shots < 1) fail("walk_forward: shots must be >= 1, got " + std::to_string(config.shots));
  if (config.steps < 0) fail("walk_forward: steps must be >= 0, got " + std::to_string(config.steps));
  if (config.resamples < 10) fail("walk_forward: resamples must be >= 10, got " + std::to_string(config.resamples));
  if (!(config.block_length >= 0.0) || (config.block_length > 0.0 && config.block_length < 1.0)) {
    fail("walk_forward: block_length must be 0 (automatic) or >= 1 day, got " + std::to_string(config.block_length));
  }
  if (!(config.confidence > 0.0 && config.confidence < 1.0)) {
    fail("walk_forward: confidence must lie in (0, 1), got " + std::to_string(config.confidence));
  }
  WalkPlan p;
  p.support = support_rows(family, config.shots);
  p.stride = std::max<std::int64_t>(1, family.stride);
  p.horizon = std::max<std::int64_t>(1, family.horizon);
  p.embargo = family.embargo == 0 ? p.horizon : family.embargo;
  p.per_block = (config.readapt_every + p.stride - 1) / p.stride;
  const auto [t0, t1_split] = family.test_rows;
  const std::int64_t t1 = std::min(t1_split, family.market->market.rows());
  const std::int64_t min_begin = family.family->min_begin(*family.market);
  const std::int64_t fits = min_begin + (p.support - 1) * p.stride + 1 + p.embargo;
  p.first = std::max(t0, fits);
  p.last_decision = t1 - 1 - p.horizon;
  if (p.last_decision < p.first) {
    fail("walk_forward: the test split has rows [" + std::to_string(t0) + ", " + std::to_string(t1) +
         ") but the first " + family.name + " decision row with " + std::to_string(p.support) + " support rows is " +
         std::to_string(p.first) + " and the last one whose " + std::to_string(p.horizon) + "-bar label fits is " +
         std::to_string(p.last_decision) +
         " (use more data, wider test split, fewer walk-forward shots or a shorter horizon)");
  }
  const std::int64_t last_query = p.first + (p.last_decision - p.first) / p.stride * p.stride;
  p.last_bar = std::min(last_query + p.stride - 1, t1 - 2);
  return p;
}

std::vector<int> assets_of(const FamilySource& family) {
  std::vector<int> out;
  for (const auto& g : family.series_groups) {
    if (g.size() == 1) out.push_back(g[0]);
  }
  if (out.empty()) fail("walk_forward: family '" + family.name + "' has no single-series asset");
  return out;
}

std::string asset_name(const FamilySource& family, int series) {
  const auto& s = family.market->market.series.at(static_cast<std::size_t>(series));
  return s.symbol + "@" + s.exchange;
}

std::string iso_day(std::int64_t day_ms) {
  const std::time_t t = static_cast<std::time_t>(floor_div(day_ms, 1000));
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
  return buf;
}

// The curve of per-bar positions on bars plan.first .. plan.last_bar of one series: costs, daily
// compounding and every metric.
EquityCurve stitch(const FamilySource& family, int series, const WalkPlan& plan, std::vector<double> positions,
                   const WalkForwardConfig& config) {
  const auto& market = family.market->market;
  const auto& close = market.series.at(static_cast<std::size_t>(series)).close;
  const std::size_t bars = positions.size();
  if (bars != static_cast<std::size_t>(plan.last_bar - plan.first + 1))
    fail("walk_forward: internal: bar count mismatch");
  EquityCurve c;
  c.family = family.name;
  c.series = series;
  c.asset = asset_name(family, series);
  c.shots = config.shots;
  c.steps = config.steps;
  c.readapt_every = plan.per_block * plan.stride;
  c.first_row = plan.first;
  c.last_row = plan.last_bar;
  std::vector<double> simple(bars);
  for (std::size_t i = 0; i < bars; ++i) {
    const auto t = static_cast<std::size_t>(plan.first) + i;
    simple[i] = close[t + 1] / close[t] - 1.0;
    c.bar_time_ms.push_back(market.time_ms[t]);
  }
  c.bar_returns = net_returns(positions, simple, config.trading);
  double traded = 0.0, previous = 0.0;
  for (double x : positions) {
    traded += std::abs(x - previous);
    previous = x;
  }
  traded += std::abs(previous);
  c.turnover = traded / static_cast<double>(bars);
  c.positions = std::move(positions);

  for (std::size_t i = 0; i < bars; ++i) {
    const std::int64_t day = floor_div(market.time_ms[static_cast<std::size_t>(plan.first) + i + 1], kDayMs) * kDayMs;
    if (c.day_ms.empty() || c.day_ms.back() != day) {
      c.day_ms.push_back(day);
      c.daily_returns.push_back(0.0);
    }
    c.daily_returns.back() = (1.0 + c.daily_returns.back()) * (1.0 + c.bar_returns[i]) - 1.0;
  }
  double equity = 1.0, peak = 1.0, downside = 0.0;
  for (double r : c.daily_returns) {
    equity *= 1.0 + r;
    peak = std::max(peak, equity);
    c.equity.push_back(equity);
    c.drawdown.push_back((peak - equity) / peak);
    c.max_drawdown = std::max(c.max_drawdown, c.drawdown.back());
    if (r < 0) downside += r * r;
  }
  c.total_return = equity - 1.0;
  const double annual = std::sqrt(kDaysPerYear);
  if (c.daily_returns.size() >= 2) {
    const ReturnMoments m = return_moments(c.daily_returns);
    c.sharpe_daily = m.sd > 0.0 ? m.mean / m.sd : 0.0;
    c.sharpe = c.sharpe_daily * annual;
    const double n = static_cast<double>(c.daily_returns.size());
    c.sortino = downside > 0.0 ? m.mean / std::sqrt(downside / n) * annual : 0.0;
    c.block_length = config.block_length > 0 ? config.block_length : automatic_block_length(c.daily_returns);
    c.resamples = config.resamples;
    const Interval ci =
        sharpe_bootstrap_interval(c.daily_returns, c.block_length, config.resamples,
                                  mix(config.seed ^ mix(static_cast<std::uint64_t>(series) + 17)), config.confidence);
    c.sharpe_ci = {ci.estimate * annual, ci.low * annual, ci.high * annual};
  }
  c.deflated.trials = 0;
  return c;
}

std::vector<EquityCurve> constant_curves(const FamilySource& family, const WalkForwardConfig& config, double position,
                                         const std::string& name) {
  const WalkPlan plan = plan_walk(family, config);
  std::vector<EquityCurve> out;
  for (int series : assets_of(family)) {
    EquityCurve c =
        stitch(family, series, plan,
               std::vector<double>(static_cast<std::size_t>(plan.last_bar - plan.first + 1), position), config);
    c.method = name;
    c.baseline = true;
    out.push_back(std::move(c));
  }
  return out;
}

nlohmann::json finite(double v) {
  if (std::isfinite(v)) return v;
  return v > 0 ? "inf" : (v < 0 ? "-inf" : "nan");
}

std::string num(double v, int digits) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

bool is_reference(const std::string& method) { return method == "buy_and_hold" || method == "flat"; }

}  // namespace

double position_from_outputs(const std::string& family, const double* outputs, std::int64_t classes) {
  int plus = 0, minus = 0;
  if (family == "price_direction") {
    plus = 2;   // BUY
    minus = 0;  // SELL
  } else if (family == "market_regime") {
    plus = 0;   // bull
    minus = 1;  // bear
  } else {
    fail("walk_forward: no position rule for family '" + family + "'");
  }
  if (classes <= std::max(plus, minus)) {
    fail("walk_forward: " + family + " outputs have " + std::to_string(classes) + " classes, the position rule needs " +
         std::to_string(std::max(plus, minus) + 1));
  }
  double top = outputs[0];
  for (std::int64_t k = 1; k < classes; ++k) top = std::max(top, outputs[k]);
  double total = 0.0;
  for (std::int64_t k = 0; k < classes; ++k) total += std::exp(outputs[k] - top);
  const double p = (std::exp(outputs[plus] - top) - std::exp(outputs[minus] - top)) / total;
  return std::clamp(p, -1.0, 1.0);
}

std::vector<EquityCurve> walk_forward(const FamilySource& family, Method& method, const WalkForwardConfig& config,
                                      Generator& gen) {
  const WalkPlan plan = plan_walk(family, config);
  const std::int64_t classes = family.num_classes;
  std::vector<EquityCurve> out;
  for (int series : assets_of(family)) {
    std::vector<double> positions(static_cast<std::size_t>(plan.last_bar - plan.first + 1), 0.0);
    std::int64_t adaptations = 0, diverged = 0;
    for (std::int64_t d = plan.first; d <= plan.last_decision;) {
      const std::int64_t q = std::min(plan.per_block, (plan.last_decision - d) / plan.stride + 1);
      tasks::TaskRequest request;
      request.series = {series};
      request.begin = d - 1 - plan.embargo - (plan.support - 1) * plan.stride;
      request.support_size = plan.support;
      request.query_size = q;
      request.horizon = plan.horizon;
      request.embargo = family.embargo;
      request.stride = plan.stride;
      Episode episode = family.episode_at(request);
      const auto& rows = episode.context.query_rows;
      if (static_cast<std::int64_t>(rows.size()) != q || rows.front() != d ||
          episode.context.support_rows.back() + plan.horizon >= d) {
        fail("walk_forward: internal: the episode at row " + std::to_string(d) + " is not laid out as planned");
      }
      // Hide what lies after each decision bar: query labels and holding returns.
      episode.task.query_y = Tensor::indices(std::vector<std::int64_t>(static_cast<std::size_t>(q), 0));
      episode.query_returns.clear();
      Generator g = gen.split();
      std::vector<std::vector<double>> outputs;
      try {
        outputs = method.predict(episode, {config.steps}, g);
      } catch (const Error& e) {
        fail("walk_forward: " + method.name() + " on " + asset_name(family, series) + " at row " + std::to_string(d) +
             ": " + e.what());
      }
      if (outputs.empty() || static_cast<std::int64_t>(outputs.front().size()) != q * classes) {
        fail("walk_forward: " + method.name() + " returned " +
             std::to_string(outputs.empty() ? 0 : outputs.front().size()) + " outputs for " + std::to_string(q) +
             " query rows of " + std::to_string(classes) + " classes");
      }
      const std::vector<double>& o = outputs.front();
      const bool finite_outputs = std::all_of(o.begin(), o.end(), [](double v) { return std::isfinite(v); });
      ++adaptations;
      if (!finite_outputs) ++diverged;
      for (std::int64_t j = 0; j < q; ++j) {
        const std::int64_t row = rows[static_cast<std::size_t>(j)];
        if (row < family.test_rows.first || row >= family.test_rows.second) {
          fail("walk_forward: internal: decision row " + std::to_string(row) + " is outside the test split");
        }
        const double position =
            finite_outputs ? position_from_outputs(family.name, o.data() + j * classes, classes) : 0.0;
        for (std::int64_t t = row; t < row + plan.stride && t <= plan.last_bar; ++t) {
          positions[static_cast<std::size_t>(t - plan.first)] = position;
        }
      }
      d += q * plan.stride;
    }
    EquityCurve c = stitch(family, series, plan, std::move(positions), config);
    c.method = method.name();
    c.baseline = method.is_baseline();
    c.adaptations = adaptations;
    c.diverged = diverged;
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<EquityCurve> buy_and_hold_curve(const FamilySource& family, const WalkForwardConfig& config) {
  return constant_curves(family, config, 1.0, "buy_and_hold");
}

std::vector<EquityCurve> flat_curve(const FamilySource& family, const WalkForwardConfig& config) {
  return constant_curves(family, config, 0.0, "flat");
}

void assign_deflated_sharpe(std::vector<EquityCurve>& curves, std::int64_t trials) {
  if (trials < 1) fail("walk_forward: the number of trials must be >= 1, got " + std::to_string(trials));
  std::map<std::pair<std::string, std::string>, std::vector<double>> trial_sharpes;
  for (const auto& c : curves) {
    if (!is_reference(c.method) && c.daily_returns.size() >= 2)
      trial_sharpes[{c.family, c.asset}].push_back(c.sharpe_daily);
  }
  for (auto& c : curves) {
    const double variance = trial_sharpe_variance(trial_sharpes[{c.family, c.asset}]);
    if (c.daily_returns.size() < 2) {
      c.deflated = DeflatedSharpe{};
      c.deflated.trials = trials;
      c.deflated.trial_variance = variance;
      continue;
    }
    c.deflated = deflated_sharpe_ratio(c.daily_returns, trials, variance);
  }
}

nlohmann::json walk_forward_json(const std::vector<EquityCurve>& curves) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& c : curves) {
    std::vector<std::string> days;
    for (std::int64_t d : c.day_ms) days.push_back(iso_day(d));
    out.push_back({{"family", c.family},
                   {"method", c.method},
                   {"asset", c.asset},
                   {"baseline", c.baseline},
                   {"run", c.run},
                   {"shots", c.shots},
                   {"steps", c.steps},
                   {"readapt_every", c.readapt_every},
                   {"adaptations", c.adaptations},
                   {"diverged", c.diverged},
                   {"first_row", c.first_row},
                   {"last_row", c.last_row},
                   {"first_time_ms", c.bar_time_ms.empty() ? 0 : c.bar_time_ms.front()},
                   {"last_time_ms", c.bar_time_ms.empty() ? 0 : c.bar_time_ms.back()},
                   {"bars", c.positions.size()},
                   {"days", c.daily_returns.size()},
                   {"total_return", finite(c.total_return)},
                   {"sharpe", finite(c.sharpe)},
                   {"sharpe_ci_low", finite(c.sharpe_ci.low)},
                   {"sharpe_ci_high", finite(c.sharpe_ci.high)},
                   {"sortino", finite(c.sortino)},
                   {"max_drawdown", finite(c.max_drawdown)},
                   {"turnover", finite(c.turnover)},
                   {"block_length_days", c.block_length},
                   {"resamples", c.resamples},
                   {"annualisation", "sqrt(365), daily returns"},
                   {"deflated_sharpe", finite(c.deflated.dsr)},
                   {"trials", c.deflated.trials},
                   {"trial_sharpe_variance", finite(c.deflated.trial_variance)},
                   {"expected_max_sharpe_daily", finite(c.deflated.expected_max)},
                   {"sharpe_daily", finite(c.sharpe_daily)},
                   {"skewness", finite(c.deflated.skewness)},
                   {"kurtosis", finite(c.deflated.kurtosis)},
                   {"day", days},
                   {"day_ms", c.day_ms},
                   {"daily_return", c.daily_returns},
                   {"equity", c.equity},
                   {"drawdown", c.drawdown}});
  }
  return out;
}

std::string walk_forward_markdown(const std::vector<EquityCurve>& curves) {
  if (curves.empty()) return "";
  std::vector<std::string> families;
  for (const auto& c : curves) {
    if (std::find(families.begin(), families.end(), c.family) == families.end()) families.push_back(c.family);
  }
  std::ostringstream md;
  const EquityCurve& first = curves.front();
  md << "One stitched out-of-sample curve per method and asset: every " << first.readapt_every
     << " bars the method adapts on the most recent " << first.shots << "-shot support window (past data only, "
     << first.steps << " adaptation step(s)) and holds p(up) - p(down) (direction: p(BUY) - p(SELL); regime: "
     << "p(bull) - p(bear)) for the next bars, fees and slippage on turnover. Metrics on the stitched daily "
     << "returns, annualised with sqrt(365); Sharpe interval: stationary block bootstrap (Politis and Romano "
     << "1994; " << first.resamples << " resamples; mean block length per curve, report.json block_length_days: "
     << "Politis and White 2004 unless configured); deflated Sharpe "
     << "(Bailey and Lopez de Prado 2014): the probability that the true Sharpe exceeds the expected maximum "
     << "of N = " << first.deflated.trials << " trials (learners and baselines x runs).\n";
  for (const auto& fam : families) {
    md << "\n### " << fam
       << "\n\n| method | asset | run | total return | Sharpe [95% CI] | Sortino | max drawdown | "
          "turnover | deflated Sharpe |\n|---|---|---|---|---|---|---|---|---|\n";
    for (const auto& c : curves) {
      if (c.family != fam) continue;
      md << "| " << c.method << (c.baseline ? " (baseline)" : "") << " | " << c.asset << " | " << c.run << " | "
         << num(c.total_return, 4) << " | " << num(c.sharpe, 2) << " [" << num(c.sharpe_ci.low, 2) << ", "
         << num(c.sharpe_ci.high, 2) << "] | " << num(c.sortino, 2) << " | " << num(c.max_drawdown, 4) << " | "
         << num(c.turnover, 4) << " | " << num(c.deflated.dsr, 3) << " |\n";
    }
  }
  return md.str();
}

std::string walk_forward_equity_csv(const std::vector<EquityCurve>& curves) {
  std::ostringstream out;
  out.precision(10);
  out << "family,method,asset,run,day,daily_return,equity,drawdown\n";
  for (const auto& c : curves) {
    for (std::size_t i = 0; i < c.daily_returns.size(); ++i) {
      out << c.family << ',' << c.method << ',' << c.asset << ',' << c.run << ',' << iso_day(c.day_ms[i]) << ','
          << c.daily_returns[i] << ',' << c.equity[i] << ',' << c.drawdown[i] << '\n';
    }
  }
  return out.str();
}

}  // namespace metatape::eval
