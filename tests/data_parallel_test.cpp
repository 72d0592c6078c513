// Data parallelism with real `mpirun -np N` runs of the binary (CPU, MPI backend). The one-rank
// run is the reference: more ranks change only the order of the gradient sums.
#include "tests/scratch_dir.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace adaspan {
namespace {

namespace fs = std::filesystem;

const char* kSmallRun =
    " train --steps 12 --layers 2 --d-model 32 --heads 2 --ff-size 64 --attn-span 64 --block-size 32"
    " --log-every 3 --eval-every 12 --eval-steps 2 --threads 1 --lr 0.05 --warmup-steps 4";

struct Result {
  int exit_code;
  std::string err;
};

Result mpirun(int ranks, const std::string& args, const std::string& env = "") {
  const fs::path err = fs::temp_directory_path() / ("adaspan_dp_err_" + std::to_string(::getpid()));
  const std::string command = env + " timeout 120 " + ADASPAN_MPIEXEC + " --allow-run-as-root --oversubscribe -np " +
                              std::to_string(ranks) + " " + ADASPAN_BINARY + args + " > /dev/null 2> " + err.string();
  const int status = std::system(command.c_str());
  std::ifstream in(err);
  Result r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, {std::istreambuf_iterator<char>(in), {}}};
  fs::remove(err);
  return r;
}

std::vector<nlohmann::json> metrics(const fs::path& dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

fs::path fresh_dir(const std::string& name) { return testing::fresh_dir("dp", name, false); }

TEST(DataParallel, OneTwoFourRanksGiveTheSameLossCurve) {
  std::map<int, std::vector<nlohmann::json>> runs;
  for (int ranks : {1, 2, 4}) {
    const fs::path dir = fresh_dir("np" + std::to_string(ranks));
    const Result r = mpirun(ranks, std::string(kSmallRun) + " --batch-size 8 --run-dir " + dir.string());
    ASSERT_EQ(r.exit_code, 0) << ranks << " ranks: " << r.err;
    runs[ranks] = metrics(dir);
    fs::remove_all(dir);
  }
  const auto& reference = runs[1];
  ASSERT_EQ(reference.size(), 7u);  // 4 training records, 1 valid, the final checkpoint, done
  for (int ranks : {2, 4}) {
    ASSERT_EQ(runs[ranks].size(), reference.size());
    for (size_t i = 0; i < reference.size(); ++i) {
      const auto &a = reference[i], &b = runs[ranks][i];
      EXPECT_EQ(a["step"], b["step"]);
      EXPECT_EQ(a.value("event", ""), b.value("event", ""));
      if (!a.contains("bpc") && !a.contains("param_norm")) continue;  // the checkpoint's record
      const char* key = a.contains("bpc") ? "bpc" : "param_norm";
      const double x = a[key].get<double>(), y = b[key].get<double>();
      EXPECT_NEAR(x, y, 1e-5 * std::abs(x)) << ranks << " ranks, record " << i << " " << key;
    }
    EXPECT_EQ(runs[ranks].back()["ranks"], ranks);
    EXPECT_EQ(runs[ranks][0]["peak_memory_mb"].size(), static_cast<size_t>(ranks));
    EXPECT_TRUE(runs[ranks][0].contains("comm_wait_s"));
  }
}

TEST(DataParallel, EachRankReadsOnlyItsOwnStreams) {
  const fs::path dir = fresh_dir("reads"), trace = fresh_dir("trace");
  fs::create_directories(trace);
  const Result r = mpirun(2, std::string(kSmallRun) + " --batch-size 8 --run-dir " + dir.string(),
                          "ADASPAN_TRACE_READS=" + trace.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const uint64_t corpus = 4u << 20, block = 32;  // built-in corpus size, --block-size
  for (int rank = 0; rank < 2; ++rank) {
    std::ifstream in(trace / ("reads." + std::to_string(rank) + ".txt"));
    std::map<int64_t, int> reads_per_stream;
    int64_t stream, bytes;
    uint64_t position;
    while (in >> stream >> position >> bytes) {
      const int step = reads_per_stream[stream]++;
      EXPECT_EQ(position, (corpus * static_cast<uint64_t>(stream) / 8 + step * block) % corpus);
      EXPECT_EQ(bytes, static_cast<int64_t>(block) + 1);
    }
    std::set<int64_t> streams;
    for (const auto& [s, n] : reads_per_stream) {
      streams.insert(s);
      EXPECT_EQ(n, 12) << "stream " << s;
    }
    const std::set<int64_t> own = rank == 0 ? std::set<int64_t>{0, 1, 2, 3} : std::set<int64_t>{4, 5, 6, 7};
    EXPECT_EQ(streams, own) << "rank " << rank;
  }
  fs::remove_all(dir);
  fs::remove_all(trace);
}

TEST(DataParallel, BadLayoutsFailFastWithOneMessage) {
  for (const auto& [batch, expected] :
       std::vector<std::pair<int, std::string>>{{6, "not divisible"}, {2, "fewer streams"}}) {
    const fs::path dir = fresh_dir("bad");
    const Result r =
        mpirun(4, std::string(kSmallRun) + " --batch-size " + std::to_string(batch) + " --run-dir " + dir.string());
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.exit_code, 124) << "timed out: a hang";
    // One line from adaspan (rank 0's); what follows is mpirun's own report of the exit.
    std::istringstream lines(r.err);
    int ours = 0;
    for (std::string line; std::getline(lines, line);) ours += line.rfind("adaspan", 0) == 0;
    EXPECT_EQ(ours, 1) << r.err;
    EXPECT_NE(r.err.find(expected), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir));
  }
}

// A data file only rank 0 can see (node-local disk): every rank stops, none waits in a collective.
TEST(DataParallel, AFileMissingOnOneRankStopsAllRanks) {
  const fs::path dir = fresh_dir("local"), data = fresh_dir("local_data");
  fs::create_directories(data);
  std::ofstream(data / "a.txt") << "some bytes for the streams";
  const fs::path err = dir.string() + ".err";
  const std::string command =
      std::string("timeout 60 ") + ADASPAN_MPIEXEC + " --allow-run-as-root --oversubscribe -np 2 sh -c '" +
      "if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then d=" + (data / "missing.txt").string() +
      "; else d=" + (data / "a.txt").string() + "; fi; exec " + ADASPAN_BINARY +
      " train --data $d --batch-size 2 --steps 2 --run-dir " + dir.string() + "' > /dev/null 2> " + err.string();
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_NE(WEXITSTATUS(status), 124) << "timed out: a hang";
  std::ifstream in(err);
  const std::string text{std::istreambuf_iterator<char>(in), {}};
  EXPECT_NE(text.find("error on rank 1"), std::string::npos) << text;
  EXPECT_NE(text.find("missing.txt"), std::string::npos) << text;
  EXPECT_FALSE(fs::exists(dir));
  fs::remove_all(data);
  fs::remove(err);
}

}  // namespace
}  // namespace adaspan
