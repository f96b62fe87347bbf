// metatape data validate PATH... | inspect FILE | show FILE: load market files with the loaders'
// validation and report on them; validate walks directories.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <sstream>

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
  if (std::filesystem::is_directory(path)) {
    throw eval::DataError("metatape: data: " + path +
                          " is a directory; give one market file (data validate "
                          "takes directories and walks their market files)");
  }
  if (!std::filesystem::is_regular_file(path)) {
    throw eval::DataError("metatape: data: " + path +
                          " is not a regular file (a device or a pipe); give a market file");
  }
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
              << "close:     first " << s.close.front() << ", last " << s.close.back() << ", min " << *lo << ", max "
              << *hi << "\n";
  }
  std::cout << "gaps:      " << r.report.gaps << " (" << r.report.missing_bars << " missing bars)\n";
  const std::string summary = r.report.summary();
  std::cout << "defects:   " << (summary.empty() ? "none\n" : "\n" + summary + (summary.back() == '\n' ? "" : "\n"));
  // What repair changed, per defect kind (policy repair only), and the feed warnings (every policy).
  const std::string repairs = r.report.repairs_summary();
  if (!repairs.empty()) {
    std::cout << "repairs:\n";
    std::istringstream lines(repairs);
    for (std::string line; std::getline(lines, line);) std::cout << "  " << line << "\n";
  }
  const std::string warnings = r.report.warnings_summary();
  std::cout << "warnings:  " << (warnings.empty() ? "none\n" : "\n");
  if (!warnings.empty()) {
    std::istringstream lines(warnings);
    for (std::string line; std::getline(lines, line);) std::cout << "  " << line << "\n";
  }
}

// Market files as the loaders name them: .csv, .json or .txt, optionally .gz.
bool looks_like_market_file(const std::filesystem::path& p) {
  std::string name = p.filename().string();
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  if (name.size() > 3 && name.compare(name.size() - 3, 3, ".gz") == 0) name.resize(name.size() - 3);
  for (const char* ext : {".csv", ".json", ".txt"}) {
    const std::size_t n = std::char_traits<char>::length(ext);
    if (name.size() > n && name.compare(name.size() - n, n, ext) == 0) return true;
  }
  return false;
}

// Files named on the command line are validated as given; a directory contributes its market files
// (recursively, in name order; not regimes.csv, the labels `metatape simulate` writes). Throws DataError for a missing path or a directory with none.
std::vector<std::string> expand_paths(const std::vector<std::string>& paths) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  for (const std::string& p : paths) {
    std::error_code ec;
    if (!fs::exists(p, ec)) throw eval::DataError("metatape: data: no such file or directory: " + p);
    if (!fs::is_directory(p, ec)) {
      files.push_back(p);
      continue;
    }
    std::vector<std::string> found;
    for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      // regimes.csv is the regime labels `metatape simulate` writes beside its market files.
      if (it->is_regular_file(ec) && looks_like_market_file(it->path()) && it->path().filename() != "regimes.csv") {
        found.push_back(it->path().string());
      }
    }
    if (ec) throw eval::DataError("metatape: data: cannot read the directory " + p + ": " + ec.message());
    if (found.empty()) {
      throw eval::DataError("metatape: data: the directory " + p +
                            " holds no market files (.csv, .json, .txt, "
                            "optionally .gz)");
    }
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

void print_rows(const tasks::LoadResult& r, std::int64_t rows) {
  const tasks::Series& s = r.series;
  std::cout << "file:   " << r.report.path << "\nseries: " << s.label() << " (" << s.size() << " bars";
  if (r.report.rows_dropped + r.report.rows_repaired > 0) {
    std::cout << "; " << r.report.rows_dropped << " rows dropped, " << r.report.rows_repaired << " repaired";
  }
  std::cout << ")\n";
  std::printf("%-16s %14s %14s %14s %14s %16s %s\n", "time (UTC)", "open", "high", "low", "close", "volume", "filled");
  const std::int64_t n = std::min<std::int64_t>(rows, s.size());
  for (std::int64_t i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    std::printf("%-16s %14.8g %14.8g %14.8g %14.8g %16.8g %s\n", iso_time(s.time_ms[k]).c_str(), s.open[k], s.high[k],
                s.low[k], s.close[k], s.volume[k], s.filled.size() > k && s.filled[k] ? "yes" : "");
  }
  if (n < s.size()) std::cout << "... " << (s.size() - n) << " more (--rows N)\n";
}

}  // namespace

void register_data(CLI::App& app) {
  CLI::App* data = app.add_subcommand("data", "validate and inspect market data files");
  data->require_subcommand(1);

  auto vpaths = std::make_shared<std::vector<std::string>>();
  auto vpolicy = std::make_shared<std::string>("fail");
  CLI::App* validate =
      data->add_subcommand("validate",
                           "load each FILE (and each market file under each DIRECTORY) and check every row; exit 0 "
                           "when all are usable, 3 when any defect is refused (policy fail) or nothing usable remains");
  validate
      ->add_option("paths", *vpaths,
                   "market files (CSV, freqtrade JSON, Binance klines; .gz read "
                   "transparently) or directories of them")
      ->required();
  validate->add_option("--policy", *vpolicy, "fail (refuse the first defect), drop or repair");
  validate->callback([vpaths, vpolicy] {
    const tasks::ValidationPolicy policy = parse_policy(*vpolicy);
    const std::vector<std::string> files = expand_paths(*vpaths);
    std::vector<std::string> refused;
    for (std::size_t i = 0; i < files.size(); ++i) {
      if (i > 0) std::cout << "\n";
      try {
        const tasks::LoadResult r = load(files[i], policy);
        print_report(r);
        std::cout << "valid:     yes (" << r.series.size() << " usable bars)\n";
      } catch (const eval::DataError& e) {
        if (files.size() == 1) throw;
        std::cout << "file:      " << files[i] << "\nvalid:     no\n" << std::flush;
        std::fprintf(stderr, "%s\n", e.what());
        refused.push_back(files[i]);
      }
    }
    if (files.size() > 1) {
      std::cout << "\n"
                << files.size() << " files: " << (files.size() - refused.size()) << " valid, " << refused.size()
                << " refused\n"
                << std::flush;
    }
    if (!refused.empty()) {
      std::string list;
      for (const auto& f : refused) list += (list.empty() ? "" : ", ") + f;
      std::fprintf(stderr, "metatape: data: refused %zu of %zu files: %s\n", refused.size(), files.size(),
                   list.c_str());
      throw CommandExit{bad_data};
    }
  });

  auto ipath = std::make_shared<std::string>();
  CLI::App* inspect = data->add_subcommand(
      "inspect", "load FILE with the repair policy and describe it: format, series, range, prices, gaps, defects");
  inspect->add_option("file", *ipath, "market file")->required();
  inspect->callback([ipath] { print_report(load(*ipath, tasks::ValidationPolicy::repair)); });

  auto spath = std::make_shared<std::string>();
  auto srows = std::make_shared<std::int64_t>(10);
  auto spolicy = std::make_shared<std::string>("repair");
  CLI::App* show =
      data->add_subcommand("show",
                           "load FILE and print its first rows as parsed: UTC time, open, high, low, close, volume and "
                           "whether the bar was filled in");
  show->add_option("file", *spath, "market file")->required();
  show->add_option("--rows", *srows, "how many rows to print (default 10)")->check(non_negative());
  show->add_option("--policy", *spolicy, "fail, drop or repair (default repair)");
  show->callback([spath, srows, spolicy] { print_rows(load(*spath, parse_policy(*spolicy)), *srows); });
}

}  // namespace metatape::apps
