// Checkpoints: bit-exact round trips, strict validation with messages naming the problem, and atomic
// writes that survive a writer killed mid-save.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <thread>

#include "autograd/hash.h"
#include "autograd/ops.h"
#include "kernels/error.h"
#include "nn/checkpoint.h"
#include "nn/mlp.h"
#include "nn/optimizer.h"

using namespace metatape;
namespace fs = std::filesystem;

namespace {

std::string temp_path(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("metatape_ckpt_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return (dir / name).string();
}

std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_bytes(const std::string& path, const std::vector<unsigned char>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

nn::Checkpoint sample_checkpoint(std::uint64_t seed, std::int64_t hidden = 40) {
  Generator gen(seed);
  nn::Mlp model(nn::MlpSpec{{1, hidden, hidden, 1}});
  nn::Checkpoint cp;
  cp.config_json = R"({"lr": 0.001, "name": "test"})";
  cp.step = 1234;
  cp.sections["params"] = model.init(gen);
  nn::ParameterList extra;
  extra.add("doubles", Tensor::normal(Shape{3, 2}, 0.0, 1.0, gen, DType::f64));
  extra.add("labels", Tensor::indices({4, -2, 9}));
  cp.sections["extra"] = extra;
  gen.normal();  // leaves a spare normal in the state
  cp.generator = gen.state();
  return cp;
}

void check_bit_equal(const nn::ParameterList& a, const nn::ParameterList& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CAPTURE(a.name(i));
    CHECK(a.name(i) == b.name(i));
    REQUIRE(a[i].shape() == b[i].shape());
    REQUIRE(a[i].dtype() == b[i].dtype());
    const std::size_t bytes = static_cast<std::size_t>(a[i].numel()) * kernels::dtype_size(a[i].dtype());
    CHECK(std::memcmp(a[i].raw_data(), b[i].raw_data(), bytes) == 0);
  }
}

}  // namespace

TEST_CASE("a checkpoint round-trips bit-exactly, generator state included") {
  const std::string path = temp_path("round.ckpt");
  const nn::Checkpoint cp = sample_checkpoint(1);
  nn::save_checkpoint(path, cp);
  const nn::Checkpoint back = nn::load_checkpoint(path);
  CHECK(back.step == 1234);
  CHECK(back.config_json == R"({"lr":0.001,"name":"test"})");
  REQUIRE(back.generator.has_value());
  Generator a(0), b(0);
  a.set_state(*cp.generator);
  b.set_state(*back.generator);
  for (int i = 0; i < 5; ++i) CHECK(a.normal() == b.normal());
  check_bit_equal(cp.sections.at("params"), back.sections.at("params"));
  check_bit_equal(cp.sections.at("extra"), back.sections.at("extra"));
  CHECK_FALSE(fs::exists(path + ".tmp." + std::to_string(::getpid())));

  nn::ParameterList target = nn::Mlp(nn::MlpSpec{{1, 40, 40, 1}}).init(*std::make_unique<Generator>(99));
  nn::restore_section(back, "params", target);
  check_bit_equal(target, cp.sections.at("params"));
}

TEST_CASE("truncated, corrupted and mismatched checkpoints are refused with a message") {
  const std::string path = temp_path("bad.ckpt");
  nn::save_checkpoint(path, sample_checkpoint(2));
  const auto good = read_bytes(path);

  SUBCASE("missing file") {
    CHECK_THROWS_WITH_AS(nn::load_checkpoint(temp_path("nope.ckpt")), doctest::Contains("cannot open"), Error);
  }
  SUBCASE("truncated at many lengths") {
    for (std::size_t len :
         {std::size_t{0}, std::size_t{5}, std::size_t{30}, good.size() / 2, good.size() - 9, good.size() - 1}) {
      CAPTURE(len);
      write_bytes(path, std::vector<unsigned char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len)));
      CHECK_THROWS_AS(nn::load_checkpoint(path), Error);
    }
    write_bytes(path,
                std::vector<unsigned char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(good.size() / 2)));
    CHECK_THROWS_WITH_AS(nn::load_checkpoint(path), doctest::Contains("truncated"), Error);
  }
  SUBCASE("one flipped bit in the data") {
    auto bad = good;
    bad[bad.size() - 20] ^= 0x10;
    write_bytes(path, bad);
    CHECK_THROWS_WITH_AS(nn::load_checkpoint(path), doctest::Contains("checksum mismatch"), Error);
  }
  SUBCASE("bad magic and unknown version") {
    auto bad = good;
    bad[0] = 'X';
    write_bytes(path, bad);
    CHECK_THROWS_WITH_AS(nn::load_checkpoint(path), doctest::Contains("bad magic"), Error);
    bad = good;
    bad[8] = 7;
    write_bytes(path, bad);
    CHECK_THROWS_WITH_AS(nn::load_checkpoint(path), doctest::Contains("version 7 is not supported"), Error);
  }
  SUBCASE("a model with other shapes or names") {
    const nn::Checkpoint cp = nn::load_checkpoint(path);
    Generator gen(3);
    nn::ParameterList wider = nn::Mlp(nn::MlpSpec{{1, 41, 40, 1}}).init(gen);
    CHECK_THROWS_WITH_AS(
        nn::restore_section(cp, "params", wider),
        doctest::Contains(
            "parameter 'layer0.weight' in section 'params' is (40, 1) f32, the model expects (41, 1) f32"),
        Error);
    nn::ParameterList deeper = nn::Mlp(nn::MlpSpec{{1, 40, 40, 40, 1}}).init(gen);
    CHECK_THROWS_WITH_AS(nn::restore_section(cp, "params", deeper),
                         doctest::Contains("lacks parameter 'layer3.weight'"), Error);
    nn::ParameterList f64 =
        nn::Mlp(nn::MlpSpec{{1, 40, 40, 1}, nn::Activation::relu, nn::Init::uniform_fan_in, DType::f64}).init(gen);
    CHECK_THROWS_WITH_AS(nn::restore_section(cp, "params", f64), doctest::Contains("f64"), Error);
    CHECK_THROWS_WITH_AS(nn::restore_section(cp, "missing", f64), doctest::Contains("no section 'missing'"), Error);
  }
}

TEST_CASE("a writer killed mid-save leaves the previous checkpoint loadable") {
  const std::string path = temp_path("killed.ckpt");
  const nn::Checkpoint first = sample_checkpoint(4);
  nn::save_checkpoint(path, first);

  SUBCASE("a stale partial temporary file is ignored") {
    const auto good = read_bytes(path);
    write_bytes(path + ".tmp.999999", std::vector<unsigned char>(good.begin(), good.begin() + 100));
    const nn::Checkpoint back = nn::load_checkpoint(path);
    check_bit_equal(back.sections.at("params"), first.sections.at("params"));
    fs::remove(path + ".tmp.999999");
  }
  SUBCASE("a child process SIGKILLed while saving large checkpoints in a loop") {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // Large enough (about 8 MB) that a save takes a while; loops until killed.
      const nn::Checkpoint big = sample_checkpoint(5, 1000);
      for (;;) nn::save_checkpoint(path, big);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    CHECK(WIFSIGNALED(status));
    // Whichever complete file the rename left is loadable: the first one or a complete big one.
    const nn::Checkpoint back = nn::load_checkpoint(path);
    const auto& params = back.sections.at("params");
    const bool is_first = params[0].shape() == Shape{40, 1};
    if (is_first) {
      check_bit_equal(params, first.sections.at("params"));
    } else {
      check_bit_equal(params, sample_checkpoint(5, 1000).sections.at("params"));
    }
    for (const auto& entry : fs::directory_iterator(fs::path(path).parent_path())) {
      if (entry.path().string().find(".tmp.") != std::string::npos) fs::remove(entry.path());
    }
  }
}

TEST_CASE("config must be valid JSON") {
  nn::Checkpoint cp = sample_checkpoint(6);
  cp.config_json = "{not json";
  CHECK_THROWS_WITH_AS(nn::save_checkpoint(temp_path("cfg.ckpt"), cp), doctest::Contains("not valid JSON"), Error);
}

namespace {

std::uint64_t fnv1a(const std::vector<unsigned char>& b, std::size_t n) { return fnv1a64(b.data(), n); }

// Rewrites a checkpoint's header with `edit` and recomputes header_len and the checksum, so the file
// passes every check but the one under test (as a crafted file would).
std::vector<unsigned char> craft(const std::vector<unsigned char>& good,
                                 const std::function<void(nlohmann::json&)>& edit) {
  std::uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<std::uint64_t>(good[12 + i]) << (8 * i);
  const std::size_t prefix = 20;
  nlohmann::json header =
      nlohmann::json::parse(good.begin() + prefix, good.begin() + static_cast<std::ptrdiff_t>(prefix + header_len));
  edit(header);
  const std::string text = header.dump();
  std::vector<unsigned char> out(good.begin(), good.begin() + 12);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<unsigned char>(text.size() >> (8 * i)));
  out.insert(out.end(), text.begin(), text.end());
  out.insert(out.end(), good.begin() + static_cast<std::ptrdiff_t>(prefix + header_len), good.end() - 8);
  const std::uint64_t sum = fnv1a(out, out.size());
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<unsigned char>(sum >> (8 * i)));
  return out;
}

nlohmann::json& first_entry(nlohmann::json& header) { return header["sections"]["params"][0]; }

}  // namespace

TEST_CASE("crafted checkpoints with bad offsets, sizes, shapes or counts are refused, naming the value") {
  const std::string path = temp_path("crafted.ckpt");
  nn::save_checkpoint(path, sample_checkpoint(7, 4));
  const auto good = read_bytes(path);
  write_bytes(path, craft(good, [](nlohmann::json&) {}));
  REQUIRE_NOTHROW(nn::load_checkpoint(path));  // the crafting itself keeps a file valid
  const std::string entry = "checkpoint '" + path + "': section 'params' entry 'layer0.weight'";

  auto refused = [&](const std::function<void(nlohmann::json&)>& edit, const std::string& needle) {
    write_bytes(path, craft(good, edit));
    CHECK_THROWS_WITH_AS(nn::load_checkpoint(path), doctest::Contains(needle.c_str()), Error);
  };
  SUBCASE("offset + bytes wraps past 2^64 to a small end (read before the data block)") {
    // layer0.weight is (4, 1) f32, 16 bytes: offset 2^64 - 8 ends at 8 after the wrap.
    refused([](nlohmann::json& h) { first_entry(h)["offset"] = std::numeric_limits<std::uint64_t>::max() - 7; },
            entry + ": data range [offset 18446744073709551608, end past 2^64) lies outside");
  }
  SUBCASE("offset + bytes wraps to exactly 0") {
    refused([](nlohmann::json& h) { first_entry(h)["offset"] = std::numeric_limits<std::uint64_t>::max() - 15; },
            "lies outside the file's");
  }
  SUBCASE("a huge offset") {
    refused([](nlohmann::json& h) { first_entry(h)["offset"] = std::uint64_t{1} << 63; },
            "[offset 9223372036854775808, end 9223372036854775824)");
  }
  SUBCASE("bytes of 2^64 - 1 with a small offset") {
    refused(
        [](nlohmann::json& h) {
          first_entry(h)["offset"] = 1;
          first_entry(h)["bytes"] = std::numeric_limits<std::uint64_t>::max();
        },
        "end past 2^64");
  }
  SUBCASE("a negative offset") {
    refused([](nlohmann::json& h) { first_entry(h)["offset"] = -8; }, entry + ": offset -8 is negative");
  }
  SUBCASE("a negative byte count") {
    refused([](nlohmann::json& h) { first_entry(h)["bytes"] = -16; }, entry + ": bytes -16 is negative");
  }
  SUBCASE("a fractional offset") {
    refused([](nlohmann::json& h) { first_entry(h)["offset"] = 1.5; },
            entry + ": offset 1.5 is not a non-negative integer");
  }
  SUBCASE("a shape whose product overflows to the stated byte count") {
    // 2^32 * 2^32 * 4 bytes wraps to 0 in 64 bits; with bytes 0 the old check passed.
    refused(
        [](nlohmann::json& h) {
          first_entry(h)["shape"] = {std::uint64_t{1} << 32, std::uint64_t{1} << 32};
          first_entry(h)["bytes"] = 0;
        },
        entry + ": shape [4294967296,4294967296] f32 overflows");
  }
  SUBCASE("a dimension that does not fit in int64") {
    refused([](nlohmann::json& h) { first_entry(h)["shape"] = {std::numeric_limits<std::uint64_t>::max()}; },
            "overflows");
  }
  SUBCASE("a negative or fractional dimension") {
    refused(
        [](nlohmann::json& h) {
          first_entry(h)["shape"] = {-4, -1};
        },
        entry + ": dimension 0 is -4, not a non-negative integer");
    refused([](nlohmann::json& h) { first_entry(h)["shape"] = {4.5, 1}; }, "dimension 0 is 4.5");
  }
  SUBCASE("bytes that disagree with shape and dtype") {
    refused([](nlohmann::json& h) { first_entry(h)["dtype"] = "f64"; },
            entry + ": 16 bytes do not match shape (4, 1) f64 (32 bytes)");
    refused([](nlohmann::json& h) { first_entry(h)["dtype"] = "f16"; }, "unknown dtype 'f16'");
    refused([](nlohmann::json& h) { first_entry(h)["dtype"] = 4; }, "dtype 4 is not a string");
  }
  SUBCASE("rank, name, section and header types") {
    refused([](nlohmann::json& h) { first_entry(h)["shape"] = {1, 1, 1, 1, 16}; }, "rank 5 is above 4");
    refused([](nlohmann::json& h) { first_entry(h)["name"] = h["sections"]["params"][1]["name"]; },
            "a second entry with this name");
    refused([](nlohmann::json& h) { first_entry(h)["name"] = 7; },
            "section 'params' entry #0: the name is not a non-empty string");
    refused([](nlohmann::json& h) { h["sections"]["params"] = 3; }, "section 'params' is not an array");
    refused([](nlohmann::json& h) { h["sections"] = {1, 2}; }, "\"sections\" is not an object");
    refused([](nlohmann::json& h) { h["step"] = -1; }, "step -1 is negative");
    refused([](nlohmann::json& h) { h["step"] = 1e300; }, "step 1e+300 is not a non-negative integer");
  }
  SUBCASE("a config nested a million levels deep (printing it recursed until the stack overflowed)") {
    write_bytes(path, craft(good, [](nlohmann::json& h) { h["config"] = nlohmann::json::object(); }));
    auto deep = read_bytes(path);
    const std::string marker = "\"config\":{}";
    const auto at = std::search(deep.begin(), deep.end(), marker.begin(), marker.end());
    REQUIRE(at != deep.end());
    const std::size_t pos = static_cast<std::size_t>(at - deep.begin()) + marker.size() - 2;
    std::string nested(1'000'000, '[');
    nested += std::string(1'000'000, ']');
    // Splice the nesting in as the config, fix header_len and the checksum.
    std::vector<unsigned char> out(deep.begin(), deep.begin() + static_cast<std::ptrdiff_t>(pos));
    out.insert(out.end(), nested.begin(), nested.end());
    out.insert(out.end(), deep.begin() + static_cast<std::ptrdiff_t>(pos + 2), deep.end() - 8);
    std::uint64_t header_len = 0;
    for (int i = 0; i < 8; ++i) header_len |= static_cast<std::uint64_t>(deep[12 + i]) << (8 * i);
    header_len += nested.size() - 2;
    for (int i = 0; i < 8; ++i)
      out[12 + static_cast<std::size_t>(i)] = static_cast<unsigned char>(header_len >> (8 * i));
    const std::uint64_t sum = fnv1a(out, out.size());
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<unsigned char>(sum >> (8 * i)));
    write_bytes(path, out);
    CHECK_THROWS_WITH_AS(nn::load_checkpoint(path), doctest::Contains("the header nests deeper than 64 levels"), Error);
  }
  SUBCASE("a generator word that is not a decimal u64 is a metatape error, not std::invalid_argument") {
    refused([](nlohmann::json& h) { h["generator"]["words"][2] = "abc"; },
            "generator word 2 'abc' is not a decimal u64");
    refused([](nlohmann::json& h) { h["generator"]["words"][0] = "99999999999999999999999"; }, "generator word 0");
    refused([](nlohmann::json& h) { h["generator"]["spare_bits"] = 12; }, "spare_bits 12 is not a decimal string");
    refused([](nlohmann::json& h) { h["generator"]["words"] = {"1"}; }, "needs 4 words, got 1");
  }
}

TEST_CASE("a directory, a device, a FIFO or a file over the size limit is refused as a checkpoint") {
  const std::string dir = temp_path("a_directory");
  fs::create_directories(dir);
  CHECK_THROWS_WITH_AS(nn::load_checkpoint(dir), doctest::Contains(("'" + dir + "': is a directory").c_str()), Error);
  CHECK_THROWS_WITH_AS(nn::load_checkpoint("/dev/zero"),
                       doctest::Contains("checkpoint '/dev/zero': is not a regular file"), Error);
  const std::string fifo = temp_path("a_fifo");
  fs::remove(fifo);
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // Opening a FIFO with no writer would block; the loader must refuse it without waiting.
  CHECK_THROWS_WITH_AS(nn::load_checkpoint(fifo), doctest::Contains("is not a regular file"), Error);
  fs::remove(fifo);

  const std::string path = temp_path("limit.ckpt");
  nn::save_checkpoint(path, sample_checkpoint(8, 4));
  const auto size = fs::file_size(path);
  CHECK_NOTHROW(nn::load_checkpoint(path, size));
  CHECK_THROWS_WITH_AS(nn::load_checkpoint(path, size - 1),
                       doctest::Contains(("has " + std::to_string(size) + " bytes, more than the checkpoint limit of " +
                                          std::to_string(size - 1) + " bytes")
                                             .c_str()),
                       Error);
}
