// Every metatape subcommand driven in-process through run_cli: success paths, exit codes of bad usage,
// bad configs and bad files, Ctrl-C (SIGINT) and bit-identical resume.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "eval/training.h"
#include "meta/registry.h"
#include "nn/checkpoint.h"
#include "tasks/families.h"

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
std::vector<std::string> tiny(std::vector<std::string> args, const fs::path& out, const std::string& meta_steps = "3") {
  args.push_back("--meta-steps");
  args.push_back(meta_steps);
  for (const char* a :
       {"--no-progress", "-q", "--episodes", "4", "--learners", "maml", "protonet", "--families", "price_direction",
        "--set", "evaluation.shots=[2]", "--set", "evaluation.steps=[1]", "--set", "data.simulator.bars=1500", "--set",
        "training.hidden=[8]", "--set", "evaluation.bootstrap_resamples=50"}) {
    args.push_back(a);
  }
  args.push_back("--out");
  args.push_back(out.string());
  return args;
}

// Runs one command line with stdout and stderr captured (file descriptors 1 and 2 redirected).
struct Captured {
  int code = 0;
  std::string out, err;
};
std::string slurp(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string text;
  for (int ch; (ch = std::fgetc(f)) != EOF;) text += static_cast<char>(ch);
  std::fclose(f);
  return text;
}
Captured captured(const std::vector<std::string>& args) {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(stdout);
  std::fflush(stderr);
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  const int saved_out = ::dup(1), saved_err = ::dup(2);
  ::dup2(::fileno(out), 1);
  ::dup2(::fileno(err), 2);
  Captured c;
  c.code = cli(args);
  std::cout.flush();
  std::cerr.flush();
  std::fflush(stdout);
  std::fflush(stderr);
  ::dup2(saved_out, 1);
  ::dup2(saved_err, 2);
  ::close(saved_out);
  ::close(saved_err);
  c.out = slurp(out);
  c.err = slurp(err);
  return c;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every regular file under `dir` (relative path -> bytes and modification time in ns).
std::map<std::string, std::pair<std::string, long long>> snapshot(const fs::path& dir) {
  std::map<std::string, std::pair<std::string, long long>> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    struct stat st {};
    REQUIRE(::stat(e.path().c_str(), &st) == 0);
    files[fs::relative(e.path(), dir).string()] = {read_text(e.path()),
                                                   st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec};
  }
  return files;
}

// A pid that is certainly not running: a child that has exited and been reaped.
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
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
  CHECK(cli({"simulate", "--out", (dir / "sim").string(), "--bars", "300", "--assets", "2", "--seed", "3"}) ==
        apps::ok);
  std::vector<fs::path> csvs;
  for (const auto& e : fs::directory_iterator(dir / "sim")) {
    if (e.path().filename() != "regimes.csv") csvs.push_back(e.path());
  }
  CHECK(csvs.size() == 4);  // 2 assets x 2 exchanges
  CHECK(fs::exists(dir / "sim" / "regimes.csv"));
  const Captured zero = captured({"simulate", "--out", (dir / "bad").string(), "--bars", "0"});
  CHECK(zero.code == apps::bad_usage);
  CHECK(zero.err.find("must be a number > 0, got '0'") != std::string::npos);
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
  // 2 learners x 5 baselines with the primary metric (prior, majority, persistence, scratch, finetune).
  CHECK(j["comparisons"].size() == 2 * 5);
  CHECK(j["verdicts"].size() == 2);
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

  CHECK(cli(tiny({"eval"}, dir / "straight", "6")) == apps::ok);
  CHECK(fs::exists(dir / "straight" / "report" / "report.json"));
  CHECK(cli(tiny({"eval"}, dir / "empty")) == apps::bad_usage);  // nothing trained there

  const fs::path json = dir / "adapt.json";
  auto adapt =
      tiny({"adapt", "--learner", "maml", "--family", "price_direction", "--steps", "2", "--json", json.string()},
           dir / "straight", "6");
  CHECK(cli(adapt) == apps::ok);
  std::ifstream in(json);
  const auto j = nlohmann::json::parse(in);
  CHECK(j["steps"] == 2);
  CHECK(j["metrics"].contains("accuracy"));
  CHECK(cli(tiny({"adapt", "--learner", "reptile"}, dir / "straight")) == apps::bad_usage);  // not trained
  // adapt reads the recorded configuration too: no need to repeat training.hidden, and a training key
  // that differs from the recorded one is named.
  CHECK(cli({"adapt", "--learner", "maml", "--out", (dir / "straight").string()}) == apps::ok);
  CHECK(cli({"adapt", "--learner", "maml", "--out", (dir / "straight").string(), "--set", "training.hidden=[16]"}) ==
        apps::bad_usage);
  CHECK(cli(tiny({"adapt", "--learner", "maml", "--steps", "-2"}, dir / "straight")) == apps::bad_usage);
  CHECK(cli(tiny({"adapt", "--learner", "maml", "--steps", "1000000000"}, dir / "straight")) == apps::bad_usage);
  {
    std::ofstream corrupt(dir / "corrupt.ckpt");
    corrupt << "not a checkpoint";
  }
  CHECK(cli(tiny({"adapt", "--checkpoint", (dir / "corrupt.ckpt").string()}, dir / "straight")) == apps::bad_data);
  fs::remove_all(dir);
}

TEST_CASE("cli: sampler keys: the same checkpoints whatever workers and prefetch; a cache_dir serves a second run") {
  const fs::path dir = fresh_dir("sampler");
  const std::string cache = (dir / "cache").string();
  auto train = [&](const std::string& name, std::vector<std::string> sets) {
    auto a = tiny({"train"}, dir / name, "4");
    for (const std::string& s : sets) {
      a.push_back("--set");
      a.push_back(s);
    }
    return cli(a);
  };
  auto bytes = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  auto stats = [&](const std::string& name) {
    std::ifstream in(dir / name / "sampler_stats.json");
    return nlohmann::json::parse(in).at("price_direction");
  };
  CHECK(train("serial", {"sampler.workers=1", "sampler.prefetch=0"}) == apps::ok);
  CHECK(train("parallel", {"sampler.workers=3", "sampler.prefetch=4", "sampler.cache_dir=" + cache}) == apps::ok);
  CHECK(train("cached", {"sampler.workers=2", "sampler.cache_dir=" + cache}) == apps::ok);
  const fs::path ckpt = fs::path("run0") / "price_direction" / "maml.ckpt";
  REQUIRE(fs::exists(dir / "serial" / ckpt));
  CHECK(bytes(dir / "serial" / ckpt) == bytes(dir / "parallel" / ckpt));
  CHECK(bytes(dir / "serial" / ckpt) == bytes(dir / "cached" / ckpt));
  CHECK(stats("parallel")["disk_hits"] == 0);
  CHECK(stats("cached")["built"] == 0);
  CHECK(stats("cached")["disk_hits"].get<int>() > 0);
  // "parallel" read ahead (prefetch 4) past the tasks it trained on; "cached" reads nothing ahead.
  CHECK(stats("cached")["disk_hits"].get<int>() <= stats("parallel")["built"].get<int>());
  // The filter changes the tasks (and is recorded as a training key); a bad value is named.
  CHECK(train("filtered", {"sampler.min_quality=0.9"}) == apps::ok);
  CHECK(stats("filtered")["skipped_quality"].get<int>() > 0);
  CHECK(bytes(dir / "serial" / ckpt) != bytes(dir / "filtered" / ckpt));
  CHECK(train("x", {"sampler.workers=-1"}) == apps::bad_usage);
  CHECK(train("x", {"sampler.prefetchh=2"}) == apps::bad_usage);
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
    std::vector<std::string> a{"sinusoid",
                               "--learners",
                               "maml,reptile",
                               "--iterations",
                               "20",
                               "--eval-tasks",
                               "12",
                               "--query-rows",
                               "20",
                               "--steps",
                               "0,1,3",
                               "--log-every",
                               "0",
                               "--json",
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

TEST_CASE("cli: the usage line names the program; an unknown command is named") {
  const Captured option = captured({"run", "--no-such-option"});
  CHECK(option.code == apps::bad_usage);
  CHECK(option.err.find("--no-such-option") != std::string::npos);
  const Captured run_help = captured({"run", "--help"});
  CHECK(run_help.out.find("Usage: metatape run") != std::string::npos);
  const Captured help = captured({"--help"});
  CHECK(help.code == apps::ok);
  CHECK(help.out.find("Usage: metatape") != std::string::npos);
  const Captured unknown = captured({"frobnicate"});
  CHECK(unknown.code == apps::bad_usage);
  CHECK(unknown.err.find("unknown command 'frobnicate'") != std::string::npos);
  CHECK(unknown.err.find("train") != std::string::npos);
  const Captured nested = captured({"data", "frobnicate"});
  CHECK(nested.code == apps::bad_usage);
  CHECK(nested.err.find("unknown command 'frobnicate' for metatape data") != std::string::npos);
  CHECK(nested.err.find("validate") != std::string::npos);
}

// The --learners and --families help lists are the registries' (meta/registry.h, tasks/families.h):
// the --families help had drifted from the family list (triangular_arbitrage was missing).
TEST_CASE("cli: --learners and --families help list every registered name") {
  for (const char* command : {"run", "bench", "train"}) {
    CAPTURE(command);
    const Captured help = captured({command, "--help"});
    REQUIRE(help.code == apps::ok);
    CHECK(help.out.find("(" + meta::learner_names_text(" ", " ") + ")") != std::string::npos);
    CHECK(help.out.find("(" + tasks::family_names_text(" ") + ")") != std::string::npos);
    CHECK(help.out.find("triangular_arbitrage") != std::string::npos);
  }
}

// The defect: eval forced resume = true, so it retrained the checkpoints to the default 1000 steps,
// rewrote them and grew the logs. eval now reads <out>/config.resolved.yaml and never writes there.
TEST_CASE("cli: eval never trains and never writes a checkpoint or a log") {
  const fs::path dir = fresh_dir("eval_readonly");
  const fs::path out = dir / "out";
  auto train = tiny({"train", "--checkpoint-every", "2"}, out, "3");
  REQUIRE(cli(train) == apps::ok);
  REQUIRE(fs::exists(out / "config.resolved.yaml"));
  const auto before = snapshot(out);
  REQUIRE(before.count("run0/price_direction/maml.ckpt") == 1);
  REQUIRE(before.count("run0/price_direction/protonet.jsonl") == 1);
  auto unchanged = [&] {
    const auto after = snapshot(out);
    for (const auto& [name, file] : before) {
      CAPTURE(name);
      REQUIRE(after.count(name) == 1);
      CHECK(after.at(name).first == file.first);
      CHECK(after.at(name).second == file.second);
    }
    for (const auto& [name, file] : after) {
      CAPTURE(name);
      CHECK((before.count(name) == 1 || name.rfind("report/", 0) == 0));
    }
  };
  auto eval = [&](std::vector<std::string> extra) {
    std::vector<std::string> a{"eval", "--out", out.string(), "--no-progress", "-q"};
    a.insert(a.end(), extra.begin(), extra.end());
    return captured(a);
  };

  // The bare command: every key from the recorded configuration (3 meta-steps, not the default 1000).
  const Captured bare = eval({});
  CHECK_MESSAGE(bare.code == apps::ok, bare.err);
  unchanged();
  {
    const auto j = nlohmann::json::parse(read_text(out / "report" / "report.json"));
    CHECK(j["config"]["meta_steps"] == 3);
    REQUIRE(j["training"].size() == 2);
    for (const auto& t : j["training"]) CHECK(t["steps"] == 3);
    CHECK(read_text(out / "report" / "report.md").find("1000 meta-steps") == std::string::npos);
  }
  // The same command line as train, and evaluation keys, are accepted; so is a subset of learners.
  CHECK(cli(tiny({"eval"}, out, "3")) == apps::ok);
  CHECK(eval({"--episodes", "6", "--set", "evaluation.steps=[2]", "--learners", "maml"}).code == apps::ok);
  CHECK(nlohmann::json::parse(read_text(out / "report" / "report.json"))["config"]["episodes"] == 6);
  unchanged();

  // A training key that differs from the recorded one is refused, naming both values.
  const Captured steps = eval({"--meta-steps", "1000"});
  CHECK(steps.code == apps::bad_usage);
  CHECK(steps.err.find("training.meta_steps is 1000 here but 3 in training") != std::string::npos);
  const Captured hidden = eval({"--set", "training.hidden=[16]"});
  CHECK(hidden.code == apps::bad_usage);
  CHECK(hidden.err.find("training.hidden is [16] here but [8] in training") != std::string::npos);
  CHECK(eval({"--learners", "reptile"}).code == apps::bad_usage);  // not trained
  CHECK(eval({"--resume"}).code == apps::bad_usage);
  unchanged();

  // A checkpoint that stopped before the configured meta-steps (what a killed run leaves: train writes
  // the resolved config first) is evaluated as it is, and the report says how many steps it had.
  {
    const fs::path partial = dir / "partial";
    REQUIRE(cli(tiny({"train"}, partial, "2")) == apps::ok);
    std::string text = read_text(partial / "config.resolved.yaml");
    const auto at = text.find("meta_steps: 2");
    REQUIRE(at != std::string::npos);
    text.replace(at, 13, "meta_steps: 5");
    std::ofstream(partial / "config.resolved.yaml") << text;
    const Captured c = captured({"eval", "--out", partial.string(), "--no-progress", "-q"});
    CHECK_MESSAGE(c.code == apps::ok, c.err);
    CHECK(c.err.find("maml on price_direction has 2 of 5 meta-steps") != std::string::npos);
    const auto j = nlohmann::json::parse(read_text(partial / "report" / "report.json"));
    for (const auto& t : j["training"]) CHECK(t["steps"] == 2);
  }

  // A missing checkpoint: refused, naming the file and the train command that makes it.
  fs::rename(out / "run0" / "price_direction" / "protonet.ckpt", dir / "protonet.ckpt");
  const Captured missing = eval({});
  CHECK(missing.code == apps::bad_usage);
  CHECK(missing.err.find((out / "run0" / "price_direction" / "protonet.ckpt").string()) != std::string::npos);
  CHECK(missing.err.find("metatape train --config " + (out / "config.resolved.yaml").string() + " --out " +
                         out.string() + " --resume") != std::string::npos);
  fs::rename(dir / "protonet.ckpt", out / "run0" / "price_direction" / "protonet.ckpt");
  // A corrupt checkpoint is bad input data (exit 3), for eval and for train --resume.
  const fs::path maml = out / "run0" / "price_direction" / "maml.ckpt";
  const std::string good = read_text(maml);
  std::ofstream(maml, std::ios::trunc) << "not a checkpoint";
  const Captured corrupt = eval({});
  CHECK(corrupt.code == apps::bad_data);
  CHECK(corrupt.err.find(maml.string()) != std::string::npos);
  const Captured resume = captured(tiny({"train", "--resume"}, out, "3"));
  CHECK(resume.code == apps::bad_data);
  CHECK(resume.err.find("cannot be resumed") != std::string::npos);
  CHECK(cli(tiny({"run", "--resume"}, out, "3")) == apps::bad_data);
  CHECK(read_text(maml) == "not a checkpoint");  // refused before anything was written
  std::ofstream(maml, std::ios::trunc | std::ios::binary) << good;

  // Nothing trained there: refused, naming the missing file and the train command.
  const Captured empty = captured({"eval", "--out", (dir / "empty").string(), "--meta-steps", "3", "-q"});
  CHECK(empty.code == apps::bad_usage);
  CHECK(empty.err.find("config.resolved.yaml is missing") != std::string::npos);
  CHECK(empty.err.find("metatape train --meta-steps 3 --out " + (dir / "empty").string()) != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "empty" / "run0"));
  fs::remove_all(dir);
}

TEST_CASE("cli: resume cuts the log back to the checkpoint and removes stale temporaries") {
  const fs::path dir = fresh_dir("resume_tidy");
  const fs::path out = dir / "out";
  REQUIRE(cli(tiny({"train", "--checkpoint-every", "2", "--set", "training.diagnose_every=2"}, out, "4")) == apps::ok);
  const fs::path family = out / "run0" / "price_direction";
  const fs::path log = family / "maml.jsonl";
  // What a run killed after its step-4 checkpoint leaves: rows of steps 5..7, a half-written line and
  // the temporary file of a checkpoint write that never finished.
  {
    std::ofstream extra(log, std::ios::app);
    extra << "{\"diagnostics\":true,\"step\":5}\n{\"step\":5,\"query_loss\":1}\n{\"step\":6,\"query_loss\":1}\n"
             "{\"step\":7,\"query_loss\":1}\n{\"step\":8,\"qu";
  }
  const fs::path stale = family / ("maml.ckpt.tmp." + std::to_string(dead_pid()));
  const fs::path live = family / "maml.ckpt.tmp.1";  // pid 1 is running: a writer we must not disturb
  std::ofstream(stale) << "partial checkpoint";
  std::ofstream(live) << "someone else's";
  REQUIRE(cli(tiny({"train", "--resume", "--checkpoint-every", "2", "--set", "training.diagnose_every=2"}, out, "6")) ==
          apps::ok);
  std::map<std::int64_t, int> metrics, diagnostics, validation;
  std::istringstream lines(read_text(log));
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    (j.value("diagnostics", false)          ? diagnostics
     : j.value("split", "") == "validation" ? validation
                                            : metrics)[j["step"].get<std::int64_t>()] += 1;
  }
  CHECK(metrics.size() == 6);
  for (std::int64_t step = 1; step <= 6; ++step) CHECK_MESSAGE(metrics[step] == 1, step);
  for (const auto& [step, n] : diagnostics) CHECK_MESSAGE(n == 1, step);
  // The last step of each run is validated (training.validate_every is above both): 4, then 6.
  CHECK(validation == std::map<std::int64_t, int>{{4, 1}, {6, 1}});
  CHECK_FALSE(fs::exists(stale));
  CHECK(fs::exists(live));

  // An old log with the rows of earlier resumes repeated keeps the last of each, up to the checkpoint.
  const fs::path messy = dir / "messy.jsonl";
  std::ofstream(messy)
      << "{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n{\"step\":2,\"again\":1}\n{\"step\":3,\"again\":1}\n"
         "{\"step\":4}\nnot json\n{\"step\":\"x\"}\n{\"step\":4,\"diagnostics\":\"odd\"}\n{\"step\":5}\n";
  CHECK(eval::cut_log_to_step(messy.string(), 4) == 6);
  CHECK(read_text(messy) ==
        "{\"step\":1}\n{\"step\":2,\"again\":1}\n{\"step\":3,\"again\":1}\n"
        "{\"step\":4,\"diagnostics\":\"odd\"}\n");
  CHECK(eval::cut_log_to_step(messy.string(), 4) == 0);
  CHECK(eval::cut_log_to_step((dir / "none.jsonl").string(), 4) == 0);
  fs::remove_all(dir);
}

// Each value hung, ran out of memory or was accepted silently; the CLI refuses it (exit 2) naming the
// key before anything runs.
TEST_CASE("cli: values that hang, exhaust memory or were silently accepted exit 2 naming the key") {
  const fs::path dir = fresh_dir("values");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"evaluation.steps=[1000000000]", "limits.max_inner_steps_x_episodes"},
      {"training.inner_steps=1e9", "limits.max_inner_steps_x_episodes"},
      {"training.meta_batch=1e8", "limits.max_rows"},
      {"training.hidden=[100000000]", "limits.max_parameters"},
      {"data.simulator.bars=1e12", "limits.max_bars"},
      {"training.inner_lr=-1", "training.inner_lr must be"},
      {"evaluation.alpha=2", "evaluation.alpha must be"},
      {"training.diagnose_every=0", "training.diagnose_every must be >= 1"},
      {"learners=[]", "learners is empty"},
      {"training.inner_lr=", "override 'training.inner_lr=' has no value"},
      {"evaluation.fee_rate=.nan", "evaluation.fee_rate must be a finite number"},
      {"training.inner_steps=0", "training.inner_steps must be >= 1"},
      {"training.outer_optimizer=rmsprop", "training.outer_optimizer"},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& [set, expect] = cases[i];
    CAPTURE(set);
    const fs::path out = dir / ("x" + std::to_string(i));
    std::vector<std::string> args = tiny({"run"}, out);
    if (set.rfind("learners", 0) == 0) {  // tiny's --learners would replace the value under test
      args.erase(std::find(args.begin(), args.end(), "--learners"),
                 std::find(args.begin(), args.end(), "protonet") + 1);
    }
    args.push_back("--set");  // after tiny's own --set values, which would override it
    args.push_back(set);
    const Captured c = captured(args);
    CHECK(c.code == apps::bad_usage);
    CHECK_MESSAGE(c.err.find(expect) != std::string::npos, c.err);
    CHECK_FALSE(fs::exists(out));
  }
  {
    std::ofstream twice(dir / "twice.yaml");
    twice << "training:\n  inner_lr: 0.1\n  inner_lr: 0.2\n";
  }
  const Captured twice = captured(tiny({"run", "--config", (dir / "twice.yaml").string()}, dir / "x"));
  CHECK(twice.code == apps::bad_usage);
  CHECK(twice.err.find("key 'training.inner_lr' is given twice (line 2 and line 3)") != std::string::npos);
  // The exact parameter count, once the features are known.
  std::vector<std::string> wide = tiny({"run"}, dir / "x");
  for (const char* a : {"--set", "training.hidden=[3000]", "--set", "limits.max_parameters=20000"}) wide.push_back(a);
  const Captured params = captured(wide);
  CHECK(params.code == apps::bad_usage);
  CHECK_MESSAGE(params.err.find("maml on price_direction (") != std::string::npos, params.err);
  CHECK(params.err.find("limits.max_parameters (20000)") != std::string::npos);
  // bad_alloc never reaches the user unnamed.
  const std::string oom = apps::out_of_memory_message();
  for (const char* key : {"out of memory", "limits.max_parameters", "limits.max_rows",
                          "limits.max_inner_steps_x_episodes", "limits.max_bars"}) {
    CHECK(oom.find(key) != std::string::npos);
  }
  fs::remove_all(dir);
}

TEST_CASE("cli: set-up refuses a market that cannot serve the family, naming the key and the fix") {
  const fs::path dir = fresh_dir("market_fit");
  // Portfolio with fewer symbols than tasks.portfolio_assets crashed in the scoring (scores (5, 3),
  // returns (5, 2)).
  const Captured portfolio =
      captured({"run", "-q", "--no-progress", "--out", (dir / "x").string(), "--families", "portfolio", "--learners",
                "maml", "--set", "data.simulator.assets=2", "--set", "tasks.portfolio_assets=3"});
  CHECK(portfolio.code == apps::bad_usage);
  CHECK(portfolio.err.find("tasks.portfolio_assets is 3 but the market has 2 symbols") != std::string::npos);
  CHECK(portfolio.err.find("set tasks.portfolio_assets to 2 or fewer") != std::string::npos);

  // Arbitrage on files whose exchange could not be inferred from their names.
  REQUIRE(cli({"simulate", "--out", (dir / "sim").string(), "--bars", "300", "--assets", "1", "--seed", "3"}) ==
          apps::ok);
  std::vector<fs::path> csvs;
  for (const auto& e : fs::directory_iterator(dir / "sim")) {
    if (e.path().filename() != "regimes.csv") csvs.push_back(e.path());
  }
  REQUIRE(csvs.size() == 2);
  fs::create_directories(dir / "plain");
  fs::copy_file(csvs[0], dir / "plain" / "first.csv");
  fs::copy_file(csvs[1], dir / "plain" / "second.csv");
  {
    std::ofstream cfg(dir / "arb.yaml");
    cfg << "learners: [maml]\ndata:\n  source: files\n  files: [first.csv, second.csv]\ntasks:\n  families: "
           "[arbitrage]\n";
  }
  const Captured arb = captured({"run", "-q", "--no-progress", "--config", (dir / "arb.yaml").string(), "--data",
                                 (dir / "plain").string(), "--out", (dir / "x").string()});
  CHECK(arb.code == apps::bad_usage);
  CHECK(arb.err.find("arbitrage, which needs one symbol quoted on >= 2 exchanges") != std::string::npos);
  CHECK(arb.err.find("was inferred as 'unknown'") != std::string::npos);
  CHECK(arb.err.find("exchange: binance}") != std::string::npos);
  // A directory listed as a data file is named, not read until memory runs out.
  fs::create_directories(dir / "plain" / "adir.csv");
  {
    std::ofstream cfg(dir / "dir.yaml");
    cfg << "learners: [maml]\ndata:\n  source: files\n  files: [adir.csv]\n";
  }
  const Captured d = captured({"run", "-q", "--config", (dir / "dir.yaml").string(), "--data", (dir / "plain").string(),
                               "--out", (dir / "x").string()});
  CHECK(d.code == apps::bad_data);
  CHECK(d.err.find("adir.csv is a directory") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("cli: data validate takes files and directories; data show prints parsed rows") {
  const fs::path dir = fresh_dir("data_many");
  REQUIRE(cli({"simulate", "--out", (dir / "sim").string(), "--bars", "200", "--assets", "1", "--seed", "4"}) ==
          apps::ok);
  std::vector<std::string> csvs;
  for (const auto& e : fs::directory_iterator(dir / "sim")) {
    if (e.path().filename() != "regimes.csv") csvs.push_back(e.path().string());  // walked past
  }
  REQUIRE(csvs.size() == 2);
  const Captured two = captured({"data", "validate", csvs[0], csvs[1]});
  CHECK(two.code == apps::ok);
  CHECK(two.out.find("2 files: 2 valid, 0 refused") != std::string::npos);
  const Captured walked = captured({"data", "validate", (dir / "sim").string()});
  CHECK(walked.code == apps::ok);
  CHECK(walked.out.find("2 files: 2 valid") != std::string::npos);
  fs::create_directories(dir / "sim" / "sub");
  {
    std::ofstream bad(dir / "sim" / "sub" / "broken.csv");
    bad << "time_ms,open,high,low,close,volume\n1600000000000,100,99,101,100,5\n";
  }
  const Captured mixed = captured({"data", "validate", (dir / "sim").string()});
  CHECK(mixed.code == apps::bad_data);
  CHECK(mixed.out.find("3 files: 2 valid, 1 refused") != std::string::npos);
  CHECK(mixed.err.find("broken.csv") != std::string::npos);
  fs::create_directories(dir / "nothing");
  CHECK(cli({"data", "validate", (dir / "nothing").string()}) == apps::bad_data);
  const Captured inspect_dir = captured({"data", "inspect", (dir / "sim").string()});
  CHECK(inspect_dir.code == apps::bad_data);
  CHECK(inspect_dir.err.find("is a directory") != std::string::npos);

  const Captured show = captured({"data", "show", csvs[0], "--rows", "3"});
  CHECK(show.code == apps::ok);
  CHECK(show.out.find("time (UTC)") != std::string::npos);
  CHECK(show.out.find("... 197 more") != std::string::npos);
  std::istringstream lines(show.out);
  int rows = 0;
  for (std::string line; std::getline(lines, line);) rows += line.rfind("20", 0) == 0 ? 1 : 0;  // "2020-01-01 00:00"
  CHECK(rows == 3);
  CHECK(cli({"data", "show", (dir / "sim").string()}) == apps::bad_data);
  fs::remove_all(dir);
}

TEST_CASE("cli: --progress prints line progress when stderr is not a terminal") {
  const fs::path dir = fresh_dir("progress");
  std::vector<std::string> args = tiny({"train"}, dir / "out", "2");
  args.erase(std::find(args.begin(), args.end(), "--no-progress"));
  const Captured quiet = captured(args);
  CHECK(quiet.code == apps::ok);
  CHECK(quiet.err.find("train [") == std::string::npos);  // not a terminal: nothing by default
  args.push_back("--progress");
  const Captured lines = captured(args);
  CHECK(lines.code == apps::ok);
  CHECK(lines.err.find("train [") != std::string::npos);
  CHECK(lines.err.find("100%") != std::string::npos);
  CHECK(lines.err.find('\r') == std::string::npos);
  CHECK(lines.err.find('\033') == std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("cli: omniglot trains and evaluates a Conv-4 end to end; bad options and data are named") {
  const fs::path data = fs::path(METATAPE_SHARED_DATA_DIR) / "omniglot";
  const fs::path dir = fresh_dir("omniglot");
  // Usage and data errors need no data.
  const Captured unknown = captured({"omniglot", "--learners", "mamal", "--data", data.string()});
  CHECK(unknown.code == apps::bad_usage);
  CHECK(unknown.err.find("unknown learner 'mamal'") != std::string::npos);
  const Captured too_many = captured({"omniglot", "--shots", "5", "--eval-queries", "16", "--data", data.string()});
  CHECK(too_many.code == apps::bad_usage);
  CHECK(too_many.err.find("shots + queries must be <= 20") != std::string::npos);
  const Captured missing = captured({"omniglot", "--data", (dir / "nowhere").string()});
  CHECK(missing.code == apps::bad_data);
  CHECK(missing.err.find("no data folder") != std::string::npos);
  if (!fs::is_directory(data)) {
    MESSAGE("skipped the omniglot run: " << data.string() << " not found (../shared/data/omniglot)");
    return;
  }
  const Captured run = captured({"omniglot", "--data", data.string(), "--learners", "maml,protonet", "--ways", "5",
                                 "--shots", "1", "--iterations", "2", "--meta-batch", "2", "--eval-episodes", "3",
                                 "--channels", "4", "--train-queries", "2", "--eval-queries", "2", "--threads", "2",
                                 "--log-every", "0", "--json", (dir / "omniglot.json").string()});
  CAPTURE(run.err);
  REQUIRE(run.code == apps::ok);
  CHECK(run.out.find("242 characters in 8 alphabets") != std::string::npos);
  CHECK(run.out.find("| pixels (nearest class mean) |") != std::string::npos);
  std::ifstream in(dir / "omniglot.json");
  const auto report = nlohmann::json::parse(in);
  for (const char* row : {"pixels (nearest class mean)", "maml", "maml (before training)", "protonet"}) {
    CAPTURE(row);
    const auto& cell = report["results"][row]["5-way 1-shot"];
    CHECK(cell["episodes"] == 3);
    CHECK(cell["mean"].get<double>() >= 0.0);
    CHECK(cell["ci_low"].get<double>() <= cell["ci_high"].get<double>());
  }
  // The 20-way one-shot runs: the pixel control and the metric learner (no 20-way MAML head was trained).
  CHECK(report["results"]["protonet"]["one_shot_runs"]["per_run_accuracy"].size() == 20);
  CHECK_FALSE(report["results"]["maml"].contains("one_shot_runs"));
  CHECK(report["training"]["maml 5-way"]["iterations"] == 2);
  fs::remove_all(dir);
}
