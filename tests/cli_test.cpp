// The binary as a user runs it: bad input gives one clear error line, a non-zero exit, and
// writes nothing.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace adaspan {
namespace {

namespace fs = std::filesystem;

struct RunResult {
  int exit_code;
  std::string out, err;
};

RunResult run(const std::string& args) {
  const fs::path err_file = fs::temp_directory_path() / ("adaspan_cli_err_" + std::to_string(::getpid()));
  const std::string command = "timeout 120 " + std::string(ADASPAN_BINARY) + " " + args + " 2>" + err_file.string();
  RunResult result{};
  FILE* pipe = popen(command.c_str(), "r");
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) result.out.append(buf.data(), n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err_file);
  result.err.assign(std::istreambuf_iterator<char>(in), {});
  fs::remove(err_file);
  return result;
}

struct BadInput {
  const char* name;
  const char* args;
  const char* expected;  // part of the one error line
};

void PrintTo(const BadInput& bad, std::ostream* os) { *os << bad.args; }

class CliRejects : public ::testing::TestWithParam<BadInput> {};

TEST_P(CliRejects, OneErrorLineNonZeroExitNothingWritten) {
  const BadInput bad = GetParam();
  const fs::path run_dir = fs::temp_directory_path() / ("adaspan_cli_run_" + std::string(bad.name));
  fs::remove_all(run_dir);
  const RunResult r = run(std::string("train --steps 2 --run-dir ") + run_dir.string() + " " + bad.args);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("error"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(bad.expected), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(run_dir)) << "run dir written for bad input";
}

INSTANTIATE_TEST_SUITE_P(
    BadFlags, CliRejects,
    ::testing::Values(BadInput{"unknown_flag", "--no-such-flag 3", "no-such-flag"},
                      BadInput{"zero_layers", "--layers 0", "--layers"},
                      BadInput{"negative_block", "--block-size -4", "--block-size"},
                      BadInput{"heads_divide", "--d-model 100 --heads 3", "not divisible by --heads"},
                      BadInput{"missing_data", "--data /nonexistent/corpus.txt", "/nonexistent/corpus.txt"},
                      BadInput{"bad_cache", "--cache disk", "disk"},
                      BadInput{"bad_optimizer", "--optimizer sgdx", "sgdx"},
                      BadInput{"not_a_number", "--lr fast", "lr"}, BadInput{"bad_device", "--device tpu", "tpu"},
                      BadInput{"bad_precision", "--precision fp16", "fp16"}),
    [](const auto& info) { return std::string(info.param.name); });

// A corpus truncated while a run has it mapped: one line and exit 1, not a silent "Bus error".
TEST(Cli, ADataFileTruncatedWhileMappedIsOneErrorNotASilentCrash) {
  const fs::path dir = fs::temp_directory_path() / ("adaspan_cli_truncated_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "corpus.txt") << std::string(4 << 20, 'x');
  const std::string command =
      "cd " + dir.string() + " && (timeout 120 " + ADASPAN_BINARY +
      " train --layers 1 --d-model 32 --heads 2 --ff-size 64 --attn-span 64 --block-size 32 --batch-size 4"
      " --threads 1 --steps 1000000 --log-every 1000 --no-final-checkpoint --data corpus.txt --run-dir run"
      " > /dev/null 2> err.txt & pid=$!; sleep 3; : > corpus.txt; wait $pid; echo $? > status.txt)";
  ASSERT_EQ(std::system(command.c_str()), 0);
  std::ifstream status_in(dir / "status.txt"), err_in(dir / "err.txt");
  int status = -1;
  status_in >> status;
  const std::string err{std::istreambuf_iterator<char>(err_in), {}};
  EXPECT_EQ(status, 1) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_NE(err.find("truncated or replaced while in use"), std::string::npos) << err;
  fs::remove_all(dir);
}

TEST(Cli, UnwritableRunDirIsOneClearError) {
  const fs::path blocker = fs::temp_directory_path() / ("adaspan_cli_blocker_" + std::to_string(::getpid()));
  std::ofstream(blocker) << "a file where a directory should be";
  const RunResult r = run("train --steps 2 --run-dir " + (blocker / "run").string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("run dir"), std::string::npos) << r.err;
  fs::remove(blocker);
}

TEST(Cli, HelpExplainsEveryTrainFlag) {
  const RunResult r = run("train --help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* flag :
       {"--data",    "--valid-data",   "--steps",      "--batch-size", "--block-size",      "--layers",  "--d-model",
        "--heads",   "--ff-size",      "--attn-span",  "--span-ramp",  "--span-loss-coeff", "--dropout", "--optimizer",
        "--lr",      "--warmup-steps", "--grad-clip",  "--seed",       "--threads",         "--device",  "--cache",
        "--run-dir", "--log-every",    "--eval-every", "--config"}) {
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
  }
}

TEST(Cli, ConfigFileSetsTheSameKeys) {
  const fs::path dir = fs::temp_directory_path() / ("adaspan_cli_config_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "run.cfg") << "layers = 1\nd-model = 32\nheads = 2\nff-size = 64\nattn-span = 64\n"
                                    "batch-size = 4\nblock-size = 32\nsteps = 3\nlog-every = 1\neval-every = 0\n";
  const RunResult r = run("train --config " + (dir / "run.cfg").string() + " --run-dir " + (dir / "run").string());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::ifstream metrics(dir / "run" / "metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(metrics, line);) ++lines;
  EXPECT_EQ(lines, 5);  // steps 1, 2, 3, the final checkpoint and the done record
  EXPECT_NE(r.out.find("layer 0:"), std::string::npos);
  EXPECT_EQ(r.out.find("layer 1:"), std::string::npos);  // layers = 1 from the file
  fs::remove_all(dir);
}

TEST(Cli, PrepareEnwik8RejectsMissingZip) {
  const RunResult r = run("prepare enwik8 --zip /nonexistent/enwik8.zip --out /tmp/adaspan_never");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("/nonexistent/enwik8.zip"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists("/tmp/adaspan_never"));
}

TEST(Cli, PrepareRejectsUnknownDatasetsMissingOutAndForeignFlags) {
  const RunResult unknown = run("prepare enwik9 --out /tmp/adaspan_never");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("supported: enwik8, builtin"), std::string::npos) << unknown.err;
  const RunResult no_out = run("prepare builtin");
  EXPECT_EQ(no_out.exit_code, 2);
  EXPECT_NE(no_out.err.find("--out is required"), std::string::npos) << no_out.err;
  const RunResult zip = run("prepare builtin --zip enwik8.zip --out /tmp/adaspan_never");
  EXPECT_EQ(zip.exit_code, 2);
  EXPECT_NE(zip.err.find("enwik8's"), std::string::npos) << zip.err;
  EXPECT_FALSE(fs::exists("/tmp/adaspan_never"));
}

}  // namespace
}  // namespace adaspan
