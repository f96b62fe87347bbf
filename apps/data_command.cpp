// metatape data validate|inspect FILE: load a market file with the loaders' validation and report.
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>

#include "apps/commands.h"
#include "tasks/loaders.h"

namespace metatape::apps {
namespace {

std::string iso_time(std::int64_t ms) {
  const std::time_t s = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
  return buf;
}

tasks::ValidationPolicy parse_policy(const std::string& p) {
  if (p == "fail") return tasks::ValidationPolicy::fail;
  if (p == "drop") return tasks::ValidationPolicy::drop;
  if (p == "repair") return tasks::ValidationPolicy::repair;
  throw eval::ConfigError("--policy must be fail, drop or repair, got '" + p + "'");
}

tasks::LoadResult load(const std::string& path, tasks::ValidationPolicy policy) {
  if (!std::filesystem::exists(path)) throw eval::DataError("metatape: data: no such file: " + path);
  tasks::LoadOptions options;
  options.policy = policy;
  try {
    return tasks::load_series(path, options);
  } catch (const Error& e) {
    throw eval::DataError(e.what());
  }
}

void print_report(const tasks::LoadResult& r) {
  const tasks::Series& s = r.series;
  std::cout << "file:      " << r.report.path << "\n"
            << "format:    " << r.report.format << (r.report.descending ? " (rows newest first)" : "") << "\n"
            << "series:    " << s.label() << "\n"
            << "rows:      " << r.report.rows_read << " read, " << r.report.rows_kept << " kept, "
            << r.report.rows_dropped << " dropped, " << r.report.rows_repaired << " repaired\n";
  if (!s.empty()) {
    const auto [lo, hi] = std::minmax_element(s.close.begin(), s.close.end());
    std::cout << "range:     " << iso_time(s.time_ms.front()) << " -> " << iso_time(s.time_ms.back()) << " UTC\n"
              << "close:     first " << s.close.front() << ", last " << s.close.back() << ", min " << *lo
              << ", max " << *hi << "\n";
  }
  std::cout << "gaps:      " << r.report.gaps << " (" << r.report.missing_bars << " missing bars)\n";
  const std::string summary = r.report.summary();
  std::cout << "defects:   " << (summary.empty() ? "none\n" : "\n" + summary + (summary.back() == '\n' ? "" : "\n"));
}

}  // namespace

void register_data(CLI::App& app) {
  CLI::App* data = app.add_subcommand("data", "validate and inspect market data files");
  data->require_subcommand(1);

  auto vpath = std::make_shared<std::string>();
  auto vpolicy = std::make_shared<std::string>("fail");
  CLI::App* validate = data->add_subcommand(
      "validate", "load FILE and check every row; exit 0 when usable, 3 when a defect is refused "
                  "(policy fail) or nothing usable remains");
  validate->add_option("file", *vpath, "market file (CSV, freqtrade JSON, Binance klines; .gz read transparently)")->required();
  validate->add_option("--policy", *vpolicy, "fail (refuse the first defect), drop or repair");
  validate->callback([vpath, vpolicy] {
    const tasks::LoadResult r = load(*vpath, parse_policy(*vpolicy));
    print_report(r);
    std::cout << "valid:     yes (" << r.series.size() << " usable bars)\n";
  });

  auto ipath = std::make_shared<std::string>();
  CLI::App* inspect = data->add_subcommand(
      "inspect", "load FILE with the repair policy and describe it: format, series, range, prices, gaps, defects");
  inspect->add_option("file", *ipath, "market file")->required();
  inspect->callback([ipath] { print_report(load(*ipath, tasks::ValidationPolicy::repair)); });
}

}  // namespace metatape::apps
