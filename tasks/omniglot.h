// Omniglot (Lake, Salakhutdinov and Tenenbaum 2015) few-shot image classification: the background
// sets, a seeded split of their characters, N-way K-shot episodes, and the 20 official one-shot runs.
// Data layout and provenance: ../shared/data/omniglot/SOURCES.md.
//
// A drawing: a 105x105 PNG, ink black on white, read to 8-bit gray (tasks/gray_image.h), turned into
// ink intensity 1 - gray/255 (ink 1, background 0, as MAML's Omniglot preprocessing) and resized to
// image_size x image_size by exact area averaging. Stored as a vector<float> of image_size^2 values,
// row-major; a task's x rows are these vectors.
//
// Task fields (episodes and one-shot runs): kind classification, family "omniglot", num_classes = N,
// support_x f32 (N*K, image_size^2), support_y i64 (N*K), query_x f32 (rows, image_size^2),
// query_y i64. No time axis: the *_ms fields stay 0.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "autograd/random.h"
#include "tasks/task.h"

namespace metatape::tasks {

constexpr std::int64_t omniglot_source_side = 105;  // every Omniglot PNG is 105x105

struct OmniglotOptions {
  std::int64_t image_size = 28;  // output side; 28 as in MAML and Prototypical Networks
};

struct OmniglotCharacter {
  std::string alphabet;                      // the alphabet folder's name, e.g. "Greek"
  std::string name;                          // the character folder's name, e.g. "character01"
  std::string source;                        // the set folder it was read from, e.g. "images_background_small1"
  std::vector<std::vector<float>> drawings;  // in file-name order; each image_size^2, row-major
};

// What one set folder contributed.
struct OmniglotSetCount {
  std::string source;           // the set folder's name
  std::int64_t characters = 0;  // character folders found in it
  std::int64_t duplicates = 0;  // of those, already loaded from an earlier set (not loaded again)
};

struct OmniglotDataset {
  std::int64_t image_size = 0;
  std::vector<OmniglotCharacter> characters;  // sorted by (alphabet, name); the index is the character id
  std::vector<OmniglotSetCount> sets;         // in load order

  std::int64_t drawings() const;               // over all characters
  std::vector<std::string> alphabets() const;  // sorted, distinct
};

// Loads the characters of one or more Omniglot set folders (each: alphabet/character/*.png, e.g.
// images_background_small1). Alphabets, characters and drawings are read in sorted name order, so the
// result does not depend on the file system's listing order. A character (same alphabet and character
// folder name) found in more than one set is kept once, from the first set listed: in the "small"
// background sets Greek and Latin appear in both, as byte-identical copies, so which copy is kept
// changes no pixel; the later copies are counted in OmniglotSetCount::duplicates and not decoded.
// Stray files beside the folders (README, .DS_Store) and non-.png files in a character folder are
// ignored. Throws, naming the path and what to do, when a set folder is missing or holds no
// alphabets, an alphabet holds no characters, a character holds no PNG, a PNG does not decode
// (tasks/gray_image.h) or is not 105x105, or image_size < 1.
OmniglotDataset load_omniglot(const std::vector<std::filesystem::path>& set_dirs, const OmniglotOptions& options = {});

// One line for logs, e.g. "omniglot: 242 characters in 8 alphabets, 4840 drawings at 28x28
// (images_background_small1: 136 characters; images_background_small2: 156 characters, 50 already
// loaded)".
std::string omniglot_summary(const OmniglotDataset& dataset);

// A class of an episode: a character, possibly rotated.
struct OmniglotClass {
  std::int64_t character = 0;  // index into OmniglotDataset::characters
  int quarter_turns = 0;       // 0..3: counter-clockwise rotation by 90 degrees times this (exact)
};

struct OmniglotSplitOptions {
  std::uint64_t seed = 0;
  double validation_fraction = 0.1;
  double test_fraction = 0.2;  // meta-training gets the rest (0.7 by default)
  // Meta-training classes are every training character at 0, 90, 180 and 270 degrees, each rotation
  // a class of its own (Santoro et al. 2016, MAML); false: unrotated only. Evaluation classes are
  // always unrotated.
  bool rotations = true;
};

// The split rule, stratified by alphabet so every alphabet contributes to every part where it can:
// one Generator(seed); for each alphabet in name order, its n characters (in name order) are shuffled
// by Fisher-Yates with that generator, then the first n_test go to meta-test, the next n_val to
// meta-validation and the rest to meta-training, where n_test = round(test_fraction * n) and
// n_val = round(validation_fraction * n), raised to 1 when the fraction is > 0 and n >= 3, then
// clipped so n_test <= n and n_test + n_val <= n. The same seed and dataset give the same split.
// The three character sets are disjoint: a held-out character is never in a meta-training class.
struct OmniglotSplit {
  std::vector<std::int64_t> train_characters, validation_characters, test_characters;  // ascending
  std::vector<OmniglotClass> train_classes, validation_classes, test_classes;          // by character, then turns
};

// Throws when a fraction is negative or not finite, or the two sum above 1.
OmniglotSplit split_omniglot(const OmniglotDataset& dataset, const OmniglotSplitOptions& options = {});

struct OmniglotEpisodeOptions {
  std::int64_t ways = 5;      // N: classes per episode
  std::int64_t shots = 1;     // K: support drawings per class
  std::int64_t queries = 15;  // Q: query drawings per class
  Device device = Device::cpu;
};

// An N-way K-shot episode from `pool` (e.g. OmniglotSplit::train_classes). Draw order, all from
// `gen`: N distinct classes of the pool by a partial Fisher-Yates shuffle, the i-th drawn getting
// label i (so the class-to-label map is random per episode); then, per label in order, K+Q distinct
// drawings of its character by a partial Fisher-Yates shuffle, the first K to the support, the next Q
// to the query (disjoint). Rows are grouped by label: label 0's K (Q) rows first. A class's rotation
// is applied to its drawings. The same generator state gives the same episode. Throws, with the
// numbers, when a count is < 1, N exceeds the pool, K+Q exceeds the drawings of a pool character, or
// a pool entry is not a character of `dataset` / has turns outside 0..3.
Task sample_omniglot_episode(const OmniglotDataset& dataset, const std::vector<OmniglotClass>& pool, Generator& gen,
                             const OmniglotEpisodeOptions& options = {});

// The 20 within-alphabet one-shot classification runs of Lake et al. (2015), drawn from the
// evaluation alphabets (none of which is a background alphabet). `runs_dir` holds run01..run20, each
// with training/ (20 PNGs, one per class), test/ (20 PNGs) and class_labels.txt, one line per test
// image: "runNN/test/itemXX.png runNN/training/classYY.png" (paths relative to runs_dir).
constexpr int omniglot_one_shot_runs = 20;
constexpr std::int64_t omniglot_one_shot_ways = 20;

// Run `run` (1..20) as a 20-way 1-shot task: support = the training images in name order with labels
// 0..19, query = the test images in name order, each labelled with the index of the training image
// class_labels.txt pairs it with. Images are prepared as the background drawings are. Throws, naming
// the file (and line) and what to do, when the run folder, a folder or class_labels.txt is missing, a
// folder does not hold exactly 20 PNGs, a line does not have two paths, a path is not in the run's
// test/ or training/ folder or names a file that does not exist, a test image is labelled twice or
// not at all, or an image does not decode or is not 105x105.
Task load_omniglot_one_shot_run(const std::filesystem::path& runs_dir, int run, const OmniglotOptions& options = {});

}  // namespace metatape::tasks
