// `adaspan report`: the figures exist, are real images, and show the run's own numbers (the plotted
// series in report.json are checked against metrics.jsonl and the checkpoint); with --tensorboard,
// the event files read back with tensorboard's own reader (tests/tensorboard_check.py) hold the
// metrics' series, also when written while the run's metrics grow (--follow).
#include "checkpointing/checkpoint_file.h"
#include "ci_policy.h"
#include "tests/command_runner.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

namespace adaspan {
namespace {

namespace fs = std::filesystem;

// Width and height from a PNG's IHDR chunk.
std::pair<uint32_t, uint32_t> png_size(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char header[24] = {};
  in.read(reinterpret_cast<char*>(header), sizeof(header));
  const auto be32 = [&](int at) {
    return (uint32_t{header[at]} << 24) | (uint32_t{header[at + 1]} << 16) | (uint32_t{header[at + 2]} << 8) |
           header[at + 3];
  };
  if (header[1] != 'P' || header[2] != 'N' || header[3] != 'G') return {0, 0};
  return {be32(16), be32(20)};
}

TEST(Report, FiguresShowTheRunsNumbers) {
  if (std::system("timeout 60 python3 -c 'import matplotlib, h5py' > /dev/null 2>&1") != 0) {
    ADASPAN_SKIP_OUTSIDE_CI("python3 lacks matplotlib or h5py (scripts/setup.sh installs them)");
  }
  const fs::path dir = fs::temp_directory_path() / ("adaspan_report_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const auto train = testing::run_adaspan(
      "train --steps 20 --layers 2 --d-model 32 --heads 2 --ff-size 64 --attn-span 64 --block-size 32 --batch-size 4"
      " --log-every 5 --eval-every 10 --eval-steps 2 --threads 1 --checkpoint-every 20 --run-dir " +
      dir.string());
  ASSERT_EQ(train.exit_code, 0) << train.err;
  const auto r = testing::run_adaspan("report " + dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;

  for (const char* name : {"bpc.png", "throughput.png", "spans_heatmap.png", "span_trajectories.png", "ranks.png"}) {
    const auto [w, h] = png_size(dir / name);
    EXPECT_GE(w, 200u) << name;
    EXPECT_GE(h, 150u) << name;
  }
  std::ifstream html_in(dir / "report.html");
  const std::string html{std::istreambuf_iterator<char>(html_in), {}};
  size_t images = 0;
  for (size_t at = html.find("data:image/png;base64,"); at != std::string::npos;
       at = html.find("data:image/png;base64,", at + 1))
    ++images;
  EXPECT_EQ(images, 5u);

  std::ifstream json_in(dir / "report.json");
  const auto report = nlohmann::json::parse(json_in);
  std::vector<std::pair<int64_t, double>> train_bpc, valid_bpc;
  std::ifstream metrics(dir / "metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("bpc")) continue;
    (j.contains("split") ? valid_bpc : train_bpc).emplace_back(j["step"].get<int64_t>(), j["bpc"].get<double>());
  }
  ASSERT_EQ(report["train_bpc"].size(), train_bpc.size());
  for (size_t i = 0; i < train_bpc.size(); ++i) {
    EXPECT_EQ(report["train_bpc"][i][0].get<int64_t>(), train_bpc[i].first);
    EXPECT_DOUBLE_EQ(report["train_bpc"][i][1].get<double>(), train_bpc[i].second);
  }
  EXPECT_EQ(report["valid_bpc"].size(), valid_bpc.size());
  // The heatmap's spans are the checkpoint's.
  const auto header = checkpointing::read_checkpoint_header((dir / "ckpt-20.h5").string());
  EXPECT_EQ(report["spans_step"], 20);
  EXPECT_EQ(report["spans"].get<std::vector<std::vector<double>>>(), header.spans);
  fs::remove_all(dir);

  const auto missing = testing::run_adaspan("report " + (dir / "nothing").string());
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("no metrics.jsonl"), std::string::npos) << missing.err;
}

// A run dir's files are data: markup in them is escaped in report.html, a `latest` that names a
// file outside the run dir is not read, and a symlink where the report writes is not written through.
TEST(Report, EscapesTheRunsTextAndReadsNothingOutsideTheRunDir) {
  if (std::system("timeout 60 python3 -c 'import matplotlib, h5py' > /dev/null 2>&1") != 0) {
    ADASPAN_SKIP_OUTSIDE_CI("python3 lacks matplotlib or h5py (scripts/setup.sh installs them)");
  }
  const fs::path dir = fs::temp_directory_path() / ("adaspan_report_hostile_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "run");
  std::ofstream(dir / "outside.h5") << "not a checkpoint";
  std::ofstream(dir / "run" / "latest") << "../outside.h5\n";
  std::ofstream(dir / "run" / "metrics.jsonl")
      << R"({"step": 1, "bpc": 7.5, "tokens_per_s": 100, "spans": [[1.0]]})"
      << "\n"
      << R"({"event": "skipped_step", "step": 2, "reason": "<script>alert(1)</script>"})"
      << "\n"
      << R"({"event": "done", "step": "<b>bold</b>", "ranks": "<i>", "param_norm": 1.5, "spans": [[1.0]]})"
      << "\n";
  // Links planted where the report writes: replaced, not followed.
  std::ofstream(dir / "victim") << "keep me";
  fs::create_symlink(dir / "victim", dir / "run" / "report.html");
  fs::create_symlink(dir / "victim", dir / "run" / "report.json");
  const auto r = testing::run_adaspan("report " + (dir / "run").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("ignoring 'latest'"), std::string::npos) << r.err;
  std::ifstream victim(dir / "victim");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(victim), {}), "keep me") << "written through a symlink";
  EXPECT_FALSE(fs::is_symlink(dir / "run" / "report.html"));
  EXPECT_FALSE(fs::is_symlink(dir / "run" / "report.json"));
  std::ifstream html_in(dir / "run" / "report.html");
  const std::string html{std::istreambuf_iterator<char>(html_in), {}};
  EXPECT_EQ(html.find("<script>"), std::string::npos);
  EXPECT_EQ(html.find("<b>bold"), std::string::npos);
  EXPECT_EQ(html.find("<i>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;"), std::string::npos);
  fs::remove_all(dir);
}

bool python_writes_tensorboard() {
  return std::system(
             "timeout 120 python3 -c 'import matplotlib, h5py, tensorboard, torch.utils.tensorboard' > /dev/null "
             "2>&1") == 0;
}

// The tiny run the TensorBoard tests read: 20 steps of 2 layers x 2 heads, logged every 5, validated every 10.
testing::CommandResult train_tiny_run(const fs::path& dir) {
  return testing::run_adaspan(
      "train --steps 20 --layers 2 --d-model 32 --heads 2 --ff-size 64 --attn-span 64 --block-size 32 --batch-size 4"
      " --log-every 5 --eval-every 10 --eval-steps 2 --threads 1 --checkpoint-every 20 --run-dir " +
      dir.string());
}

// The event files in `dir` as tests/tensorboard_check.py prints them (null when it fails):
// {"files", "scalars": {tag: [[step, value]]}, "histograms": {tag: [[step, count, min, max]]}, "images": ...}.
nlohmann::json read_events(const fs::path& dir) {
  const fs::path script = fs::path(__FILE__).parent_path() / "tensorboard_check.py";
  const fs::path out = dir.string() + ".json";
  const std::string command =
      "timeout 120 python3 " + script.string() + " " + dir.string() + " > " + out.string() + " 2> /dev/null";
  if (std::system(command.c_str()) != 0) return nullptr;
  const auto events = nlohmann::json::parse(testing::slurp(out), nullptr, false);
  fs::remove(out);
  return events.is_discarded() ? nlohmann::json() : events;
}

using Series = std::vector<std::pair<int64_t, double>>;

// metrics.jsonl's series under the TensorBoard tags report writes, and each training record's spans.
struct MetricsSeries {
  std::map<std::string, Series> scalars;
  std::vector<std::pair<int64_t, std::vector<double>>> spans;
};

MetricsSeries metrics_series(const fs::path& path) {
  MetricsSeries m;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const auto r = nlohmann::json::parse(line, nullptr, false);
    if (r.is_discarded() || !r.contains("bpc")) continue;
    const int64_t step = r["step"].get<int64_t>();
    if (r.contains("split")) {
      m.scalars["bpc/valid"].emplace_back(step, r["bpc"].get<double>());
      continue;
    }
    m.scalars["bpc/train"].emplace_back(step, r["bpc"].get<double>());
    m.scalars["lr"].emplace_back(step, r["lr"].get<double>());
    m.scalars["tokens_per_s"].emplace_back(step, r["tokens_per_s"].get<double>());
    m.scalars["peak_memory_mb/rank0"].emplace_back(step, r["peak_memory_mb"][0].get<double>());
    m.scalars["span/layer0/head0"].emplace_back(step, r["spans"][0][0].get<double>());
    std::vector<double> spans;
    for (const auto& layer : r["spans"])
      for (const auto& z : layer) spans.push_back(z.get<double>());
    m.spans.emplace_back(step, spans);
  }
  return m;
}

// Every series of `m` is in `events` (as float32, TensorBoard's scalars), step for step, and the
// histogram `spans` holds every head's span at each logged step.
void expect_events_match(const nlohmann::json& events, const MetricsSeries& m) {
  for (const auto& [tag, expected] : m.scalars) {
    ASSERT_TRUE(events["scalars"].contains(tag)) << tag << " missing: " << events["scalars"].dump();
    const auto& got = events["scalars"][tag];
    ASSERT_EQ(got.size(), expected.size()) << tag << ": " << got.dump();
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ(got[i][0].get<int64_t>(), expected[i].first) << tag;
      EXPECT_FLOAT_EQ(got[i][1].get<float>(), static_cast<float>(expected[i].second)) << tag << " " << i;
    }
  }
  ASSERT_TRUE(events["histograms"].contains("spans")) << events["histograms"].dump();
  const auto& histograms = events["histograms"]["spans"];
  ASSERT_EQ(histograms.size(), m.spans.size());
  for (size_t i = 0; i < m.spans.size(); ++i) {
    const auto& spans = m.spans[i].second;
    EXPECT_EQ(histograms[i][0].get<int64_t>(), m.spans[i].first);
    EXPECT_EQ(histograms[i][1].get<double>(), static_cast<double>(spans.size()));
    EXPECT_DOUBLE_EQ(histograms[i][2].get<double>(), *std::min_element(spans.begin(), spans.end()));
    EXPECT_DOUBLE_EQ(histograms[i][3].get<double>(), *std::max_element(spans.begin(), spans.end()));
  }
}

// The heatmap image: once, at `step`.
void expect_heatmap_at(const nlohmann::json& events, int64_t step) {
  ASSERT_TRUE(events["images"].contains("spans_heatmap")) << events["images"].dump();
  const auto& image = events["images"]["spans_heatmap"];
  ASSERT_EQ(image.size(), 1u) << image.dump();
  EXPECT_EQ(image[0][0].get<int64_t>(), step);
  EXPECT_GE(image[0][1].get<int>(), 200);
  EXPECT_GE(image[0][2].get<int>(), 150);
}

TEST(Report, TensorBoardEventsMatchTheMetrics) {
  if (!python_writes_tensorboard()) {
    ADASPAN_SKIP_OUTSIDE_CI("python3 lacks tensorboard, torch, matplotlib or h5py (scripts/setup.sh installs them)");
  }
  const fs::path dir = fs::temp_directory_path() / ("adaspan_report_tb_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const auto train = train_tiny_run(dir);
  ASSERT_EQ(train.exit_code, 0) << train.err;
  // Twice: the second report replaces the first one's event files, so no step is there twice.
  for (int i = 0; i < 2; ++i) {
    const auto r = testing::run_adaspan("report " + dir.string() + " --tensorboard");
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_TRUE(fs::exists(dir / "report.html"));
  const auto events = read_events(dir / "tensorboard");
  ASSERT_FALSE(events.is_null()) << "tests/tensorboard_check.py could not read " << (dir / "tensorboard");
  EXPECT_EQ(events["files"].size(), 1u) << events["files"].dump();
  const MetricsSeries metrics = metrics_series(dir / "metrics.jsonl");
  EXPECT_EQ(metrics.scalars.at("bpc/train").size(), 4u);
  EXPECT_EQ(metrics.scalars.at("bpc/valid").size(), 2u);
  expect_events_match(events, metrics);
  expect_heatmap_at(events, 20);  // the final checkpoint's spans, as in report.html

  const fs::path elsewhere = dir / "elsewhere" / "tb";
  const auto r = testing::run_adaspan("report " + dir.string() + " --tensorboard-dir " + elsewhere.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto copied = read_events(elsewhere);
  ASSERT_FALSE(copied.is_null());
  EXPECT_EQ(copied["scalars"], events["scalars"]);

  const auto alone = testing::run_adaspan("report " + dir.string() + " --follow");
  EXPECT_EQ(alone.exit_code, 2);
  EXPECT_NE(alone.err.find("--follow needs --tensorboard"), std::string::npos) << alone.err;
  fs::remove_all(dir);
}

// Starts `adaspan report RUN_DIR --tensorboard --follow` in the background; its stdout, stderr,
// pid and exit status go to `base`.out, .err, .pid and .rc (written whole once it exits).
void start_following(const fs::path& run_dir, const std::string& base) {
  const std::string command = "( timeout 150 " + std::string(ADASPAN_BINARY) + " report " + run_dir.string() +
                              " --tensorboard --follow > " + base + ".out 2> " + base + ".err & echo $! > " + base +
                              ".pid; wait $!; echo $? > " + base + ".rc.tmp; mv " + base + ".rc.tmp " + base +
                              ".rc ) > /dev/null 2>&1 &";
  ASSERT_EQ(std::system(command.c_str()), 0);
}

// Polls `done` every 100 ms for up to `seconds`.
bool wait_for(const std::function<bool()>& done, double seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return true;
}

void append(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::app);
  out << text;
}

// --follow on a run still training: what metrics.jsonl gains is appended (a line half written is
// waited for), and the run's done record ends it with status 0; the events then equal the metrics.
TEST(Report, TensorBoardFollowAppendsUntilTheRunIsDone) {
  if (!python_writes_tensorboard()) {
    ADASPAN_SKIP_OUTSIDE_CI("python3 lacks tensorboard, torch, matplotlib or h5py (scripts/setup.sh installs them)");
  }
  const fs::path dir = fs::temp_directory_path() / ("adaspan_report_follow_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const auto train = train_tiny_run(dir / "finished");
  ASSERT_EQ(train.exit_code, 0) << train.err;
  std::vector<std::string> lines;
  std::ifstream in(dir / "finished" / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) lines.push_back(line + "\n");
  ASSERT_GE(lines.size(), 4u);
  ASSERT_NE(lines.back().find("\"done\""), std::string::npos) << lines.back();
  // The live run: its first two records (steps 5 and 10) so far.
  const fs::path live = dir / "live", metrics = live / "metrics.jsonl";
  fs::create_directories(live);
  append(metrics, lines[0] + lines[1]);
  const std::string base = (dir / "follow").string();
  start_following(live, base);
  const auto said = [&](const std::string& text) {
    return testing::slurp(base + ".out").find(text) != std::string::npos;
  };
  ASSERT_TRUE(wait_for([&] { return said("events through step 10"); }, 120)) << testing::slurp(base + ".err");
  // The rest but the done record, then half the done record: it keeps following.
  std::string rest;
  for (size_t i = 2; i + 1 < lines.size(); ++i) rest += lines[i];
  const std::string& done = lines.back();
  append(metrics, rest + done.substr(0, done.size() / 2));
  ASSERT_TRUE(wait_for([&] { return said("events through step 20"); }, 60)) << testing::slurp(base + ".err");
  EXPECT_FALSE(fs::exists(base + ".rc")) << "stopped before the done record";
  append(metrics, done.substr(done.size() / 2));
  ASSERT_TRUE(wait_for([&] { return fs::exists(base + ".rc"); }, 120)) << testing::slurp(base + ".err");
  EXPECT_EQ(testing::slurp(base + ".rc"), "0\n") << testing::slurp(base + ".err");
  const auto events = read_events(live / "tensorboard");
  ASSERT_FALSE(events.is_null());
  EXPECT_EQ(events["files"].size(), 1u);
  expect_events_match(events, metrics_series(dir / "finished" / "metrics.jsonl"));
  expect_heatmap_at(events, 20);  // from the last record's spans (the live dir has no checkpoint)
  EXPECT_TRUE(fs::exists(live / "report.html"));
  fs::remove_all(dir);
}

// SIGTERM (as SIGINT) ends --follow cleanly: status 0, the events written so far kept.
TEST(Report, TensorBoardFollowStopsCleanlyOnSigterm) {
  if (!python_writes_tensorboard()) {
    ADASPAN_SKIP_OUTSIDE_CI("python3 lacks tensorboard, torch, matplotlib or h5py (scripts/setup.sh installs them)");
  }
  const fs::path dir = fs::temp_directory_path() / ("adaspan_report_sigterm_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "run");
  append(dir / "run" / "metrics.jsonl",
         R"({"step": 1, "bpc": 7.5, "lr": 0.1, "tokens_per_s": 100, "peak_memory_mb": [10.0], "spans": [[1.0, 2.0]]})"
         "\n");
  const std::string base = (dir / "follow").string();
  start_following(dir / "run", base);
  ASSERT_TRUE(wait_for([&] { return testing::slurp(base + ".out").find("through step 1 ") != std::string::npos; }, 120))
      << testing::slurp(base + ".err");
  const std::string pid = testing::slurp(base + ".pid");
  ASSERT_FALSE(pid.empty());
  ASSERT_EQ(std::system(("kill -TERM " + pid).c_str()), 0);  // timeout(1) passes it on to the report
  ASSERT_TRUE(wait_for([&] { return fs::exists(base + ".rc"); }, 60)) << testing::slurp(base + ".err");
  EXPECT_EQ(testing::slurp(base + ".rc"), "0\n") << testing::slurp(base + ".err");
  const auto events = read_events(dir / "run" / "tensorboard");
  ASSERT_FALSE(events.is_null());
  EXPECT_EQ(events["scalars"]["bpc/train"], nlohmann::json::parse("[[1, 7.5]]"));
  EXPECT_EQ(events["scalars"]["span/layer0/head1"], nlohmann::json::parse("[[1, 2.0]]"));
  fs::remove_all(dir);
}

// bench/run_all runs the benchmarks it is asked for and writes one table of their figures twice, as
// JSON and as markdown, with the device it ran on.
TEST(BenchRunAll, WritesOneTableAsMarkdownAndJson) {
  const fs::path source = fs::path(__FILE__).parent_path().parent_path();
  const fs::path out = fs::temp_directory_path() / ("adaspan_bench_" + std::to_string(::getpid()));
  fs::remove_all(out);
  const std::string command = "timeout 280 python3 " + (source / "bench" / "run_all").string() +
                              " --quick --only train,checkpoint --build " + ADASPAN_BUILD_DIR + " --out " +
                              out.string() + " > /dev/null 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  const auto report = nlohmann::json::parse(testing::slurp(out / "bench.json"));
  const std::string table = testing::slurp(out / "bench.md");
  EXPECT_FALSE(report["device"]["cpu"].get<std::string>().empty());
  EXPECT_NE(table.find(report["device"]["cpu"].get<std::string>()), std::string::npos);
  std::map<std::string, int> per_bench;
  std::map<std::string, double> train;
  for (const auto& r : report["results"]) {
    const double value = r["value"].get<double>();
    EXPECT_TRUE(std::isfinite(value) && value > 0) << r.dump();
    ++per_bench[r["bench"].get<std::string>()];
    const std::string row = "| " + r["bench"].get<std::string>() + " | " + r["case"].get<std::string>() + " | " +
                            r["metric"].get<std::string>() + " | ";
    EXPECT_NE(table.find(row), std::string::npos) << row;
    if (r["bench"] == "train") train[r["case"].get<std::string>() + "/" + r["metric"].get<std::string>()] = value;
  }
  EXPECT_EQ(per_bench["train"], 9);
  EXPECT_EQ(per_bench["checkpoint"], 12);  // 6 figures for 1 and for 2 writer ranks
  EXPECT_NEAR(train["one head, span 10% of S/cost vs span 100%"],
              train["one head, span 10% of S/attention fwd+bwd"] / train["one head, span 100% of S/attention fwd+bwd"],
              1e-9);
  fs::remove_all(out);

  const std::string unknown =
      "timeout 60 python3 " + (source / "bench" / "run_all").string() + " --only nonsense > /dev/null 2>&1";
  EXPECT_NE(std::system(unknown.c_str()), 0);
}

TEST(Install, PutsTheBinariesScriptsAndDocsInPlace) {
  const fs::path prefix = fs::temp_directory_path() / ("adaspan_install_" + std::to_string(::getpid()));
  fs::remove_all(prefix);
  const std::string install = "timeout 120 " + std::string(ADASPAN_CMAKE) + " --install " + ADASPAN_BUILD_DIR +
                              " --prefix " + prefix.string() + " > /dev/null";
  ASSERT_EQ(std::system(install.c_str()), 0);
  for (const char* file : {"bin/adaspan", "share/adaspan/report.py", "share/adaspan/adaspan.sbatch",
                           "share/doc/adaspan/README.md", "share/doc/adaspan/checkpoint-format.md"}) {
    EXPECT_TRUE(fs::exists(prefix / file)) << file;
  }
  // The installed binary runs on its own (RPATH to LibTorch and HDF5).
  EXPECT_EQ(std::system(("timeout 60 " + (prefix / "bin/adaspan").string() + " --help > /dev/null").c_str()), 0);
  fs::remove_all(prefix);
}

}  // namespace
}  // namespace adaspan
