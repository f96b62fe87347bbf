// Market data loading speed: one million 1-minute candles as Binance kline CSV (headerless, 12
// columns), as a CSV with a header, as freqtrade JSON and gzip-compressed CSV. The files are
// generated once per run in the temp directory. Also feature computation and task building.
#include <benchmark/benchmark.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "autograd/random.h"
#include "tasks/features.h"
#include "tasks/loaders.h"
#include "tasks/sampler.h"
#include "tasks/simulator.h"

using namespace metatape;
using namespace metatape::tasks;

namespace {

constexpr std::int64_t kRows = 1'000'000;

struct Files {
  std::string kline, header_csv, json, gz;
};

const Files& files() {
  static const Files f = [] {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / "metatape_bench_data";
    fs::create_directories(dir);
    Files out{(dir / "BTCUSDT-1m-kline.csv").string(), (dir / "BTC_USDT-1m.csv").string(),
              (dir / "BTC_USDT-1m.json").string(), (dir / "BTC_USDT-1m.csv.gz").string()};
    Generator gen(1);
    std::string kline, csv = "timestamp,open,high,low,close,volume\n", json = "[";
    kline.reserve(static_cast<std::size_t>(kRows) * 110);
    csv.reserve(static_cast<std::size_t>(kRows) * 60);
    json.reserve(static_cast<std::size_t>(kRows) * 64);
    double price = 30000;
    char line[256];
    for (std::int64_t i = 0; i < kRows; ++i) {
      const long long t = 1'600'000'000'000LL + i * 60'000LL;
      const double open = price;
      price *= std::exp(0.001 * gen.normal());
      const double close = price, high = std::max(open, close) * (1 + 0.0005 * gen.uniform());
      const double low = std::min(open, close) * (1 - 0.0005 * gen.uniform()), vol = 10 + 5 * gen.uniform();
      std::snprintf(line, sizeof line, "%lld,%.2f,%.2f,%.2f,%.2f,%.6f,%lld,%.4f,%d,%.6f,%.4f,0\n", t, open, high, low,
                    close, vol, t + 59'999, vol * close, 100 + static_cast<int>(i % 50), vol / 2, vol * close / 2);
      kline += line;
      std::snprintf(line, sizeof line, "%lld,%.2f,%.2f,%.2f,%.2f,%.6f\n", t, open, high, low, close, vol);
      csv += line;
      std::snprintf(line, sizeof line, "%s[%lld,%.2f,%.2f,%.2f,%.2f,%.6f]", i ? "," : "", t, open, high, low, close,
                    vol);
      json += line;
    }
    json += "]";
    std::ofstream(out.kline, std::ios::binary) << kline;
    std::ofstream(out.header_csv, std::ios::binary) << csv;
    std::ofstream(out.json, std::ios::binary) << json;
    gzFile gz = gzopen(out.gz.c_str(), "wb6");
    gzwrite(gz, csv.data(), static_cast<unsigned>(csv.size()));
    gzclose(gz);
    return out;
  }();
  return f;
}

void load(benchmark::State& state, const std::string& path) {
  std::int64_t rows = 0;
  for (auto _ : state) {
    const LoadResult r = load_series(path);
    rows = r.series.size();
    benchmark::DoNotOptimize(r.series.close.data());
  }
  state.counters["rows"] = static_cast<double>(rows);
  state.counters["rows_per_s"] = benchmark::Counter(static_cast<double>(rows) * static_cast<double>(state.iterations()),
                                                    benchmark::Counter::kIsRate);
  state.SetBytesProcessed(static_cast<std::int64_t>(std::filesystem::file_size(path)) * state.iterations());
}

void BM_LoadBinanceKline1M(benchmark::State& state) { load(state, files().kline); }
void BM_LoadHeaderCsv1M(benchmark::State& state) { load(state, files().header_csv); }
void BM_LoadFreqtradeJson1M(benchmark::State& state) { load(state, files().json); }
void BM_LoadGzipCsv1M(benchmark::State& state) { load(state, files().gz); }

void BM_Features50(benchmark::State& state) {
  SimulatorConfig c;
  c.bars = state.range(0);
  c.assets = 1;
  c.exchanges = 1;
  const Series s = simulate_market(c).market.series[0];
  for (auto _ : state) benchmark::DoNotOptimize(compute_features(s).values.data());
  state.SetItemsProcessed(state.range(0) * state.iterations());
}

void BM_BuildTask(benchmark::State& state) {
  SimulatorConfig c;
  c.bars = 4000;
  c.assets = 4;
  c.exchanges = 2;
  DistributionConfig d;
  d.families = family_names();
  d.family.rebalance = std::string(1, '6');
  const auto dist = std::make_shared<const TaskDistribution>(PreparedMarket::make(simulate_market(c).market), d);
  Generator gen(3);
  for (auto _ : state) benchmark::DoNotOptimize(dist->sample_task(Split::train, gen).support_x.raw_data());
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

BENCHMARK(BM_LoadBinanceKline1M)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_LoadHeaderCsv1M)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_LoadFreqtradeJson1M)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_LoadGzipCsv1M)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_Features50)->Arg(100'000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_BuildTask)->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
