#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "kernels/error.h"
#include "tasks/loaders.h"
#include "shared_data.h"

using namespace metatape;
using namespace metatape::tasks;
namespace fs = std::filesystem;

namespace {

fs::path market_dir() { return fs::path(METATAPE_SHARED_DATA_DIR) / "market"; }

// What SOURCES.md records about a file.
struct Recorded {
  bool damaged = false;        // a defect our validation must refuse under policy fail
  bool unrecoverable = false;  // not OHLC candles at all / destroyed numbers: refused even by repair
  std::string why;
};

// Reads SOURCES.md's per-file sanity-check results ("- `file`: order ...; high<max(o,c): 0; ..." and
// the indented anomaly bullets below it) under each "### <folder>" heading.
std::map<std::string, Recorded> read_sources(const fs::path& sources) {
  std::ifstream in(sources);
  std::map<std::string, Recorded> out;
  std::string line, folder, current;
  bool in_results = false;
  const std::regex counts(R"((high<max\(o,c\)|low>min\(o,c\)|high<low|non-positive prices): ([0-9]+))");
  while (std::getline(in, line)) {
    if (line.rfind("### ", 0) == 0) {
      folder = line.substr(4);
      in_results = false;
      current.clear();
      continue;
    }
    if (line.rfind("Sanity-check results", 0) == 0) {
      in_results = true;
      continue;
    }
    if (!in_results) continue;
    if (line.rfind("- `", 0) == 0) {
      const std::size_t end = line.find('`', 3);
      current = folder + "/" + line.substr(3, end - 3);
      Recorded& r = out[current];
      for (std::sregex_iterator it(line.begin(), line.end(), counts), stop; it != stop; ++it)
        if (std::stoll((*it)[2]) > 0) r.damaged = true, r.why += (*it)[1].str() + "; ";
      continue;
    }
    if (line.rfind("  - ", 0) == 0 && !current.empty()) {
      Recorded& r = out[current];
      for (const char* key : {"duplicate timestamps", "timestamps not monotonic", "not OHLC",
                              "missing/non-numeric price", "unix column is unreliable", "volume columns look swapped"})
        if (line.find(key) != std::string::npos) r.damaged = true, r.why += std::string(key) + "; ";
      if (line.find("not OHLC") != std::string::npos || line.find("Unrecoverable") != std::string::npos)
        r.unrecoverable = true;
    }
  }
  return out;
}

std::string temp_file(const std::string& name, const std::string& content) {
  const fs::path dir = fs::temp_directory_path() / "metatape_loader_test";
  fs::create_directories(dir);
  const fs::path p = dir / name;
  std::ofstream(p, std::ios::binary) << content;
  return p.string();
}

std::string refusal(const std::string& path, const LoadOptions& options = {}) {
  try {
    load_series(path, options);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("real data: every real market file loads, or is refused / repaired as SOURCES.md records") {
  const fs::path dir = market_dir();
  if (!test::have_shared_data(dir / "SOURCES.md")) return;
  const auto recorded = read_sources(dir / "SOURCES.md");
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".gz") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  CHECK(files.size() >= 181);
  const std::regex message(R"(load: .+: line [0-9]+: [a-z_]+: )");
  std::int64_t loaded = 0, refused = 0, repaired = 0, rows = 0;
  std::vector<std::string> mismatches;
  for (const fs::path& p : files) {
    std::string rel = fs::relative(p, dir).string();
    rel = rel.substr(0, rel.size() - 3);  // SOURCES.md names the uncompressed file
    const auto it = recorded.find(rel);
    const Recorded rec = it == recorded.end() ? Recorded{} : it->second;
    if (it == recorded.end()) mismatches.push_back(rel + ": not listed in SOURCES.md");
    std::string err;
    try {
      const LoadResult r = load_series(p.string());
      r.series.check();
      rows += r.series.size();
      ++loaded;
    } catch (const Error& e) {
      err = e.what();
    }
    if (err.empty()) {
      if (rec.damaged) mismatches.push_back(rel + ": SOURCES.md records a defect (" + rec.why + ") but it loaded");
      continue;
    }
    ++refused;
    if (!rec.damaged) mismatches.push_back(rel + ": refused but SOURCES.md records no defect: " + err);
    if (err.find(p.filename().string()) == std::string::npos || !std::regex_search(err, message))
      mismatches.push_back(rel + ": refusal does not name file, line and defect: " + err);
    LoadOptions repair;
    repair.policy = ValidationPolicy::repair;
    try {
      const LoadResult r = load_series(p.string(), repair);
      r.series.check();
      if (rec.unrecoverable) mismatches.push_back(rel + ": recorded as unrecoverable but repair accepted it");
      if (r.report.issues.empty()) mismatches.push_back(rel + ": repaired without reporting an issue");
      ++repaired;
    } catch (const Error& e) {
      if (!rec.unrecoverable)
        mismatches.push_back(rel + ": repair failed: " + e.what());
      else if (std::string(e.what()).find(p.filename().string()) == std::string::npos)
        mismatches.push_back(rel + ": unrecoverable refusal does not name the file: " + e.what());
    }
  }
  for (const std::string& m : mismatches) MESSAGE(m);
  MESSAGE(files.size() << " files: " << loaded << " loaded (" << rows << " rows), " << refused
                       << " refused under policy fail, " << repaired << " of those repaired");
  CHECK(mismatches.empty());
  CHECK(loaded > 100);
  CHECK(refused > 0);
}

TEST_CASE("crafted bad files are each refused with a message naming file, line and defect") {
  const std::string header = "timestamp,open,high,low,close,volume\n";
  const std::string ok1 = "1609459200000,100,101,99,100.5,10\n";
  const std::string ok2 = "1609462800000,100.5,102,100,101,12\n";
  const std::string ok3 = "1609466400000,101,103,100.5,102,11\n";
  struct Case {
    const char* name;
    std::string content;
    const char* expect;  // "line N: defect"
  };
  const std::vector<Case> cases = {
      {"malformed.csv", header + ok1 + "1609462800000,100.5,abc,100,101,12\n" + ok3, "line 3: malformed_line"},
      {"missing.csv", header + ok1 + "1609462800000,100.5,102\n" + ok3, "line 3: missing_field"},
      {"empty_field.csv", header + ok1 + "1609462800000,100.5,,100,101,12\n" + ok3, "line 3: missing_field"},
      {"nan.csv", header + ok1 + "1609462800000,100.5,102,100,nan,12\n" + ok3, "line 3: non_finite"},
      {"inf.csv", header + ok1 + ok2 + "1609466400000,101,inf,100.5,102,11\n", "line 4: non_finite"},
      {"zero_price.csv", header + ok1 + "1609462800000,0,102,100,101,12\n" + ok3, "line 3: non_positive_price"},
      {"negative_price.csv", header + ok1 + ok2 + "1609466400000,101,103,-1,102,11\n", "line 4: non_positive_price"},
      {"high_low.csv", header + ok1 + "1609462800000,100.5,100.6,100,101,12\n" + ok3, "line 3: high_below_open_close"},
      {"low_high.csv", header + ok1 + "1609462800000,100.5,102,100.8,101,12\n" + ok3, "line 3: low_above_open_close"},
      {"duplicate.csv", header + ok1 + ok2 + ok2 + ok3, "line 4: duplicate_timestamp"},
      {"backwards.csv",
       header + ok1 + ok3 + ok2 + "1609470000000,102,103,101,102,9\n" + "1609473600000,102,103,101,102,9\n",
       "line 4: non_monotonic_timestamp"},
      {"units.csv", header + ok1 + "1609462800000000000000,100.5,102,100,101,12\n" + ok3, "line 3: wrong_units"},
      {"negative_volume.csv", header + ok1 + "1609462800000,100.5,102,100,101,-5\n" + ok3, "line 3: negative_volume"},
      {"lossy.csv",
       "unix,date,symbol,open,high,low,close,Volume A,Volume USDT\n1.63875E+12,06-12-21,A/USDT,1,2,0.5,1.5,10,15\n",
       "line 2: wrong_units"},
      {"swapped_volume.csv",
       "unix,date,symbol,open,high,low,close,Volume BTC,Volume USD\n1609459200,2021-01-01 "
       "00:00:00,BTC/USD,100,101,99,100,1000,10\n",
       "line 2: wrong_units"},
      {"funding.json", "[[1630396800007,0.00027795,0.0,0.0,0.0,0.0],\n[1630425600003,0.00023354,0.0,0.0,0.0,0.0]]",
       "line 1: not_ohlc"},
      {"bad_json.json", "[[1609459200000,100,101,99,100.5,10],\n[1609462800000,100.5,102,100,\"x\",12]]",
       "line 2: malformed_line"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string path = temp_file(c.name, c.content);
    const std::string err = refusal(path);
    CHECK(err.find(c.name) != std::string::npos);
    CHECK(err.find(c.expect) != std::string::npos);
    if (err.find(c.expect) == std::string::npos) MESSAGE(err);
  }
  // JSON candles on one line are located by line and candle number.
  const std::string one_line =
      "[[1609459200000,100,101,99,100.5,10],[1609462800000,100.5,102,100,101,12],"
      "[1609462800000,100.5,102,100,101,12]]";
  CHECK(refusal(temp_file("one_line.json", one_line)).find("line 1: duplicate_timestamp: candle 3: time") !=
        std::string::npos);
  // Unrecognisable content.
  CHECK(refusal(temp_file("garbage.csv", "hello\nworld\n")).find("cannot recognise the format") != std::string::npos);
  CHECK(refusal(temp_file("only_header.csv", header)).find("no data rows") != std::string::npos);
}

TEST_CASE("policies: drop removes, repair fixes, gaps are reported and filled only when asked") {
  const std::string header = "timestamp,open,high,low,close,volume\n";
  std::string rows;
  for (int i = 0; i < 10; ++i) {
    if (i == 5) continue;  // a one-bar gap
    rows += std::to_string(1609459200000LL + i * 3600000LL) + ",100,101,99,100,1\n";
  }
  const std::string gap_path = temp_file("gap.csv", header + rows);
  const LoadResult plain = load_series(gap_path);
  CHECK(plain.series.size() == 9);
  CHECK(plain.report.gaps == 1);
  CHECK(plain.report.missing_bars == 1);
  CHECK(plain.report.count(Defect::gap) == 1);
  CHECK(plain.series.interval_ms == 3600000);
  LoadOptions fill;
  fill.forward_fill_gaps = true;
  const LoadResult filled = load_series(gap_path, fill);
  CHECK(filled.series.size() == 10);
  CHECK(filled.series.filled[5] == 1);
  CHECK(filled.series.filled[4] == 0);
  CHECK(filled.report.bars_filled == 1);

  const std::string bad = header +
                          "1609459200000,100,101,99,100,1\n1609462800000,100,99.5,99,100,1\n"
                          "1609466400000,100,101,99,100,1\n1609466400000,100,101,99,100,1\n"
                          "1609470000000,100,101,99,100,1\n";
  const std::string bad_path = temp_file("fixable.csv", bad);
  LoadOptions drop;
  drop.policy = ValidationPolicy::drop;
  const LoadResult dropped = load_series(bad_path, drop);
  CHECK(dropped.series.size() == 3);
  CHECK(dropped.report.rows_dropped == 2);
  LoadOptions repair;
  repair.policy = ValidationPolicy::repair;
  const LoadResult fixed = load_series(bad_path, repair);
  CHECK(fixed.series.size() == 4);
  CHECK(fixed.series.high[1] == 100.0);  // high lifted to max(open, close)
  CHECK(fixed.report.rows_repaired == 1);
  CHECK(fixed.report.count(Defect::duplicate_timestamp) == 1);
  CHECK(fixed.report.summary().find("duplicate_timestamp") != std::string::npos);
  fixed.series.check();

  // A file more than half defective is refused even by repair.
  const std::string mostly_bad = header +
                                 "1609459200000,100,101,99,100,1\n1609462800000,0,0,0,0,1\n"
                                 "1609466400000,0,0,0,0,1\n";
  CHECK_THROWS_WITH_AS(load_series(temp_file("mostly_bad.csv", mostly_bad), repair),
                       doctest::Contains("more than half"), Error);
}

TEST_CASE("formats: Binance klines (ms, µs, headerless), descending CDD with banner, dates, gzip") {
  // Binance kline rows, 12 columns, no header; microsecond open times (Binance spot from 2025).
  std::string kl;
  for (int i = 0; i < 4; ++i) {
    const long long t_us = (1735689600000LL + i * 60000LL) * 1000;
    kl += std::to_string(t_us) + ",10,11,9,10.5,100," + std::to_string(t_us + 59999999) + ",1000,5,50,500,0\n";
  }
  const LoadResult k = load_series(temp_file("BTCUSDT-1m-2025-01-01.csv", kl));
  CHECK(k.report.format == "binance_kline_headerless");
  CHECK(k.series.time_ms[0] == 1735689600000LL);
  CHECK(k.series.interval_ms == 60000);
  CHECK(k.series.symbol == "BTC/USDT");

  const std::string cdd =
      "https://www.CryptoDataDownload.com\n"
      "Unix Timestamp,Date,Symbol,Open,High,Low,Close,Volume BTC,Volume USD\n"
      "1603522800.0,2020-10-24 07-AM,BTCUSD,12965.84,12965.84,12953.2,12953.2,1.0,12953.2\n"
      "1603519200000,2020-10-24 06-AM,BTCUSD,12979.28,12991.89,12961.03,12965.84,2.0,25931.6\n";
  const LoadResult c = load_series(temp_file("Coinbase_BTCUSD_1h.csv", cdd));
  CHECK(c.report.descending);
  CHECK(c.series.time_ms[0] == 1603519200000LL);  // seconds and ms mixed, both understood
  CHECK(c.series.time_ms[1] == 1603522800000LL);
  CHECK(c.series.exchange == "coinbase");
  CHECK(c.series.symbol == "BTC/USD");

  // Date-only files: 12-hour clock, ISO with offset, US dates.
  const std::string dated =
      "Date,Open,High,Low,Close,Volume\n2020-01-01 00:00:00+00:00,1,2,0.5,1.5,3\n"
      "2020-01-01 01:00:00+00:00,1.5,2,1,1.2,3\n";
  const LoadResult d = load_series(temp_file("pandas.csv", dated));
  CHECK(d.series.time_ms[0] == 1577836800000LL);
  const std::string ampm =
      "Date,Symbol,Open,High,Low,Close\n2019-12-15 12-PM,X,1,2,0.5,1.5\n2019-12-15 11-AM,X,1,2,0.5,1.5\n";
  const LoadResult a = load_series(temp_file("ampm.csv", ampm));
  CHECK(a.series.time_ms[1] == 1576411200000LL);      // 2019-12-15 12:00 UTC
  CHECK(a.report.count(Defect::missing_field) == 1);  // no volume column: reported, volume 0
  const std::string bad_date = "Date,Open,High,Low,Close\n2021-02-30 10:00:00,1,2,0.5,1.5\n";
  CHECK(refusal(temp_file("feb30.csv", bad_date)).find("line 2: malformed_line") != std::string::npos);

  // gzip is read transparently (write a gzip file with zlib's command-line-free API through the
  // test-only helper below: a stored gzip member built by hand is enough to exercise the path).
  const std::string json = "[[1609459200000,100,101,99,100.5,10],[1609462800000,100.5,102,100,101,12]]";
  const fs::path gz = fs::temp_directory_path() / "metatape_loader_test" / "ETH_USDT-1h.json.gz";
  {
    const std::string plain_path = temp_file("ETH_USDT-1h.json", json);
    const std::string cmd = "gzip -c '" + plain_path + "' > '" + gz.string() + "'";
    REQUIRE(std::system(cmd.c_str()) == 0);
  }
  const LoadResult g = load_series(gz.string());
  CHECK(g.report.format == "freqtrade_json");
  CHECK(g.series.size() == 2);
  CHECK(g.series.symbol == "ETH/USDT");
  CHECK(g.series.interval == "1h");
  CHECK(read_file(gz.string()) == json);
}

TEST_CASE("regression (fuzz_csv): a huge timestamp gap is refused, not forward-filled into OOM") {
  const fs::path crash = fs::path(METATAPE_SOURCE_DIR) / "fuzz/regressions/csv/gap_fill_oom.bin";
  REQUIRE_MESSAGE(fs::exists(crash), "missing fuzz regression input " << crash);
  std::ifstream in(crash, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  LoadOptions options;
  options.policy = ValidationPolicy::repair;
  options.forward_fill_gaps = true;
  // The fuzzer's first byte selects options; the rest is the file.
  CHECK_THROWS_AS(parse_series(bytes.substr(1), "Binance_BTCUSDT_1h.csv", options), Error);

  const std::string two_rows =
      "timestamp,open,high,low,close,volume\n1577836800000,1,1,1,1,1\n1577836860000,1,1,1,1,1\n"
      "1577836920000,1,1,1,1,1\n3155760000000,1,1,1,1,1\n";  // 1-minute bars, then a jump to 2070
  CHECK_THROWS_WITH_AS(parse_series(two_rows, "gappy.csv", options), doctest::Contains("too long to forward-fill"),
                       Error);
}

namespace {

// `plain` compressed as one gzip member (zlib, windowBits 15 + 16).
std::string gzip_bytes(const std::string& plain) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&zs, static_cast<uLong>(plain.size())) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(plain.data()));
  zs.avail_in = static_cast<uInt>(plain.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

}  // namespace

TEST_CASE("a gzip bomb is refused at the decompressed-bytes limit, naming the file and the limit") {
  // 16 MiB of zeros compresses to about 16 KiB; with a 1 MiB limit it must stop after about 1 MiB
  // (the full-size case, 10 GiB from 10 MB, ran until bad_alloc before the limit existed).
  const std::string zeros(std::size_t{16} << 20, '\0');
  const std::string bomb = temp_file("bomb.json.gz", gzip_bytes(zeros));
  CHECK(fs::file_size(bomb) < (std::size_t{64} << 10));
  LoadOptions options;
  options.max_decompressed_bytes = std::int64_t{1} << 20;
  const std::string want = "load: " + bomb +
                           ": gzip data decompresses to more than 1048576 bytes, the limit on one "
                           "data file (LoadOptions::max_decompressed_bytes; raise it";
  CHECK_THROWS_WITH_AS(load_series(bomb, options), doctest::Contains(want.c_str()), Error);
  CHECK_THROWS_WITH_AS(read_file(bomb, std::int64_t{1} << 20), doctest::Contains(want.c_str()), Error);
  // At the limit exactly, and with the limit raised, it reads.
  CHECK(read_file(bomb, std::int64_t{16} << 20).size() == zeros.size());
  CHECK_THROWS_AS(read_file(bomb, (std::int64_t{16} << 20) - 1), Error);

  // Several gzip members each under the limit, together over it (the counter spans members).
  const std::string member = gzip_bytes(std::string(600'000, 'a'));
  const std::string two = temp_file("two.csv.gz", member + member);
  CHECK(read_file(two, 1'200'000).size() == 1'200'000);
  CHECK_THROWS_WITH_AS(read_file(two, 1'000'000), doctest::Contains("decompresses to more than 1000000 bytes"), Error);

  // A plain file over the limit is refused before it is read.
  const std::string big = temp_file("big.csv", std::string(2000, 'x'));
  CHECK_THROWS_WITH_AS(read_file(big, 1000),
                       doctest::Contains(("load: " + big + ": the file has more than 1000 bytes").c_str()), Error);
  CHECK_THROWS_WITH_AS(read_file(big, 0), doctest::Contains("max_decompressed_bytes must be >= 1"), Error);
  // A truncated gzip is still reported as such.
  const std::string gz = gzip_bytes(std::string(5000, 'b'));
  const std::string cut = temp_file("cut.csv.gz", gz.substr(0, gz.size() / 2));
  CHECK_THROWS_WITH_AS(read_file(cut), doctest::Contains("gzip data is truncated"), Error);
}

TEST_CASE("a directory, a device or a FIFO given as a data file is refused up front") {
  const fs::path dir = fs::temp_directory_path() / "metatape_loader_test" / "a_dir.csv";
  fs::create_directories(dir);
  CHECK_THROWS_WITH_AS(load_series(dir.string()),
                       doctest::Contains(("load: " + dir.string() + " is a directory, not a data file").c_str()),
                       Error);
  CHECK_THROWS_WITH_AS(load_series("/dev/zero"),
                       doctest::Contains("load: /dev/zero is not a regular file (a device, FIFO or socket)"), Error);
  const fs::path fifo = fs::temp_directory_path() / "metatape_loader_test" / ("fifo_" + std::to_string(::getpid()));
  fs::remove(fifo);
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH_AS(read_file(fifo.string()), doctest::Contains("is not a regular file"), Error);
  fs::remove(fifo);
  CHECK_THROWS_WITH_AS(read_file("/nonexistent/x.csv"), doctest::Contains("cannot open /nonexistent/x.csv"), Error);
}
