#include "tasks/omniglot.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

#include "kernels/error.h"
#include "tasks/gray_image.h"

namespace metatape::tasks {

namespace fs = std::filesystem;

namespace {

const char* const where_to_get = "see ../shared/data/omniglot/SOURCES.md for where to get it";

std::vector<fs::path> sorted_subdirectories(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

bool is_png_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".png";
}

std::vector<fs::path> sorted_pngs(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && is_png_name(e.path())) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// A 105x105 Omniglot PNG -> image_size^2 ink values (see the header's "A drawing").
std::vector<float> read_drawing(const fs::path& file, std::int64_t image_size) {
  const GrayImage gray = read_png_gray(file);
  if (gray.width != omniglot_source_side || gray.height != omniglot_source_side) {
    fail("omniglot: " + file.string() + ": the image is " + std::to_string(gray.width) + "x" +
         std::to_string(gray.height) + ", Omniglot drawings are " + std::to_string(omniglot_source_side) + "x" +
         std::to_string(omniglot_source_side) + " (replace it with the original; " + where_to_get + ")");
  }
  return resize_area(ink_from_gray(gray), gray.height, gray.width, image_size, image_size);
}

void require_image_size(std::int64_t image_size) {
  if (image_size < 1) fail("omniglot: image_size must be >= 1, got " + std::to_string(image_size));
}

}  // namespace

std::int64_t OmniglotDataset::drawings() const {
  std::int64_t n = 0;
  for (const auto& c : characters) n += static_cast<std::int64_t>(c.drawings.size());
  return n;
}

std::vector<std::string> OmniglotDataset::alphabets() const {
  std::set<std::string> names;
  for (const auto& c : characters) names.insert(c.alphabet);
  return {names.begin(), names.end()};
}

OmniglotDataset load_omniglot(const std::vector<fs::path>& set_dirs, const OmniglotOptions& options) {
  require_image_size(options.image_size);
  if (set_dirs.empty()) fail("omniglot: no set folders given (pass e.g. <data>/omniglot/images_background_small1)");
  OmniglotDataset d;
  d.image_size = options.image_size;
  std::set<std::pair<std::string, std::string>> seen;  // (alphabet, character) already loaded
  for (const fs::path& set_dir : set_dirs) {
    if (!fs::is_directory(set_dir)) {
      fail("omniglot: " + set_dir.string() + ": no such folder (unzip the Omniglot set there; " + where_to_get + ")");
    }
    OmniglotSetCount count;
    count.source = set_dir.filename().string();
    if (count.source.empty()) count.source = set_dir.parent_path().filename().string();  // "dir/" spelled with a slash
    const std::vector<fs::path> alphabets = sorted_subdirectories(set_dir);
    if (alphabets.empty()) {
      fail("omniglot: " + set_dir.string() +
           ": holds no alphabet folders (expected alphabet/character/*.png; is it the right folder?)");
    }
    for (const fs::path& alphabet_dir : alphabets) {
      const std::vector<fs::path> characters = sorted_subdirectories(alphabet_dir);
      if (characters.empty()) {
        fail("omniglot: " + alphabet_dir.string() +
             ": an alphabet folder with no character folders (re-extract the set; " + where_to_get + ")");
      }
      for (const fs::path& character_dir : characters) {
        ++count.characters;
        OmniglotCharacter c;
        c.alphabet = alphabet_dir.filename().string();
        c.name = character_dir.filename().string();
        c.source = count.source;
        if (!seen.insert({c.alphabet, c.name}).second) {
          ++count.duplicates;  // the first set's copy is kept (see the header)
          continue;
        }
        const std::vector<fs::path> files = sorted_pngs(character_dir);
        if (files.empty()) {
          fail("omniglot: " + character_dir.string() +
               ": a character folder with no PNG drawings (re-extract the set; " + where_to_get + ")");
        }
        c.drawings.reserve(files.size());
        for (const fs::path& f : files) c.drawings.push_back(read_drawing(f, options.image_size));
        d.characters.push_back(std::move(c));
      }
    }
    d.sets.push_back(count);
  }
  std::sort(d.characters.begin(), d.characters.end(), [](const OmniglotCharacter& a, const OmniglotCharacter& b) {
    return std::tie(a.alphabet, a.name) < std::tie(b.alphabet, b.name);
  });
  return d;
}

std::string omniglot_summary(const OmniglotDataset& d) {
  std::ostringstream s;
  s << "omniglot: " << d.characters.size() << " characters in " << d.alphabets().size() << " alphabets, "
    << d.drawings() << " drawings at " << d.image_size << "x" << d.image_size << " (";
  for (std::size_t i = 0; i < d.sets.size(); ++i) {
    if (i > 0) s << "; ";
    s << d.sets[i].source << ": " << d.sets[i].characters << " characters";
    if (d.sets[i].duplicates > 0) s << ", " << d.sets[i].duplicates << " already loaded";
  }
  s << ")";
  return s.str();
}

OmniglotSplit split_omniglot(const OmniglotDataset& d, const OmniglotSplitOptions& o) {
  auto require_fraction = [](double f, const char* name) {
    if (!std::isfinite(f) || f < 0.0 || f > 1.0) {
      fail(std::string("omniglot split: ") + name + " must be in [0, 1], got " + std::to_string(f));
    }
  };
  require_fraction(o.validation_fraction, "validation_fraction");
  require_fraction(o.test_fraction, "test_fraction");
  if (o.validation_fraction + o.test_fraction > 1.0 + 1e-12) {
    fail("omniglot split: validation_fraction " + std::to_string(o.validation_fraction) + " + test_fraction " +
         std::to_string(o.test_fraction) + " exceed 1 (meta-training gets the rest; lower them)");
  }
  OmniglotSplit split;
  Generator gen(o.seed);
  const auto n_chars = static_cast<std::int64_t>(d.characters.size());
  // d.characters is sorted by (alphabet, name): each alphabet is one contiguous range.
  for (std::int64_t begin = 0; begin < n_chars;) {
    std::int64_t end = begin;
    while (end < n_chars && d.characters[static_cast<std::size_t>(end)].alphabet ==
                                d.characters[static_cast<std::size_t>(begin)].alphabet)
      ++end;
    const std::int64_t n = end - begin;
    std::vector<std::int64_t> ids;
    for (std::int64_t i = begin; i < end; ++i) ids.push_back(i);
    for (std::int64_t i = n - 1; i >= 1; --i) {
      const auto j = static_cast<std::int64_t>(gen.below(static_cast<std::uint64_t>(i + 1)));
      std::swap(ids[static_cast<std::size_t>(i)], ids[static_cast<std::size_t>(j)]);
    }
    auto count = [n](double fraction) {
      std::int64_t k = std::llround(fraction * static_cast<double>(n));
      if (fraction > 0.0 && n >= 3) k = std::max<std::int64_t>(k, 1);
      return k;
    };
    const std::int64_t n_test = std::min(count(o.test_fraction), n);
    const std::int64_t n_val = std::min(count(o.validation_fraction), n - n_test);
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t id = ids[static_cast<std::size_t>(i)];
      if (i < n_test) {
        split.test_characters.push_back(id);
      } else if (i < n_test + n_val) {
        split.validation_characters.push_back(id);
      } else {
        split.train_characters.push_back(id);
      }
    }
    begin = end;
  }
  std::sort(split.train_characters.begin(), split.train_characters.end());
  std::sort(split.validation_characters.begin(), split.validation_characters.end());
  std::sort(split.test_characters.begin(), split.test_characters.end());
  const int train_turns = o.rotations ? 4 : 1;
  for (std::int64_t c : split.train_characters)
    for (int t = 0; t < train_turns; ++t) split.train_classes.push_back({c, t});
  for (std::int64_t c : split.validation_characters) split.validation_classes.push_back({c, 0});
  for (std::int64_t c : split.test_characters) split.test_classes.push_back({c, 0});
  return split;
}

Task sample_omniglot_episode(const OmniglotDataset& d, const std::vector<OmniglotClass>& pool, Generator& gen,
                             const OmniglotEpisodeOptions& o) {
  auto require_positive = [](std::int64_t value, const char* name) {
    if (value < 1) fail(std::string("omniglot episode: ") + name + " must be >= 1, got " + std::to_string(value));
  };
  require_positive(o.ways, "ways");
  require_positive(o.shots, "shots");
  require_positive(o.queries, "queries");
  const auto pool_size = static_cast<std::int64_t>(pool.size());
  if (o.ways > pool_size) {
    fail("omniglot episode: " + std::to_string(o.ways) + "-way episodes need " + std::to_string(o.ways) +
         " classes, the pool has " + std::to_string(pool_size) +
         " (lower ways, or give this part of the split more characters)");
  }
  const std::int64_t per_class = o.shots + o.queries;
  for (const OmniglotClass& c : pool) {
    if (c.character < 0 || c.character >= static_cast<std::int64_t>(d.characters.size())) {
      fail("omniglot episode: the pool names character " + std::to_string(c.character) + ", the dataset has " +
           std::to_string(d.characters.size()) + " (was the split made from another dataset?)");
    }
    if (c.quarter_turns < 0 || c.quarter_turns > 3) {
      fail("omniglot episode: a pool class has quarter_turns " + std::to_string(c.quarter_turns) + ", expected 0..3");
    }
    const OmniglotCharacter& ch = d.characters[static_cast<std::size_t>(c.character)];
    if (per_class > static_cast<std::int64_t>(ch.drawings.size())) {
      fail("omniglot episode: shots " + std::to_string(o.shots) + " + queries " + std::to_string(o.queries) + " = " +
           std::to_string(per_class) + " drawings per class, but " + ch.alphabet + "/" + ch.name + " has " +
           std::to_string(ch.drawings.size()) + " (lower shots or queries)");
    }
  }
  // Partial Fisher-Yates: the first k entries of `ids` become k distinct uniform draws from n.
  auto draw_distinct = [&gen](std::int64_t n, std::int64_t k) {
    std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) ids[static_cast<std::size_t>(i)] = i;
    for (std::int64_t i = 0; i < k; ++i) {
      const auto j = i + static_cast<std::int64_t>(gen.below(static_cast<std::uint64_t>(n - i)));
      std::swap(ids[static_cast<std::size_t>(i)], ids[static_cast<std::size_t>(j)]);
    }
    ids.resize(static_cast<std::size_t>(k));
    return ids;
  };
  const std::vector<std::int64_t> chosen = draw_distinct(pool_size, o.ways);  // chosen[label] = pool index
  const std::int64_t side = d.image_size, features = side * side;
  std::vector<float> sx, qx;
  sx.reserve(static_cast<std::size_t>(o.ways * o.shots * features));
  qx.reserve(static_cast<std::size_t>(o.ways * o.queries * features));
  std::vector<std::int64_t> sy, qy;
  for (std::int64_t label = 0; label < o.ways; ++label) {
    const OmniglotClass& c = pool[static_cast<std::size_t>(chosen[static_cast<std::size_t>(label)])];
    const auto& drawings = d.characters[static_cast<std::size_t>(c.character)].drawings;
    const std::vector<std::int64_t> picks = draw_distinct(static_cast<std::int64_t>(drawings.size()), per_class);
    for (std::int64_t r = 0; r < per_class; ++r) {
      const auto& drawing = drawings[static_cast<std::size_t>(picks[static_cast<std::size_t>(r)])];
      const std::vector<float> rotated =
          c.quarter_turns == 0 ? drawing : rotate_quarter_turns(drawing, side, c.quarter_turns);
      const bool support = r < o.shots;
      auto& x = support ? sx : qx;
      x.insert(x.end(), rotated.begin(), rotated.end());
      (support ? sy : qy).push_back(label);
    }
  }
  Task t;
  t.support_x = Tensor::from_vector(sx, Shape{o.ways * o.shots, features}, DType::f32, o.device);
  t.support_y = Tensor::indices(sy, o.device);
  t.query_x = Tensor::from_vector(qx, Shape{o.ways * o.queries, features}, DType::f32, o.device);
  t.query_y = Tensor::indices(qy, o.device);
  t.kind = TaskKind::classification;
  t.num_classes = o.ways;
  t.family = "omniglot";
  return t;
}

Task load_omniglot_one_shot_run(const fs::path& runs_dir, int run, const OmniglotOptions& options) {
  require_image_size(options.image_size);
  if (run < 1 || run > omniglot_one_shot_runs) {
    fail("omniglot one-shot: run " + std::to_string(run) + " does not exist, the runs are 1.." +
         std::to_string(omniglot_one_shot_runs));
  }
  const std::string run_name = (run < 10 ? "run0" : "run") + std::to_string(run);
  const fs::path run_dir = runs_dir / run_name;
  if (!fs::is_directory(run_dir)) {
    fail("omniglot one-shot: " + run_dir.string() + ": no such folder (unzip all_runs.zip into " + runs_dir.string() +
         "; " + where_to_get + ")");
  }
  auto images_of = [&](const char* folder) {
    const fs::path dir = run_dir / folder;
    if (!fs::is_directory(dir)) fail("omniglot one-shot: " + dir.string() + ": no such folder (re-extract the run)");
    std::vector<fs::path> files = sorted_pngs(dir);
    if (static_cast<std::int64_t>(files.size()) != omniglot_one_shot_ways) {
      fail("omniglot one-shot: " + dir.string() + ": holds " + std::to_string(files.size()) + " PNGs, a run has " +
           std::to_string(omniglot_one_shot_ways) + " (re-extract the run)");
    }
    return files;
  };
  const std::vector<fs::path> training = images_of("training"), test = images_of("test");
  auto index_by_name = [](const std::vector<fs::path>& files) {
    std::map<std::string, std::int64_t> m;
    for (std::size_t i = 0; i < files.size(); ++i) m[files[i].filename().string()] = static_cast<std::int64_t>(i);
    return m;
  };
  const auto training_index = index_by_name(training), test_index = index_by_name(test);

  const fs::path labels_file = run_dir / "class_labels.txt";
  std::ifstream in(labels_file);
  if (!in) fail("omniglot one-shot: " + labels_file.string() + ": cannot open it (re-extract the run)");
  std::vector<std::int64_t> label_of_test(test.size(), -1);
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    const std::string at = "omniglot one-shot: " + labels_file.string() + ": line " + std::to_string(line_no) + ": ";
    std::istringstream words(line);
    std::vector<std::string> paths;
    for (std::string w; words >> w;) paths.push_back(w);
    if (paths.empty()) continue;  // blank line (or a trailing "\r")
    if (paths.size() != 2) {
      fail(at + "expected two paths, \"" + run_name + "/test/itemXX.png " + run_name +
           "/training/classYY.png\", got \"" + line + "\"");
    }
    // Each path must name a file of this run's folder: "<run_name>/<folder>/<file>".
    auto resolve = [&](const std::string& p, const char* folder, const std::map<std::string, std::int64_t>& index) {
      const fs::path rel = fs::path(p).lexically_normal();
      if (rel.parent_path() != fs::path(run_name) / folder) {
        fail(at + "\"" + p + "\" is not in " + run_name + "/" + folder + "/ (the paths are relative to " +
             runs_dir.string() + ")");
      }
      const auto it = index.find(rel.filename().string());
      if (it == index.end())
        fail(at + "\"" + p + "\" names a file that does not exist in " + (run_dir / folder).string());
      return it->second;
    };
    const std::int64_t q = resolve(paths[0], "test", test_index);
    const std::int64_t label = resolve(paths[1], "training", training_index);
    if (label_of_test[static_cast<std::size_t>(q)] >= 0) fail(at + "\"" + paths[0] + "\" is labelled a second time");
    label_of_test[static_cast<std::size_t>(q)] = label;
  }
  for (std::size_t q = 0; q < test.size(); ++q) {
    if (label_of_test[q] < 0) {
      fail("omniglot one-shot: " + labels_file.string() + ": no line labels " + run_name + "/test/" +
           test[q].filename().string() + " (re-extract the run)");
    }
  }

  const std::int64_t features = options.image_size * options.image_size;
  auto read_all = [&](const std::vector<fs::path>& files) {
    std::vector<float> x;
    x.reserve(files.size() * static_cast<std::size_t>(features));
    for (const fs::path& f : files) {
      const std::vector<float> drawing = read_drawing(f, options.image_size);
      x.insert(x.end(), drawing.begin(), drawing.end());
    }
    return x;
  };
  std::vector<std::int64_t> support_y(training.size());
  for (std::size_t i = 0; i < support_y.size(); ++i) support_y[i] = static_cast<std::int64_t>(i);
  Task t;
  t.support_x = Tensor::from_vector(read_all(training), Shape{omniglot_one_shot_ways, features});
  t.support_y = Tensor::indices(support_y);
  t.query_x = Tensor::from_vector(read_all(test), Shape{omniglot_one_shot_ways, features});
  t.query_y = Tensor::indices(label_of_test);
  t.kind = TaskKind::classification;
  t.num_classes = omniglot_one_shot_ways;
  t.family = "omniglot";
  return t;
}

}  // namespace metatape::tasks
