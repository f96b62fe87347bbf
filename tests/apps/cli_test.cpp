// Every metatape subcommand driven in-process through run_cli: success paths, exit codes of bad usage,
// bad configs and bad files, Ctrl-C (SIGINT) and bit-identical resume.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "nn/checkpoint.h"

using namespace metatape;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("metatape_cli_test_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

int cli(std::vector<std::string> args) { return apps::run_cli(args); }

// A small, fast configuration: short simulator, two learners, one shots and one steps value.
std::vector<std::string> tiny(std::vector<std::string> args, const fs::path& out,
                              const std::string& meta_steps = "3") {
  args.push_back("--meta-steps");
  args.push_back(meta_steps);
  for (const char* a : {"--no-progress", "-q", "--episodes", "4", "--learners", "maml",
                        "protonet", "--families", "price_direction", "--set", "evaluation.shots=[2]", "--set",
                        "evaluation.steps=[1]", "--set", "data.simulator.bars=1500", "--set",
                        "training.hidden=[8]", "--set", "evaluation.bootstrap_resamples=50"}) {
    args.push_back(a);
  }
  args.push_back("--out");
  args.push_back(out.string());
  return args;
}

std::vector<float> params_of(const fs::path& checkpoint) {
  const nn::Checkpoint ck = nn::load_checkpoint(checkpoint.string());
  std::vector<float> all;
  for (const Tensor& t : ck.sections.at("params").tensors()) {
    const auto v = t.to_vector<float>();
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

}  // namespace

TEST_CASE("cli: help and usage errors") {
  CHECK(cli({"--help"}) == apps::ok);
  for (const char* sub : {"run", "bench", "train", "eval", "adapt", "data", "simulate"}) {
    CHECK_MESSAGE(cli({sub, "--help"}) == apps::ok, sub);
  }
  CHECK(cli({}) == apps::bad_usage);
  CHECK(cli({"frobnicate"}) == apps::bad_usage);
  CHECK(cli({"run", "--no-such-option"}) == apps::bad_usage);
  CHECK(cli({"bench"}) == apps::bad_usage);  // --config is required
}

TEST_CASE("cli: simulate writes market files; data validates and inspects them; bad files exit 3") {
  const fs::path dir = fresh_dir("simulate");
  CHECK(cli({"simulate", "--out", (dir / "sim").string(), "--bars", "300", "--assets", "2", "--seed", "3"}) == apps::ok);
  std::vector<fs::path> csvs;
  for (const auto& e : fs::directory_iterator(dir / "sim")) {
    if (e.path().filename() != "regimes.csv") csvs.push_back(e.path());
  }
  CHECK(csvs.size() == 4);  // 2 assets x 2 exchanges
  CHECK(fs::exists(dir / "sim" / "regimes.csv"));
  CHECK(cli({"simulate", "--out", (dir / "bad").string(), "--bars", "0"}) == apps::bad_usage);
  CHECK(cli({"simulate", "--out", (dir / "bad").string(), "--interval", "fortnight"}) == apps::bad_usage);

  REQUIRE(!csvs.empty());
  CHECK(cli({"data", "validate", csvs.front().string()}) == apps::ok);
  CHECK(cli({"data", "inspect", csvs.front().string()}) == apps::ok);
  CHECK(cli({"data", "validate", (dir / "missing.csv").string()}) == apps::bad_data);
  {
    std::ofstream bad(dir / "broken.csv");
    bad << "time_ms,open,high,low,close,volume\n1600000000000,100,99,101,100,5\n1600003600000,abc,1,1,1,1\n";
  }
  CHECK(cli({"data", "validate", (dir / "broken.csv").string()}) == apps::bad_data);
  CHECK(cli({"data", "validate", "--policy", "sometimes", csvs.front().string()}) == apps::bad_usage);
  CHECK(cli({"data"}) == apps::bad_usage);
  fs::remove_all(dir);
}

TEST_CASE("cli: run and bench write the report; bad configs exit 2") {
  const fs::path dir = fresh_dir("run");
  CHECK(cli(tiny({"run"}, dir / "out")) == apps::ok);
  REQUIRE(fs::exists(dir / "out" / "report" / "report.json"));
  std::ifstream in(dir / "out" / "report" / "report.json");
  const auto j = nlohmann::json::parse(in);
  CHECK(j["methods"] == nlohmann::json({"maml", "protonet"}));
  CHECK(j["comparisons"].size() == 2 * 3);  // 2 learners x 3 baselines with the primary metric
  CHECK(fs::exists(dir / "out" / "report" / "report.md"));
  CHECK(fs::exists(dir / "out" / "report" / "comparisons.csv"));
  CHECK(fs::exists(dir / "out" / "config.yaml"));

  {
    std::ofstream cfg(dir / "bench.yaml");
    cfg << "learners: [anil]\ntasks:\n  families: [market_regime]\n";
  }
  CHECK(cli(tiny({"bench", "--config", (dir / "bench.yaml").string()}, dir / "bench")) == apps::ok);
  CHECK(fs::exists(dir / "bench" / "report" / "cells.csv"));

  // The recompute option reaches the learners from the config (and a wrong type is refused).
  CHECK(cli(tiny({"run", "--set", "training.recompute_inner=true", "--set", "training.inner_steps=3"},
                 dir / "recompute")) == apps::ok);
  CHECK(cli(tiny({"run", "--set", "training.recompute_inner=sometimes"}, dir / "x")) == apps::bad_usage);

  // Triangular arbitrage runs on the simulator once it quotes cross pairs, and not before.
  {
    std::ofstream cfg(dir / "triangle.yaml");
    cfg << "learners: [protonet]\ntasks:\n  families: [triangular_arbitrage]\n"
           "data:\n  simulator:\n    bars: 1500\n    cross_pairs: true\n"
           "training:\n  meta_steps: 3\n  hidden: [8]\n"
           "evaluation:\n  shots: [2]\n  steps: [1]\n  episodes: 4\n  bootstrap_resamples: 50\n";
  }
  CHECK(cli({"run", "-q", "--no-progress", "--config", (dir / "triangle.yaml").string(), "--out",
             (dir / "triangle").string()}) == apps::ok);
  {
    std::ifstream tri(dir / "triangle" / "report" / "report.json");
    CHECK(tri.good());
    CHECK(nlohmann::json::parse(tri).dump().find("triangular_arbitrage") != std::string::npos);
  }
  CHECK(cli({"run", "-q", "--no-progress", "--config", (dir / "triangle.yaml").string(), "--out",
             (dir / "no-triangle").string(), "--set", "data.simulator.cross_pairs=false"}) != apps::ok);

  {
    std::ofstream bad(dir / "bad.yaml");
    bad << "training:\n  meta_steps: [oops\n";
  }
  CHECK(cli(tiny({"run", "--config", (dir / "bad.yaml").string()}, dir / "x")) == apps::bad_usage);
  {
    std::ofstream unknown(dir / "unknown.yaml");
    unknown << "training:\n  meta_stepz: 3\n";
  }
  CHECK(cli(tiny({"run", "--config", (dir / "unknown.yaml").string()}, dir / "x")) == apps::bad_usage);
  CHECK(cli({"run", "-q", "--set", "tasks.families=[astrology]"}) == apps::bad_usage);
  CHECK(cli({"run", "-q", "--set", "learners=[magic]"}) == apps::bad_usage);
  CHECK(cli({"run", "-q", "--families", "astrology"}) == apps::bad_usage);
  CHECK(cli(tiny({"run", "--set", "training.meta_batch=many"}, dir / "x")) == apps::bad_usage);
  CHECK(cli(tiny({"run", "--set", "nokey"}, dir / "x")) == apps::bad_usage);
  CHECK(cli(tiny({"run", "--data", dir.string()}, dir / "x")) == apps::bad_usage);  // simulator config
  CHECK(cli(tiny({"run", "--config", (dir / "nope.yaml").string()}, dir / "x")) == apps::bad_usage);
  {
    std::ofstream files(dir / "files.yaml");
    files << "data:\n  source: files\n  files: [does_not_exist.csv]\n";
  }
  CHECK(cli(tiny({"run", "--config", (dir / "files.yaml").string(), "--data", dir.string()}, dir / "x")) ==
        apps::bad_data);
  fs::remove_all(dir);
}

TEST_CASE("cli: train checkpoints, resumes bit-identically; eval and adapt use the checkpoints") {
  const fs::path dir = fresh_dir("train");
  auto train_args = [&](const fs::path& out, const std::string& steps, bool resume) {
    auto a = tiny({"train"}, out, steps);
    a.push_back("--checkpoint-every");
    a.push_back("2");
    if (resume) a.push_back("--resume");
    return a;
  };
  CHECK(cli(train_args(dir / "straight", "6", false)) == apps::ok);
  CHECK(cli(train_args(dir / "resumed", "3", false)) == apps::ok);
  CHECK(cli(train_args(dir / "resumed", "6", true)) == apps::ok);
  for (const char* learner : {"maml", "protonet"}) {
    const fs::path a = dir / "straight" / "run0" / "price_direction" / (std::string(learner) + ".ckpt");
    const fs::path b = dir / "resumed" / "run0" / "price_direction" / (std::string(learner) + ".ckpt");
    REQUIRE(fs::exists(a));
    REQUIRE(fs::exists(b));
    CHECK(nn::load_checkpoint(b.string()).step == 6);
    CHECK_MESSAGE(params_of(a) == params_of(b), learner);
  }
  CHECK(fs::exists(dir / "straight" / "run0" / "price_direction" / "maml.jsonl"));

  CHECK(cli(tiny({"eval"}, dir / "straight")) == apps::ok);
  CHECK(fs::exists(dir / "straight" / "report" / "report.json"));
  CHECK(cli(tiny({"eval"}, dir / "empty")) == apps::bad_usage);  // nothing trained there

  const fs::path json = dir / "adapt.json";
  auto adapt = tiny({"adapt", "--learner", "maml", "--family", "price_direction", "--steps", "2", "--json",
                     json.string()},
                    dir / "straight");
  CHECK(cli(adapt) == apps::ok);
  std::ifstream in(json);
  const auto j = nlohmann::json::parse(in);
  CHECK(j["steps"] == 2);
  CHECK(j["metrics"].contains("accuracy"));
  CHECK(cli(tiny({"adapt", "--learner", "reptile"}, dir / "straight")) == apps::bad_usage);  // not trained
  {
    std::ofstream corrupt(dir / "corrupt.ckpt");
    corrupt << "not a checkpoint";
  }
  CHECK(cli(tiny({"adapt", "--checkpoint", (dir / "corrupt.ckpt").string()}, dir / "straight")) == apps::bad_data);
  fs::remove_all(dir);
}

TEST_CASE("cli: Ctrl-C during train saves a checkpoint and exits 130; --resume continues") {
  const fs::path dir = fresh_dir("sigint");
  auto args = tiny({"train"}, dir / "out", "1000000");
  std::thread raiser([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    std::raise(SIGINT);
  });
  const int code = cli(args);
  raiser.join();
  CHECK(code == apps::interrupted);
  const fs::path ck = dir / "out" / "run0" / "price_direction" / "maml.ckpt";
  REQUIRE(fs::exists(ck));
  const std::int64_t step = nn::load_checkpoint(ck.string()).step;
  CHECK(step > 0);
  auto resume = tiny({"train", "--resume"}, dir / "out", std::to_string(step + 2));
  CHECK(cli(resume) == apps::ok);
  CHECK(nn::load_checkpoint(ck.string()).step == step + 2);
  fs::remove_all(dir);
}

TEST_CASE("cli: sinusoid trains, saves, reloads the same learner, reports medians and sharpness") {
  const fs::path dir = fresh_dir("sinusoid");
  auto args = [&](const std::string& json, std::vector<std::string> extra) {
    std::vector<std::string> a{"sinusoid", "--learners", "maml,reptile", "--iterations", "20", "--eval-tasks", "12",
                               "--query-rows", "20", "--steps", "0,1,3", "--log-every", "0", "--json",
                               (dir / json).string()};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  CHECK(cli(args("trained.json", {"--save-prefix", (dir / "s-").string()})) == apps::ok);
  CHECK(fs::exists(dir / "s-maml.ckpt"));
  CHECK(fs::exists(dir / "s-reptile.ckpt"));
  CHECK(cli(args("loaded.json", {"--load-prefix", (dir / "s-").string(), "--sharpness"})) == apps::ok);
  auto read = [&](const std::string& name) {
    std::ifstream in(dir / name);
    return nlohmann::json::parse(in);
  };
  const auto trained = read("trained.json"), loaded = read("loaded.json");
  for (const char* learner : {"maml", "reptile"}) {
    CAPTURE(learner);
    const auto& t = trained["learners"][learner];
    const auto& l = loaded["learners"][learner];
    CHECK(l["iterations"] == 20);
    CHECK(t["K5"]["after"] == l["K5"]["after"]);  // the reloaded learner evaluates identically
    CHECK(t["K10"]["after"][1]["median"].get<double>() > 0.0);
    for (const char* where : {"start", "end"}) {
      CHECK(l["K5"]["sharpness"][where]["median"].get<double>() > 0.0);
      CHECK(l["K5"]["sharpness"][where]["max"].get<double>() >= l["K5"]["sharpness"][where]["median"].get<double>());
    }
  }
  // A missing checkpoint is bad data, named.
  CHECK(cli(args("missing.json", {"--load-prefix", (dir / "nothing-").string()})) == apps::bad_data);
  fs::remove_all(dir);
}
