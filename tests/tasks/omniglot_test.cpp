// tasks/gray_image.h and tasks/omniglot.h. The fast cases write their own PNGs (a small encoder below,
// on zlib, so any colour type, bit depth and declared size can be made, hostile ones included) into a
// temp folder: decoding of each format, the area resize against hand-computed values, rotation,
// every hostile-file error, loading with deduplication, the split, episodes and a one-shot run. The
// "real data: ..." cases read ../shared/data/omniglot.
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <system_error>
#include <tuple>
#include <vector>

#include "tasks/gray_image.h"
#include "tasks/omniglot.h"
#include "shared_data.h"

using namespace metatape;
using namespace metatape::tasks;
namespace fs = std::filesystem;

namespace {

using Bytes = std::vector<std::uint8_t>;

void put_u32(Bytes& out, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(v >> s));
}

void put_chunk(Bytes& out, const char* type, const Bytes& data) {
  put_u32(out, static_cast<std::uint32_t>(data.size()));
  Bytes body(type, type + 4);
  body.insert(body.end(), data.begin(), data.end());
  out.insert(out.end(), body.begin(), body.end());
  put_u32(out, static_cast<std::uint32_t>(crc32(0, body.data(), static_cast<uInt>(body.size()))));
}

// A PNG: `rows` are the raw scanlines (already packed for the bit depth), each written with filter 0;
// color_type as in the PNG spec (0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA). The declared width
// and height need not match the rows (hostile files).
Bytes encode_png(std::uint32_t width, std::uint32_t height, int bit_depth, int color_type,
                 const std::vector<Bytes>& rows, const Bytes& palette = {}) {
  Bytes out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  Bytes ihdr;
  put_u32(ihdr, width);
  put_u32(ihdr, height);
  for (int v : {bit_depth, color_type, 0, 0, 0}) ihdr.push_back(static_cast<std::uint8_t>(v));
  put_chunk(out, "IHDR", ihdr);
  if (!palette.empty()) put_chunk(out, "PLTE", palette);
  Bytes raw;
  for (const Bytes& r : rows) {
    raw.push_back(0);
    raw.insert(raw.end(), r.begin(), r.end());
  }
  uLongf size = compressBound(static_cast<uLong>(raw.size()));
  Bytes z(size);
  REQUIRE(compress(z.data(), &size, raw.data(), static_cast<uLong>(raw.size())) == Z_OK);
  z.resize(size);
  put_chunk(out, "IDAT", z);
  put_chunk(out, "IEND", {});
  return out;
}

// An 8-bit gray PNG of `gray` (height rows of width values).
Bytes gray8_png(std::int64_t width, std::int64_t height, const std::vector<std::uint8_t>& gray) {
  std::vector<Bytes> rows;
  for (std::int64_t r = 0; r < height; ++r) rows.emplace_back(gray.begin() + r * width, gray.begin() + (r + 1) * width);
  return encode_png(static_cast<std::uint32_t>(width), static_cast<std::uint32_t>(height), 8, 0, rows);
}

void write_file(const fs::path& p, const Bytes& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void write_text(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

// One folder per process (ctest may run entries side by side), removed at exit.
struct TempRoot {
  fs::path path = fs::temp_directory_path() / ("metatape_omniglot_test_" + std::to_string(::getpid()));
  TempRoot() {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempRoot() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

const fs::path& temp_root() {
  static const TempRoot root;
  return root.path;
}

GrayImage decode(const Bytes& b) { return decode_png_gray(b.data(), b.size(), "test.png"); }

// ---- a tiny Omniglot in the real layout ----------------------------------------------------------
// set1: Alpha (4 characters), Shared (3); set2: Shared (3, the same names: duplicates), Beta (5).
// 6 drawings per character. Drawing d of a character is white with one 15x15 block of the
// character's gray level at block position blocks[d] of the 7x7 grid of 15-pixel blocks; at
// image_size 28 a block is exactly 4x4 output pixels (105/28 = 15/4). The block positions (a < b,
// a + b < 6) are such that no rotation of one drawing equals another drawing of the same character.
constexpr int fixture_drawings = 6;
const std::pair<int, int> blocks[fixture_drawings] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {0, 4}};

Bytes fixture_drawing(std::uint8_t level, int d) {
  std::vector<std::uint8_t> gray(105 * 105, 255);
  const auto [a, b] = blocks[d];
  for (int r = 15 * a; r < 15 * a + 15; ++r)
    for (int c = 15 * b; c < 15 * b + 15; ++c) gray[static_cast<std::size_t>(r * 105 + c)] = level;
  return gray8_png(105, 105, gray);
}

// The gray level of a character: distinct per (alphabet, character), the same in both sets.
std::uint8_t fixture_level(const std::string& alphabet, int character) {
  const int base = alphabet == "Alpha" ? 0 : alphabet == "Shared" ? 10 : 20;
  return static_cast<std::uint8_t>(5 * (base + character));
}

void write_fixture_character(const fs::path& set_dir, const std::string& alphabet, int character) {
  const fs::path dir = set_dir / alphabet / ("character0" + std::to_string(character));
  for (int d = 0; d < fixture_drawings; ++d) {
    write_file(dir / ("0001_0" + std::to_string(d + 1) + ".png"),
               fixture_drawing(fixture_level(alphabet, character), d));
  }
}

const fs::path& fixture_root() {
  static const fs::path root = [] {
    const fs::path r = temp_root() / "omniglot";
    for (int c = 1; c <= 4; ++c) write_fixture_character(r / "set1", "Alpha", c);
    for (int c = 1; c <= 3; ++c) write_fixture_character(r / "set1", "Shared", c);
    for (int c = 1; c <= 3; ++c) write_fixture_character(r / "set2", "Shared", c);
    for (int c = 1; c <= 5; ++c) write_fixture_character(r / "set2", "Beta", c);
    write_text(r / "set1" / "README.txt", "a stray file, ignored");
    return r;
  }();
  return root;
}

const OmniglotDataset& fixture_dataset() {
  static const OmniglotDataset d = load_omniglot({fixture_root() / "set1", fixture_root() / "set2"});
  return d;
}

// Identifies a row: (character, drawing, quarter turns) of the dataset drawing it equals exactly.
using RowId = std::tuple<std::int64_t, int, int>;
std::map<std::vector<float>, RowId> row_lookup(const OmniglotDataset& d) {
  std::map<std::vector<float>, RowId> m;
  for (std::size_t c = 0; c < d.characters.size(); ++c)
    for (std::size_t k = 0; k < d.characters[c].drawings.size(); ++k)
      for (int t = 0; t < 4; ++t) {
        const auto inserted = m.emplace(rotate_quarter_turns(d.characters[c].drawings[k], d.image_size, t),
                                        RowId{static_cast<std::int64_t>(c), static_cast<int>(k), t});
        REQUIRE(inserted.second);  // every (character, drawing, turns) looks different
      }
  return m;
}

std::vector<RowId> identify_rows(const Tensor& x, const std::map<std::vector<float>, RowId>& lookup) {
  const auto v = x.to_vector<float>();
  const auto width = static_cast<std::size_t>(x.dim(1));
  std::vector<RowId> ids;
  for (std::size_t r = 0; r * width < v.size(); ++r) {
    const std::vector<float> row(v.begin() + static_cast<std::ptrdiff_t>(r * width),
                                 v.begin() + static_cast<std::ptrdiff_t>((r + 1) * width));
    const auto it = lookup.find(row);
    REQUIRE(it != lookup.end());
    ids.push_back(it->second);
  }
  return ids;
}

// One fake one-shot run: 20 training and 20 test images, test item i labelled with class perm[i].
const int one_shot_perm[20] = {7, 8, 1, 18, 9, 17, 12, 0, 3, 10, 16, 2, 19, 6, 11, 4, 5, 14, 13, 15};

std::string two(int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%02d", i);
  return buf;
}

std::string one_shot_labels(const std::string& run) {
  std::string s;
  for (int i = 0; i < 20; ++i)
    s += run + "/test/item" + two(i + 1) + ".png " + run + "/training/class" + two(one_shot_perm[i] + 1) + ".png\n";
  return s;
}

// Class c's image: white with a 15x15 block of level 10*c + 5 at block (c % 7, c / 7); test images use
// their class's level too, so the query row equals its class's support row.
Bytes one_shot_image(int c) {
  std::vector<std::uint8_t> gray(105 * 105, 255);
  for (int r = 15 * (c % 7); r < 15 * (c % 7) + 15; ++r)
    for (int col = 15 * (c / 7); col < 15 * (c / 7) + 15; ++col)
      gray[static_cast<std::size_t>(r * 105 + col)] = static_cast<std::uint8_t>(10 * c + 5);
  return gray8_png(105, 105, gray);
}

fs::path write_one_shot_runs(const std::string& name) {
  const fs::path runs = temp_root() / name;
  for (int c = 0; c < 20; ++c)
    write_file(runs / "run01" / "training" / ("class" + two(c + 1) + ".png"), one_shot_image(c));
  for (int i = 0; i < 20; ++i)
    write_file(runs / "run01" / "test" / ("item" + two(i + 1) + ".png"), one_shot_image(one_shot_perm[i]));
  write_text(runs / "run01" / "class_labels.txt", one_shot_labels("run01"));
  return runs;
}

}  // namespace

TEST_CASE("omniglot images: every PNG kind decodes to 8-bit gray") {
  // 1-bit gray, 3x2: bits packed MSB first, 1 = white.
  GrayImage g = decode(encode_png(3, 2, 1, 0, {{0b10100000}, {0b01000000}}));
  CHECK(g.width == 3);
  CHECK(g.height == 2);
  CHECK(g.pixels == std::vector<std::uint8_t>{255, 0, 255, 0, 255, 0});
  // 2-bit gray: levels 0..3 -> 0, 85, 170, 255.
  CHECK(decode(encode_png(4, 1, 2, 0, {{0b00011011}})).pixels == std::vector<std::uint8_t>{0, 85, 170, 255});
  // 8-bit gray, unchanged.
  CHECK(decode(encode_png(3, 1, 8, 0, {{0, 128, 255}})).pixels == std::vector<std::uint8_t>{0, 128, 255});
  // 16-bit gray: the high byte, rounded.
  CHECK(decode(encode_png(2, 1, 16, 0, {{0x00, 0x00, 0xFF, 0xFF}})).pixels == std::vector<std::uint8_t>{0, 255});
  // gray + alpha: transparent becomes the white background, opaque keeps its gray.
  CHECK(decode(encode_png(3, 1, 8, 4, {{0, 0, 0, 255, 200, 255}})).pixels == std::vector<std::uint8_t>{255, 0, 200});
  // RGB and RGBA: black and white exactly, a neutral gray within one level.
  g = decode(encode_png(3, 1, 8, 2, {{0, 0, 0, 255, 255, 255, 128, 128, 128}}));
  CHECK(g.pixels[0] == 0);
  CHECK(g.pixels[1] == 255);
  CHECK(std::abs(int{g.pixels[2]} - 128) <= 1);
  g = decode(encode_png(3, 1, 8, 6, {{0, 0, 0, 255, 0, 0, 0, 0, 255, 255, 255, 255}}));
  CHECK(g.pixels == std::vector<std::uint8_t>{0, 255, 255});
  // Palette (8-bit indices into black, white).
  CHECK(decode(encode_png(3, 1, 8, 3, {{1, 0, 1}}, {0, 0, 0, 255, 255, 255})).pixels ==
        std::vector<std::uint8_t>{255, 0, 255});
  // Ink is 1 - gray/255.
  g.pixels = {0, 255, 51};
  const auto ink = ink_from_gray(g);
  CHECK(ink[0] == 1.0f);
  CHECK(ink[1] == 0.0f);
  CHECK(ink[2] == doctest::Approx(0.8));
  // Through a file, as the loader reads it.
  write_file(temp_root() / "ok.png", encode_png(3, 2, 1, 0, {{0b10100000}, {0b01000000}}));
  CHECK(read_png_gray(temp_root() / "ok.png").pixels == std::vector<std::uint8_t>{255, 0, 255, 0, 255, 0});
}

TEST_CASE("omniglot images: hostile files are refused with the file, the problem and the fix") {
  const Bytes good = encode_png(4, 4, 8, 0, std::vector<Bytes>(4, Bytes(4, 7)));
  auto refused = [](const Bytes& b, const std::string& why) {
    std::string message = "(no error)";
    try {
      decode_png_gray(b.data(), b.size(), "dir/evil.png");
    } catch (const std::exception& e) {
      message = e.what();
    }
    INFO(message);
    CHECK(message.rfind("metatape: png: dir/evil.png: ", 0) == 0);
    CHECK(message.find(why) != std::string::npos);
  };
  refused({}, "the file is empty (0 bytes); replace it");
  const std::string text = "GIF89a, not a PNG at all";
  refused(Bytes(text.begin(), text.end()), "not a PNG file: it starts with 47 49 46 38 39 61 2C 20");
  refused(Bytes(good.begin(), good.begin() + 5), "truncated: only 5 bytes");
  refused(Bytes(good.begin(), good.begin() + 8), "truncated: only 8 bytes");
  refused(Bytes(good.begin(), good.begin() + 20), "cannot read the PNG header");  // inside IHDR
  refused(Bytes(good.begin(), good.begin() + 40), "truncated or damaged");        // inside IDAT
  // All pixel data present but no IEND: accepted (libpng stops after the image data).
  CHECK(decode(Bytes(good.begin(), good.end() - 12)).pixels == Bytes(16, 7));
  Bytes bad_crc = good;
  bad_crc[29] ^= 0xFF;  // the IHDR CRC
  refused(bad_crc, "cannot read the PNG header");
  Bytes garbage_idat = good;
  for (std::size_t i = 41; i < garbage_idat.size() - 16; ++i) garbage_idat[i] = 0xA5;
  refused(garbage_idat, "truncated or damaged");
  // Absurd declared dimensions, with a real (tiny) IDAT after the header: refused before allocating.
  refused(encode_png(100000, 100000, 8, 0, {{0}}), "declares 100000x100000 pixels, above the 4096x4096 limit");
  refused(encode_png(4097, 1, 8, 0, {Bytes(4097, 0)}), "declares 4097x1 pixels");
  refused(encode_png(0x7FFFFFFF, 0x7FFFFFFF, 8, 0, {{0}}), "cannot read the PNG header");  // libpng's own limit
  refused(encode_png(0, 5, 8, 0, {{0}}), "cannot read the PNG header");                    // zero width
  refused(encode_png(4, 4, 3, 0, std::vector<Bytes>(4, Bytes(2, 0))), "cannot read the PNG header");  // no 3-bit
  refused(encode_png(4, 4, 8, 0, std::vector<Bytes>(2, Bytes(4, 0))), "truncated or damaged");        // rows missing

  CHECK_THROWS_WITH_AS(read_png_gray(temp_root() / "missing.png"), doctest::Contains("missing.png: no such file"),
                       std::exception);
  CHECK_THROWS_WITH_AS(read_png_gray(temp_root()), doctest::Contains("not a regular file"), std::exception);
  write_file(temp_root() / "zero.png", {});
  CHECK_THROWS_WITH_AS(read_png_gray(temp_root() / "zero.png"), doctest::Contains("zero.png: the file is empty"),
                       std::exception);
  // The loader adds the Omniglot-specific check: a decodable PNG of the wrong size.
  const fs::path set = temp_root() / "wrong_size_set";
  write_file(set / "Alpha" / "character01" / "a.png", gray8_png(104, 105, std::vector<std::uint8_t>(104 * 105, 255)));
  CHECK_THROWS_WITH_AS(load_omniglot({set}),
                       doctest::Contains("a.png: the image is 104x105, Omniglot drawings are 105x105 (replace it"),
                       std::exception);
  write_file(set / "Alpha" / "character01" / "a.png", Bytes(100, 0x42));
  CHECK_THROWS_WITH_AS(load_omniglot({set}), doctest::Contains("a.png: not a PNG file"), std::exception);
}

TEST_CASE("omniglot images: area resize by hand, and its invariants") {
  // 4x4 -> 2x2: each output is the mean of a 2x2 block.
  const std::vector<float> four = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  CHECK(resize_area(four, 4, 4, 2, 2) == std::vector<float>{3.5f, 5.5f, 11.5f, 13.5f});
  // 3x3 -> 2x2: output 0 covers source [0, 1.5) on each axis, weights 2/3 and 1/3, so
  // out(0,0) = (4 v00 + 2 v01 + 2 v10 + v11) / 9 and symmetrically for the others.
  const std::vector<float> three = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const auto r = resize_area(three, 3, 3, 2, 2);
  REQUIRE(r.size() == 4);
  CHECK(r[0] == doctest::Approx((4 * 1 + 2 * 2 + 2 * 4 + 5) / 9.0).epsilon(1e-7));
  CHECK(r[1] == doctest::Approx((4 * 3 + 2 * 2 + 2 * 6 + 5) / 9.0).epsilon(1e-7));
  CHECK(r[2] == doctest::Approx((4 * 7 + 2 * 4 + 2 * 8 + 5) / 9.0).epsilon(1e-7));
  CHECK(r[3] == doctest::Approx((4 * 9 + 2 * 6 + 2 * 8 + 5) / 9.0).epsilon(1e-7));
  // Non-square both ways: 1x3 -> 1x2.
  const auto row = resize_area({3, 6, 9}, 1, 3, 1, 2);
  CHECK(row[0] == doctest::Approx((2 * 3 + 6) / 3.0));
  CHECK(row[1] == doctest::Approx((6 + 2 * 9) / 3.0));
  // Up-sampling 2x2 -> 3x3: the centre straddles all four sources equally.
  const auto up = resize_area({0, 4, 8, 12}, 2, 2, 3, 3);
  CHECK(up[0] == 0.0f);
  CHECK(up[4] == doctest::Approx(6.0));
  // Equal sizes are the identity; the mean is preserved; 105 -> 28 of a constant is that constant.
  CHECK(resize_area(three, 3, 3, 3, 3) == three);
  std::vector<float> big(105 * 105);
  double sum = 0.0;
  for (std::size_t i = 0; i < big.size(); ++i) sum += big[i] = static_cast<float>((i * 37) % 11) / 10.0f;
  const auto small = resize_area(big, 105, 105, 28, 28);
  double small_sum = 0.0;
  for (float v : small) small_sum += v;
  CHECK(small_sum / (28 * 28) == doctest::Approx(sum / (105 * 105)).epsilon(1e-6));
  for (float v : resize_area(std::vector<float>(105 * 105, 0.25f), 105, 105, 28, 28)) CHECK(v == doctest::Approx(0.25));
  CHECK_THROWS_WITH_AS(resize_area(three, 3, 2, 2, 2), doctest::Contains("9 pixels given for a 3x2 image"),
                       std::exception);
  CHECK_THROWS_WITH_AS(resize_area(three, 3, 3, 0, 2), doctest::Contains("sizes must be >= 1"), std::exception);
}

TEST_CASE("omniglot images: quarter-turn rotation is exact, counter-clockwise as numpy.rot90") {
  const std::vector<float> m = {0, 1, 2, 3, 4, 5, 6, 7, 8};
  CHECK(rotate_quarter_turns(m, 3, 1) == std::vector<float>{2, 5, 8, 1, 4, 7, 0, 3, 6});
  CHECK(rotate_quarter_turns(m, 3, 2) == std::vector<float>{8, 7, 6, 5, 4, 3, 2, 1, 0});
  CHECK(rotate_quarter_turns(m, 3, 3) == std::vector<float>{6, 3, 0, 7, 4, 1, 8, 5, 2});
  CHECK(rotate_quarter_turns(m, 3, -1) == rotate_quarter_turns(m, 3, 3));
  CHECK(rotate_quarter_turns(m, 3, 4) == m);
  CHECK(rotate_quarter_turns(rotate_quarter_turns(m, 3, 1), 3, 3) == m);
  CHECK_THROWS_WITH_AS(rotate_quarter_turns(m, 2, 1), doctest::Contains("9 pixels given for a 2x2"), std::exception);
}

TEST_CASE("omniglot: loading sorts, deduplicates by alphabet/character (first set kept) and counts") {
  const OmniglotDataset& d = fixture_dataset();
  CHECK(d.image_size == 28);
  REQUIRE(d.sets.size() == 2);
  CHECK(d.sets[0].source == "set1");
  CHECK(d.sets[0].characters == 7);
  CHECK(d.sets[0].duplicates == 0);
  CHECK(d.sets[1].source == "set2");
  CHECK(d.sets[1].characters == 8);
  CHECK(d.sets[1].duplicates == 3);
  REQUIRE(d.characters.size() == 12);
  CHECK(d.drawings() == 12 * fixture_drawings);
  CHECK(d.alphabets() == std::vector<std::string>{"Alpha", "Beta", "Shared"});
  CHECK(omniglot_summary(d) ==
        "omniglot: 12 characters in 3 alphabets, 72 drawings at 28x28 (set1: 7 characters; set2: 8 characters, "
        "3 already loaded)");
  CHECK(d.characters[0].alphabet == "Alpha");
  CHECK(d.characters[0].name == "character01");
  CHECK(d.characters[4].alphabet == "Beta");
  for (const auto& c : d.characters) CHECK(c.source == (c.alphabet == "Beta" ? "set2" : "set1"));
  // Drawing 1 of Alpha/character02: a 4x4 block of ink 1 - level/255 at output rows 0..3, columns 8..11.
  const auto& drawing = d.characters[1].drawings[1];
  REQUIRE(drawing.size() == 28 * 28);
  const float ink = 1.0f - static_cast<float>(fixture_level("Alpha", 2)) / 255.0f;
  for (int r = 0; r < 28; ++r)
    for (int c = 0; c < 28; ++c) {
      const bool in_block = r < 4 && c >= 8 && c < 12;
      CHECK(drawing[static_cast<std::size_t>(r * 28 + c)] == doctest::Approx(in_block ? ink : 0.0f));
    }
  // Another image size; the order of sets decides which copy is kept.
  OmniglotOptions o;
  o.image_size = 15;
  const OmniglotDataset swapped = load_omniglot({fixture_root() / "set2", fixture_root() / "set1"}, o);
  CHECK(swapped.characters.size() == 12);
  CHECK(swapped.characters[0].drawings[0].size() == 15 * 15);
  CHECK(swapped.sets[1].duplicates == 3);
  for (const auto& c : swapped.characters) CHECK(c.source == (c.alphabet == "Alpha" ? "set1" : "set2"));

  CHECK_THROWS_WITH_AS(load_omniglot({fixture_root() / "nope"}), doctest::Contains("nope: no such folder"),
                       std::exception);
  CHECK_THROWS_WITH_AS(load_omniglot({}), doctest::Contains("no set folders given"), std::exception);
  o.image_size = 0;
  CHECK_THROWS_WITH_AS(load_omniglot({fixture_root() / "set1"}, o), doctest::Contains("image_size must be >= 1"),
                       std::exception);
  fs::create_directories(temp_root() / "empty_set" / "Alpha" / "character01");
  CHECK_THROWS_WITH_AS(load_omniglot({temp_root() / "empty_set"}),
                       doctest::Contains("character01: a character folder with no PNG drawings"), std::exception);
  fs::create_directories(temp_root() / "empty_alphabet" / "Alpha");
  CHECK_THROWS_WITH_AS(load_omniglot({temp_root() / "empty_alphabet"}),
                       doctest::Contains("Alpha: an alphabet folder with no character folders"), std::exception);
  fs::create_directories(temp_root() / "no_alphabets");
  CHECK_THROWS_WITH_AS(load_omniglot({temp_root() / "no_alphabets"}), doctest::Contains("holds no alphabet folders"),
                       std::exception);
}

TEST_CASE("omniglot: the split is disjoint, stratified by alphabet, seeded, rotations on meta-training only") {
  const OmniglotDataset& d = fixture_dataset();
  OmniglotSplitOptions o;
  o.seed = 3;
  o.validation_fraction = 0.25;
  o.test_fraction = 0.25;
  const OmniglotSplit s = split_omniglot(d, o);
  std::set<std::int64_t> all;
  for (const auto* part : {&s.train_characters, &s.validation_characters, &s.test_characters}) {
    CHECK(std::is_sorted(part->begin(), part->end()));
    all.insert(part->begin(), part->end());
  }
  CHECK(all.size() == d.characters.size());  // disjoint and complete
  CHECK(s.train_characters.size() + s.validation_characters.size() + s.test_characters.size() == d.characters.size());
  // Per alphabet (n = 4, 5, 3): n_test = n_val = round(n / 4) raised to 1 -> 1, 1, 1.
  std::map<std::string, std::array<int, 3>> per_alphabet;
  for (auto c : s.train_characters) ++per_alphabet[d.characters[static_cast<std::size_t>(c)].alphabet][0];
  for (auto c : s.validation_characters) ++per_alphabet[d.characters[static_cast<std::size_t>(c)].alphabet][1];
  for (auto c : s.test_characters) ++per_alphabet[d.characters[static_cast<std::size_t>(c)].alphabet][2];
  CHECK(per_alphabet["Alpha"] == std::array<int, 3>{2, 1, 1});
  CHECK(per_alphabet["Beta"] == std::array<int, 3>{3, 1, 1});
  CHECK(per_alphabet["Shared"] == std::array<int, 3>{1, 1, 1});
  // Classes: 4 turns of each training character; evaluation unrotated.
  CHECK(s.train_classes.size() == 4 * s.train_characters.size());
  for (std::size_t i = 0; i < s.train_classes.size(); ++i) {
    CHECK(s.train_classes[i].character == s.train_characters[i / 4]);
    CHECK(s.train_classes[i].quarter_turns == static_cast<int>(i % 4));
  }
  REQUIRE(s.validation_classes.size() == s.validation_characters.size());
  for (std::size_t i = 0; i < s.validation_classes.size(); ++i) {
    CHECK(s.validation_classes[i].character == s.validation_characters[i]);
    CHECK(s.validation_classes[i].quarter_turns == 0);
  }
  for (const auto& c : s.test_classes) CHECK(c.quarter_turns == 0);
  // Seeded: the same seed, the same split; some other seed moves a character.
  CHECK(split_omniglot(d, o).test_characters == s.test_characters);
  bool moved = false;
  for (std::uint64_t seed = 4; seed < 20 && !moved; ++seed) {
    o.seed = seed;
    moved = split_omniglot(d, o).test_characters != s.test_characters;
  }
  CHECK(moved);
  o.rotations = false;
  const OmniglotSplit flat = split_omniglot(d, o);
  CHECK(flat.train_classes.size() == flat.train_characters.size());
  for (const auto& c : flat.train_classes) CHECK(c.quarter_turns == 0);
  // Fraction 0 puts nothing there; all-evaluation leaves meta-training empty.
  o.validation_fraction = 0.0;
  CHECK(split_omniglot(d, o).validation_characters.empty());
  o.test_fraction = 1.0;
  CHECK(split_omniglot(d, o).train_characters.empty());

  o.validation_fraction = 0.6;
  o.test_fraction = 0.5;
  CHECK_THROWS_WITH_AS(split_omniglot(d, o), doctest::Contains("exceed 1"), std::exception);
  o.validation_fraction = -0.1;
  CHECK_THROWS_WITH_AS(split_omniglot(d, o), doctest::Contains("validation_fraction must be in [0, 1]"),
                       std::exception);
}

TEST_CASE("omniglot: episodes have the shapes, labels, disjoint drawings and determinism promised") {
  const OmniglotDataset& d = fixture_dataset();
  const auto lookup = row_lookup(d);
  const OmniglotSplit s = split_omniglot(d, {});
  OmniglotEpisodeOptions o;
  o.ways = 5;
  o.shots = 2;
  o.queries = 3;
  Generator gen(11);
  std::set<int> turns_seen;
  std::set<std::int64_t> label0_classes;
  for (int episode = 0; episode < 30; ++episode) {
    const Task t = sample_omniglot_episode(d, s.train_classes, gen, o);
    CHECK(t.kind == TaskKind::classification);
    CHECK(t.family == "omniglot");
    CHECK(t.num_classes == 5);
    CHECK(t.support_x.shape() == Shape{10, 28 * 28});
    CHECK(t.support_x.dtype() == DType::f32);
    CHECK(t.query_x.shape() == Shape{15, 28 * 28});
    CHECK(t.support_y.dtype() == DType::i64);
    CHECK(t.support_y.to_vector<std::int64_t>() == std::vector<std::int64_t>{0, 0, 1, 1, 2, 2, 3, 3, 4, 4});
    CHECK(t.query_y.to_vector<std::int64_t>() ==
          std::vector<std::int64_t>{0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4});
    const auto support = identify_rows(t.support_x, lookup), query = identify_rows(t.query_x, lookup);
    std::set<std::pair<std::int64_t, int>> classes;
    for (std::int64_t label = 0; label < 5; ++label) {
      const auto [character, drawing0, turns] = support[static_cast<std::size_t>(2 * label)];
      std::set<int> drawings;
      for (int r = 0; r < 2; ++r) drawings.insert(std::get<1>(support[static_cast<std::size_t>(2 * label + r)]));
      for (int r = 0; r < 3; ++r) drawings.insert(std::get<1>(query[static_cast<std::size_t>(3 * label + r)]));
      CHECK(drawings.size() == 5);  // K + Q distinct drawings: support and query disjoint
      for (int r = 0; r < 2; ++r) {
        CHECK(std::get<0>(support[static_cast<std::size_t>(2 * label + r)]) == character);
        CHECK(std::get<2>(support[static_cast<std::size_t>(2 * label + r)]) == turns);
      }
      for (int r = 0; r < 3; ++r) {
        CHECK(std::get<0>(query[static_cast<std::size_t>(3 * label + r)]) == character);
        CHECK(std::get<2>(query[static_cast<std::size_t>(3 * label + r)]) == turns);
      }
      CHECK(std::binary_search(s.train_characters.begin(), s.train_characters.end(), character));
      classes.insert({character, turns});
      turns_seen.insert(turns);
      if (label == 0) label0_classes.insert(4 * character + turns);
    }
    CHECK(classes.size() == 5);  // N distinct classes
  }
  CHECK(turns_seen.size() == 4);     // rotated classes are drawn
  CHECK(label0_classes.size() > 5);  // the class behind label 0 changes between episodes
  // Determinism: the same seed, the same episodes.
  Generator a(5), b(5);
  for (int i = 0; i < 3; ++i) {
    const Task ta = sample_omniglot_episode(d, s.train_classes, a, o);
    const Task tb = sample_omniglot_episode(d, s.train_classes, b, o);
    CHECK(ta.support_x.to_vector<float>() == tb.support_x.to_vector<float>());
    CHECK(ta.query_x.to_vector<float>() == tb.query_x.to_vector<float>());
  }
  // Evaluation pools: unrotated, held-out characters only.
  OmniglotEpisodeOptions eval = o;
  eval.ways = static_cast<std::int64_t>(s.test_classes.size());
  eval.shots = 1;
  eval.queries = 5;
  const Task te = sample_omniglot_episode(d, s.test_classes, gen, eval);
  for (const auto& [character, drawing, turns] : identify_rows(te.query_x, lookup)) {
    CHECK(turns == 0);
    CHECK(std::binary_search(s.test_characters.begin(), s.test_characters.end(), character));
  }

  OmniglotEpisodeOptions bad = o;
  bad.ways = static_cast<std::int64_t>(s.validation_classes.size()) + 1;
  CHECK_THROWS_WITH_AS(sample_omniglot_episode(d, s.validation_classes, gen, bad),
                       doctest::Contains((std::to_string(bad.ways) + "-way episodes need " + std::to_string(bad.ways) +
                                          " classes, the pool has " + std::to_string(s.validation_classes.size()))
                                             .c_str()),
                       std::exception);
  bad = o;
  bad.shots = 3;
  bad.queries = 4;
  CHECK_THROWS_WITH_AS(sample_omniglot_episode(d, s.train_classes, gen, bad),
                       doctest::Contains("shots 3 + queries 4 = 7 drawings per class, but"), std::exception);
  CHECK_THROWS_WITH_AS(sample_omniglot_episode(d, s.train_classes, gen, bad),
                       doctest::Contains("has 6 (lower shots or queries)"), std::exception);
  bad = o;
  bad.queries = 0;
  CHECK_THROWS_WITH_AS(sample_omniglot_episode(d, s.train_classes, gen, bad), doctest::Contains("queries must be >= 1"),
                       std::exception);
  CHECK_THROWS_WITH_AS(sample_omniglot_episode(d, {{99, 0}, {0, 0}, {1, 0}, {2, 0}, {3, 0}}, gen, o),
                       doctest::Contains("the pool names character 99"), std::exception);
  CHECK_THROWS_WITH_AS(sample_omniglot_episode(d, {{0, 4}, {0, 0}, {1, 0}, {2, 0}, {3, 0}}, gen, o),
                       doctest::Contains("quarter_turns 4"), std::exception);
}

TEST_CASE("omniglot one-shot run: a 20-way 1-shot task from the files, and every malformed run refused") {
  const fs::path runs = write_one_shot_runs("one_shot_runs");
  const Task t = load_omniglot_one_shot_run(runs, 1);
  CHECK(t.kind == TaskKind::classification);
  CHECK(t.family == "omniglot");
  CHECK(t.num_classes == 20);
  CHECK(t.support_x.shape() == Shape{20, 28 * 28});
  CHECK(t.query_x.shape() == Shape{20, 28 * 28});
  std::vector<std::int64_t> zero_to_19(20), perm(one_shot_perm, one_shot_perm + 20);
  for (int i = 0; i < 20; ++i) zero_to_19[static_cast<std::size_t>(i)] = i;
  CHECK(t.support_y.to_vector<std::int64_t>() == zero_to_19);
  CHECK(t.query_y.to_vector<std::int64_t>() == perm);
  // Each query row equals the support row of its label (the fixture draws them alike).
  const auto sx = t.support_x.to_vector<float>(), qx = t.query_x.to_vector<float>();
  for (std::size_t q = 0; q < 20; ++q) {
    const auto s = static_cast<std::size_t>(perm[q]);
    CHECK(std::equal(qx.begin() + static_cast<std::ptrdiff_t>(q * 784),
                     qx.begin() + static_cast<std::ptrdiff_t>((q + 1) * 784),
                     sx.begin() + static_cast<std::ptrdiff_t>(s * 784)));
  }
  // "\r\n" line ends and a trailing blank line are accepted.
  std::string crlf;
  for (char c : one_shot_labels("run01")) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
  write_text(runs / "run01" / "class_labels.txt", crlf + "\n");
  CHECK(load_omniglot_one_shot_run(runs, 1).query_y.to_vector<std::int64_t>() == perm);

  CHECK_THROWS_WITH_AS(load_omniglot_one_shot_run(runs, 21),
                       doctest::Contains("run 21 does not exist, the runs are 1..20"), std::exception);
  CHECK_THROWS_WITH_AS(load_omniglot_one_shot_run(runs, 2), doctest::Contains("run02: no such folder"), std::exception);
  auto refused_labels = [&](const std::string& labels, const std::string& why) {
    write_text(runs / "run01" / "class_labels.txt", labels);
    CHECK_THROWS_WITH_AS(load_omniglot_one_shot_run(runs, 1), doctest::Contains(why.c_str()), std::exception);
  };
  const std::string good = one_shot_labels("run01");
  const std::string without_last = good.substr(0, good.rfind("run01/test/item20"));
  refused_labels(without_last, "no line labels run01/test/item20.png");
  refused_labels(good + "run01/test/item01.png run01/training/class01.png\n",
                 "line 21: \"run01/test/item01.png\" is labelled a second time");
  refused_labels("run01/test/item01.png\n" + good, "line 1: expected two paths");
  refused_labels("run01/test/item01.png run01/training/class01.png extra\n" + good, "line 1: expected two paths");
  refused_labels("run02/test/item01.png run01/training/class01.png\n" + good, "is not in run01/test/");
  refused_labels("run01/test/item01.png run01/test/item02.png\n" + good, "is not in run01/training/");
  refused_labels("run01/test/item99.png run01/training/class01.png\n" + good, "names a file that does not exist");
  refused_labels("run01/test/item01.png run01/training/class21.png\n" + good, "names a file that does not exist");
  write_text(runs / "run01" / "class_labels.txt", good);
  fs::remove(runs / "run01" / "class_labels.txt");
  CHECK_THROWS_WITH_AS(load_omniglot_one_shot_run(runs, 1), doctest::Contains("class_labels.txt: cannot open it"),
                       std::exception);
  write_text(runs / "run01" / "class_labels.txt", good);
  fs::remove(runs / "run01" / "test" / "item07.png");
  CHECK_THROWS_WITH_AS(load_omniglot_one_shot_run(runs, 1), doctest::Contains("test: holds 19 PNGs, a run has 20"),
                       std::exception);
  write_file(runs / "run01" / "test" / "item07.png", Bytes{0x89, 'P', 'N', 'G'});
  CHECK_THROWS_WITH_AS(load_omniglot_one_shot_run(runs, 1), doctest::Contains("item07.png: truncated: only 4 bytes"),
                       std::exception);
}

TEST_CASE("real data: omniglot background sets load, Greek and Latin once") {
  const fs::path dir = fs::path(METATAPE_SHARED_DATA_DIR) / "omniglot";
  if (!test::have_shared_data(dir / "images_background_small2")) return;
  const auto start = std::chrono::steady_clock::now();
  const OmniglotDataset d = load_omniglot({dir / "images_background_small1", dir / "images_background_small2"});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE(omniglot_summary(d) << ", loaded in " << seconds << " s");
  REQUIRE(d.sets.size() == 2);
  CHECK(d.sets[0].characters == 136);
  CHECK(d.sets[0].duplicates == 0);
  CHECK(d.sets[1].characters == 156);
  CHECK(d.sets[1].duplicates == 24 + 26);  // Greek and Latin
  CHECK(d.characters.size() == 136 + 156 - 50);
  CHECK(d.drawings() == 242 * 20);
  CHECK(d.alphabets() == std::vector<std::string>{"Balinese", "Early_Aramaic", "Greek", "Japanese_(katakana)", "Korean",
                                                  "Latin", "Sanskrit", "Tagalog"});
  double ink = 0.0;
  float lowest = 1.0f, highest = 0.0f;
  for (const auto& c : d.characters) {
    CHECK(c.drawings.size() == 20);
    CHECK(c.source == (c.alphabet == "Greek" || c.alphabet == "Latin" || c.alphabet == "Balinese" ||
                               c.alphabet == "Early_Aramaic" || c.alphabet == "Korean"
                           ? "images_background_small1"
                           : "images_background_small2"));
    for (const auto& drawing : c.drawings)
      for (float v : drawing) {
        lowest = std::min(lowest, v);
        highest = std::max(highest, v);
        ink += v;
      }
  }
  CHECK(lowest == 0.0f);   // background
  CHECK(highest == 1.0f);  // some 28x28 pixel is all ink
  const double mean_ink = ink / (242.0 * 20 * 28 * 28);
  MESSAGE("mean ink " << mean_ink);
  CHECK(mean_ink > 0.02);  // strokes are a small part of the page: ink is the minority, as expected
  CHECK(mean_ink < 0.3);

  // The default split: 70/10/20 per alphabet, and episodes from each part.
  const OmniglotSplit s = split_omniglot(d, {});
  MESSAGE("split: " << s.train_characters.size() << " / " << s.validation_characters.size() << " / "
                    << s.test_characters.size() << " characters");
  CHECK(s.train_characters.size() + s.validation_characters.size() + s.test_characters.size() == 242);
  CHECK(s.train_classes.size() == 4 * s.train_characters.size());
  Generator gen(1);
  OmniglotEpisodeOptions o;
  o.ways = 20;
  o.shots = 5;
  o.queries = 15;
  for (const auto* pool : {&s.train_classes, &s.validation_classes, &s.test_classes}) {
    const Task t = sample_omniglot_episode(d, *pool, gen, o);
    CHECK(t.support_x.shape() == Shape{100, 784});
    CHECK(t.query_x.shape() == Shape{300, 784});
  }
  Generator a(2), b(2);
  CHECK(sample_omniglot_episode(d, s.test_classes, a, o).query_x.to_vector<float>() ==
        sample_omniglot_episode(d, s.test_classes, b, o).query_x.to_vector<float>());
  o.shots = 6;
  CHECK_THROWS_WITH_AS(sample_omniglot_episode(d, s.test_classes, gen, o),
                       doctest::Contains("shots 6 + queries 15 = 21 drawings per class"), std::exception);
}

TEST_CASE("real data: omniglot one-shot runs load as 20-way 1-shot tasks") {
  const fs::path dir = fs::path(METATAPE_SHARED_DATA_DIR) / "omniglot" / "one_shot_runs";
  if (!test::have_shared_data(dir / "run20" / "class_labels.txt")) return;
  const auto start = std::chrono::steady_clock::now();
  for (int run = 1; run <= omniglot_one_shot_runs; ++run) {
    const Task t = load_omniglot_one_shot_run(dir, run);
    CHECK(t.support_x.shape() == Shape{20, 784});
    CHECK(t.query_x.shape() == Shape{20, 784});
    auto labels = t.query_y.to_vector<std::int64_t>();
    if (run == 1) {
      // run01/class_labels.txt: item01 -> class08, item02 -> class09, item03 -> class02.
      CHECK(labels[0] == 7);
      CHECK(labels[1] == 8);
      CHECK(labels[2] == 1);
    }
    std::sort(labels.begin(), labels.end());
    std::vector<std::int64_t> zero_to_19(20);
    for (int i = 0; i < 20; ++i) zero_to_19[static_cast<std::size_t>(i)] = i;
    CHECK(labels == zero_to_19);  // each class has exactly one test image in these runs
  }
  MESSAGE(
      "20 one-shot runs loaded in " << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
                                    << " s");
}
