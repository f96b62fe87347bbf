// metatape.tasks: Task, the sinusoid benchmark, the market simulator and loaders, task families and
// the distribution / sampler. Task fields come back as NumPy arrays sharing the tensors' memory.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <mutex>

#include "autograd/ops.h"
#include "bindings.h"
#include "convert.h"
#include "tasks/families.h"
#include "tasks/loaders.h"
#include "tasks/sampler.h"
#include "tasks/simulator.h"
#include "tasks/sinusoid.h"

namespace metatape::python {
namespace {

tasks::Split parse_split(const std::string& s) {
  if (s == "train") return tasks::Split::train;
  if (s == "validation") return tasks::Split::validation;
  if (s == "test") return tasks::Split::test;
  fail("split: '" + s + "' is not a split; use 'train', 'validation' or 'test'");
}

std::int64_t max_label(const Tensor& y) {
  std::int64_t top = -1;
  for (std::int64_t v : y.to_vector<std::int64_t>()) top = std::max(top, v);
  return top;
}

struct PyMarket {
  std::shared_ptr<const tasks::PreparedMarket> prepared;
};

// A task distribution with its own generator (sample_batch draws from it; the GIL is released).
struct PyDistribution {
  std::shared_ptr<const tasks::TaskDistribution> dist;
  Generator gen;
  tasks::Split split = tasks::Split::train;
  std::unique_ptr<std::mutex> mutex = std::make_unique<std::mutex>();
};

struct PySinusoid {
  tasks::SinusoidOptions options;
  Generator gen;
};

MetricsDict series_dict(const tasks::Series& s) {
  nb::module_ np = nb::module_::import_("numpy");
  MetricsDict d;
  d["symbol"] = s.symbol;
  d["exchange"] = s.exchange;
  d["interval"] = s.interval;
  d["fee_rate"] = s.fee_rate;
  d["time_ms"] = np.attr("array")(nb::cast(s.time_ms), nb::arg("dtype") = "int64");
  d["open"] = np.attr("array")(nb::cast(s.open));
  d["high"] = np.attr("array")(nb::cast(s.high));
  d["low"] = np.attr("array")(nb::cast(s.low));
  d["close"] = np.attr("array")(nb::cast(s.close));
  d["volume"] = np.attr("array")(nb::cast(s.volume));
  return d;
}

nb::typed<nb::list, tasks::Task> task_list(tasks::TaskBatch batch) {
  nb::typed<nb::list, tasks::Task> out;
  for (auto& t : batch) out.append(nb::cast(std::move(t)));
  return out;
}

}  // namespace

std::shared_ptr<const tasks::PreparedMarket> market_prepared(nb::handle market, const std::string& what) {
  PyMarket* p = nullptr;
  if (!nb::try_cast(market, p) || !p) {
    fail(what + " must be a metatape.tasks.Market (from metatape.tasks.simulate or load_market), got " +
         py_text(market.type().attr("__name__")));
  }
  return p->prepared;
}

void init_tasks(nb::module_& /*m*/, nb::module_& tm) {
  nb::class_<tasks::Task>(tm, "Task",
                          "A few-shot task: support and query sets (fields are NumPy arrays sharing the task's "
                          "memory), the kind and metadata.")
      .def(
          "__init__",
          [](tasks::Task* self, nb::handle sx, nb::handle sy, nb::handle qx, nb::handle qy,
             std::optional<std::string> kind, std::int64_t num_classes) {
            tasks::Task t;
            t.support_x = as_tensor(sx, "Task: support_x");
            t.query_x = as_tensor(qx, "Task: query_x", t.support_x.dtype());
            Tensor syt = as_tensor(sy, "Task: support_y");
            tasks::TaskKind k = syt.dtype() == DType::i64 ? tasks::TaskKind::classification : tasks::TaskKind::regression;
            if (kind) k = parse_task_kind(*kind);
            const std::optional<DType> ydtype =
                k == tasks::TaskKind::classification ? DType::i64 : t.support_x.dtype();
            t.support_y = as_tensor(sy, "Task: support_y", ydtype);
            t.query_y = as_tensor(qy, "Task: query_y", ydtype);
            if (k != tasks::TaskKind::classification) {
              if (t.support_y.rank() == 1) t.support_y = reshape(t.support_y, Shape{t.support_y.dim(0), 1});
              if (t.query_y.rank() == 1) t.query_y = reshape(t.query_y, Shape{t.query_y.dim(0), 1});
            }
            t.kind = k;
            if (k == tasks::TaskKind::classification && num_classes <= 0) {
              num_classes = std::max(max_label(t.support_y), max_label(t.query_y)) + 1;
            }
            t.num_classes = k == tasks::TaskKind::classification ? num_classes : 0;
            new (self) tasks::Task(std::move(t));
          },
          nb::arg("support_x"), nb::arg("support_y"), nb::arg("query_x"), nb::arg("query_y"),
          nb::arg("kind") = nb::none(), nb::arg("num_classes") = 0,
          "x: (rows, features); y: int64 labels (rows,) for classification (the default for integer y), "
          "float targets (rows, outputs) for regression; kind='portfolio' for asset returns. num_classes 0: "
          "one more than the largest label.")
      .def_prop_ro("support_x", [](const tasks::Task& t) { return to_numpy(t.support_x); })
      .def_prop_ro("support_y", [](const tasks::Task& t) { return to_numpy(t.support_y); })
      .def_prop_ro("query_x", [](const tasks::Task& t) { return to_numpy(t.query_x); })
      .def_prop_ro("query_y", [](const tasks::Task& t) { return to_numpy(t.query_y); })
      .def_prop_ro("kind", [](const tasks::Task& t) { return std::string(task_kind_text(t.kind)); })
      .def_ro("num_classes", &tasks::Task::num_classes)
      .def_ro("family", &tasks::Task::family)
      .def_ro("symbols", &tasks::Task::symbols)
      .def_ro("support_begin_ms", &tasks::Task::support_begin_ms)
      .def_ro("support_end_ms", &tasks::Task::support_end_ms)
      .def_ro("query_begin_ms", &tasks::Task::query_begin_ms)
      .def_ro("query_end_ms", &tasks::Task::query_end_ms)
      .def_ro("difficulty", &tasks::Task::difficulty)
      .def_ro("quality", &tasks::Task::quality)
      .def("__repr__", [](const tasks::Task& t) {
        return "<metatape.tasks.Task " + std::string(task_kind_text(t.kind)) + " " +
               (t.family.empty() ? std::string("") : t.family + " ") + "support " + t.support_x.shape().str() +
               " query " + t.query_x.shape().str() + ">";
      });

  nb::class_<PySinusoid>(tm, "Sinusoid",
                         "The MAML paper's sinusoid regression tasks: y = A sin(x - phi), A ~ U[amplitude), "
                         "phi ~ U[phase), x ~ U[x_range).")
      .def(
          "__init__",
          [](PySinusoid* self, std::uint64_t seed, std::int64_t support_rows, std::int64_t query_rows,
             std::pair<double, double> amplitude, std::pair<double, double> phase, std::pair<double, double> x_range,
             nb::handle dtype) {
            tasks::SinusoidOptions o;
            o.support_rows = support_rows;
            o.query_rows = query_rows;
            o.amplitude_lo = amplitude.first;
            o.amplitude_hi = amplitude.second;
            o.phase_lo = phase.first;
            o.phase_hi = phase.second;
            o.x_lo = x_range.first;
            o.x_hi = x_range.second;
            o.dtype = dtype.is_none() ? DType::f32 : parse_dtype(dtype);
            new (self) PySinusoid{o, Generator(seed)};
          },
          nb::arg("seed") = 0, nb::arg("support_rows") = 10, nb::arg("query_rows") = 10,
          nb::arg("amplitude") = std::pair<double, double>{0.1, 5.0},
          nb::arg("phase") = std::pair<double, double>{0.0, 3.141592653589793},
          nb::arg("x_range") = std::pair<double, double>{-5.0, 5.0}, nb::arg("dtype") = nb::none(),
          "Tasks drawn from Generator(seed): support_rows and query_rows rows each, float32 unless dtype.")
      .def("sample", [](PySinusoid& s) { return tasks::sample_sinusoid(s.gen, s.options); }, "One task.")
      .def("sample_batch", [](PySinusoid& s, std::int64_t n) {
             return task_list(tasks::sample_sinusoid_batch(s.gen, n, s.options));
           }, nb::arg("n"), "A list of n tasks.");

  nb::class_<PyMarket>(tm, "Market", "A market (aligned OHLCV series) with its features computed once.")
      .def_prop_ro("rows", [](const PyMarket& p) { return p.prepared->market.rows(); }, "Bars on the common axis.")
      .def_prop_ro("symbols", [](const PyMarket& p) { return p.prepared->market.symbols(); })
      .def_prop_ro("series_labels", [](const PyMarket& p) {
        std::vector<std::string> out;
        for (const auto& s : p.prepared->market.series) out.push_back(s.label());
        return out;
      }, "'BTC/USDT@binance 1h' per series, in index order.")
      .def("series", [](const PyMarket& p, int i) {
        const auto& all = p.prepared->market.series;
        if (i < 0 || i >= static_cast<int>(all.size())) {
          fail("market.series: index " + std::to_string(i) + " out of range (" + std::to_string(all.size()) + " series)");
        }
        return series_dict(all[static_cast<std::size_t>(i)]);
      }, nb::arg("index"), "One series as a dict of NumPy columns (time_ms, open, high, low, close, volume) "
                           "and its metadata; loads into pandas.DataFrame without conversion.");

  tm.def(
      "simulate",
      [](std::uint64_t seed, int assets, int exchanges, std::int64_t bars, bool cross_pairs, double return_autocorrelation) {
        tasks::SimulatorConfig c;
        c.seed = seed;
        c.assets = assets;
        c.exchanges = exchanges;
        c.bars = bars;
        c.cross_pairs = cross_pairs;
        c.return_autocorrelation = return_autocorrelation;
        nb::gil_scoped_release release;
        return PyMarket{tasks::PreparedMarket::make(tasks::simulate_market(c).market)};
      },
      nb::arg("seed") = 1, nb::arg("assets") = 4, nb::arg("exchanges") = 2, nb::arg("bars") = 4000,
      nb::arg("cross_pairs") = false, nb::arg("return_autocorrelation") = 0.0,
      "The built-in market simulator (deterministic by seed): regimes, GARCH volatility, jumps, several "
      "exchanges with lags and spreads.");
  tm.def(
      "load_market",
      [](const std::vector<std::string>& paths) {
        nb::gil_scoped_release release;
        return PyMarket{tasks::PreparedMarket::make(tasks::load_market(paths))};
      },
      nb::arg("paths"), "Loads OHLCV files (CSV, Freqtrade JSON; .gz) and aligns them on time.");
  tm.def("family_names", &tasks::family_names, "The task families.");

  nb::class_<PyDistribution>(tm, "TaskDistribution",
                             "Families x series groups x periods x horizons, split forward in time "
                             "(train / validation / test).")
      .def(
          "__init__",
          [](PyDistribution* self, const PyMarket& market, std::vector<std::string> families,
             std::int64_t support_size, std::int64_t query_size, std::vector<std::int64_t> horizons,
             std::int64_t embargo, std::int64_t stride, std::uint64_t seed, const std::string& split,
             double train_end, double validation_end, std::vector<std::string> holdout_symbols) {
            tasks::DistributionConfig c;
            c.families = std::move(families);
            c.support_size = support_size;
            c.query_size = query_size;
            c.horizons = std::move(horizons);
            c.embargo = embargo;
            c.stride = stride;
            c.splits.train_end = train_end;
            c.splits.validation_end = validation_end;
            c.splits.holdout_symbols = std::move(holdout_symbols);
            auto dist = std::make_shared<const tasks::TaskDistribution>(market.prepared, c);
            new (self) PyDistribution{dist, Generator(seed), parse_split(split)};
          },
          nb::arg("market"), nb::arg("families") = std::vector<std::string>{"price_direction"},
          nb::arg("support_size") = 20, nb::arg("query_size") = 20, nb::arg("horizons") = std::vector<std::int64_t>{4},
          nb::arg("embargo") = 0, nb::arg("stride") = 1, nb::arg("seed") = 1, nb::arg("split") = "train",
          nb::arg("train_end") = 0.6, nb::arg("validation_end") = 0.8,
          nb::arg("holdout_symbols") = std::vector<std::string>{},
          "families: names from family_names(); horizons: label horizons in bars; embargo 0 = the horizon; "
          "splits cut the axis at train_end and validation_end (fractions); holdout_symbols appear in the "
          "test split only; sample_batch draws from Generator(seed) in `split` unless told otherwise.")
      .def(
          "sample_batch",
          [](PyDistribution& d, std::int64_t n, std::optional<std::string> split) {
            tasks::TaskBatch b;
            const tasks::Split s = split ? parse_split(*split) : d.split;
            {
              nb::gil_scoped_release release;
              std::lock_guard<std::mutex> lock(*d.mutex);
              b = d.dist->sample_batch(s, n, d.gen);
            }
            return task_list(std::move(b));
          },
          nb::arg("n"), nb::arg("split") = nb::none(), "n tasks of the split (default: the distribution's).")
      .def("feature_dim", [](const PyDistribution& d) { return d.dist->feature_dim(); },
           "The feature count (all families must share it).")
      .def("split_rows", [](const PyDistribution& d, const std::string& split) {
             return d.dist->split_rows(parse_split(split));
           }, nb::arg("split"), "[begin, end) rows of a split on the common axis.")
      .def_prop_ro("fingerprint", [](const PyDistribution& d) { return d.dist->fingerprint(); });
}

}  // namespace metatape::python
