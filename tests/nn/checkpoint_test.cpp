// Checkpoints: bit-exact round trips, strict validation with messages naming the problem, and atomic
// writes that survive a writer killed mid-save.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

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
    for (std::size_t len : {std::size_t{0}, std::size_t{5}, std::size_t{30}, good.size() / 2, good.size() - 9,
                            good.size() - 1}) {
      CAPTURE(len);
      write_bytes(path, std::vector<unsigned char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len)));
      CHECK_THROWS_AS(nn::load_checkpoint(path), Error);
    }
    write_bytes(path, std::vector<unsigned char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(good.size() / 2)));
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
    CHECK_THROWS_WITH_AS(nn::restore_section(cp, "params", wider),
                         doctest::Contains("parameter 'layer0.weight' in section 'params' is (40, 1) f32, the model expects (41, 1) f32"),
                         Error);
    nn::ParameterList deeper = nn::Mlp(nn::MlpSpec{{1, 40, 40, 40, 1}}).init(gen);
    CHECK_THROWS_WITH_AS(nn::restore_section(cp, "params", deeper), doctest::Contains("lacks parameter 'layer3.weight'"), Error);
    nn::ParameterList f64 = nn::Mlp(nn::MlpSpec{{1, 40, 40, 1}, nn::Activation::relu, nn::Init::uniform_fan_in, DType::f64}).init(gen);
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
