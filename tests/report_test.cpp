// `adaspan report`: the figures exist, are real images, and show the run's own numbers (the plotted
// series in report.json are checked against metrics.jsonl and the checkpoint).
#include "checkpointing/checkpoint_file.h"
#include "ci_policy.h"
#include "tests/command_runner.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

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
