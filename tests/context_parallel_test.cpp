// Context parallelism (--cp): a block's chunks on several ranks, each head fetching only its
// window of keys and values before the chunk. One rank is the reference: real `mpirun -np 2/4`
// runs match it to 1e-5, checkpoints move between any --cp, and the halo follows the spans.
#include "model/halo_exchange.h"
#include "tests/command_runner.h"
#include "tests/scratch_dir.h"

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
using testing::run_adaspan;

// 4 heads with planted spans of 20 to 500 bytes over S = 512: chunks of 64 (CP 4) need halos of
// one to eight hops, reaching back into the previous block.
const std::string kTrain =
    "train --layers 2 --d-model 32 --heads 4 --ff-size 64 --attn-span 512 --block-size 256 --batch-size 4"
    " --log-every 2 --eval-every 4 --eval-steps 2 --threads 1 --dropout 0";
const std::string kPlantedSpans = " --span-init-heads 20,100,300,500";

struct CpRun {
  std::map<int64_t, double> train_bpc, valid_bpc;
  double param_norm = -1;
  int64_t resumed_at = -1;
  std::vector<double> halo_mb;                        // the last record's, per rank
  std::map<int64_t, std::vector<double>> halo_mb_at;  // per step, per rank
  std::vector<std::vector<double>> spans;             // [layer][head], the done record's
};

CpRun read_run(const fs::path& dir) {
  CpRun run;
  std::ifstream in(dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const auto r = nlohmann::json::parse(line);
    if (r.contains("bpc")) (r.contains("split") ? run.valid_bpc : run.train_bpc)[r["step"]] = r["bpc"];
    if (r.contains("halo_mb_per_step")) {
      run.halo_mb = r["halo_mb_per_step"].get<std::vector<double>>();
      run.halo_mb_at[r["step"]] = run.halo_mb;
    }
    if (r.value("event", "") == "done") {
      run.param_norm = r["param_norm"];
      run.spans = r["spans"].get<std::vector<std::vector<double>>>();
    }
    if (r.value("event", "") == "resumed") run.resumed_at = r["step"];
  }
  return run;
}

// ADASPAN_CP_TEST_FLAGS: flags added to every run, for a GPU host (scripts/gpu_kernel_checks.sh:
// "--device cuda --dp-backend mpi" puts every rank on the one GPU, the halos staged through the host).
std::string host_flags() {
  const char* flags = std::getenv("ADASPAN_CP_TEST_FLAGS");
  return flags == nullptr ? "" : std::string(" ") + flags;
}

CpRun train(const std::string& name, const std::string& flags, int ranks, const std::string& base = kTrain) {
  const fs::path dir = testing::fresh_dir("cp", name, false);
  const std::string spans = flags.find("--span-init-heads") == std::string::npos ? kPlantedSpans : "";
  const auto r = run_adaspan(base + spans + " " + flags + host_flags() + " --run-dir " + dir.string(), ranks, "", 240);
  EXPECT_EQ(r.exit_code, 0) << name << "\n" << r.err;
  CpRun run = read_run(dir);
  fs::remove_all(dir);
  return run;
}

// A run resumed at step `at` on the layout it was written with continues bit for bit.
void expect_bit_exact_resume(const CpRun& resumed, const CpRun& straight, int64_t at) {
  EXPECT_EQ(resumed.resumed_at, at);
  for (const auto& [step, bpc] : straight.train_bpc) EXPECT_EQ(resumed.train_bpc.at(step), bpc) << step;
  EXPECT_EQ(resumed.param_norm, straight.param_norm);
}

// Every record of `want` in `got`, to `tolerance` relative (a resumed run may hold one more: the
// interrupted attempt's last validation).
void expect_close(const std::map<int64_t, double>& got, const std::map<int64_t, double>& want, const char* what,
                  double tolerance) {
  EXPECT_GE(got.size(), want.size()) << what;
  EXPECT_LE(got.size(), want.size() + 1) << what;
  for (const auto& [step, bpc] : want) {
    ASSERT_EQ(got.count(step), 1u) << what << " step " << step;
    EXPECT_NEAR(got.at(step), bpc, tolerance * bpc) << what << " step " << step;
  }
}

// bpc records to `tolerance` (1e-5; resumes across layouts: 1e-6), param_norm to 1e-6, spans to 1e-5.
void expect_same_training(const CpRun& got, const CpRun& want, double tolerance = 1e-5) {
  expect_close(got.train_bpc, want.train_bpc, "train bpc", tolerance);
  expect_close(got.valid_bpc, want.valid_bpc, "valid bpc", tolerance);
  EXPECT_NEAR(got.param_norm, want.param_norm, 1e-6 * want.param_norm);
  ASSERT_EQ(got.spans.size(), want.spans.size());
  for (size_t l = 0; l < want.spans.size(); ++l) {
    ASSERT_EQ(got.spans[l].size(), want.spans[l].size());
    for (size_t h = 0; h < want.spans[l].size(); ++h) {
      EXPECT_NEAR(got.spans[l][h], want.spans[l][h], 1e-5 * std::max(1.0, want.spans[l][h])) << l << "," << h;
    }
  }
}

// The slow, obvious answer: for every position before the chunk, its owner, block and row.
TEST(ContextParallel, HaloPiecesNameEveryPositionsOwnerBlockAndRow) {
  const int64_t chunk = 64, history = 3;
  for (int chunks : {1, 2, 4}) {
    for (int receiver = 0; receiver < chunks; ++receiver) {
      for (int64_t length : {0, 1, 63, 64, 65, 200, 512}) {
        std::vector<std::tuple<int, int64_t, int64_t>> expected;  // (owner, block, source row) per halo row
        for (int64_t p = receiver * chunk - length; p < receiver * chunk; ++p) {
          const int64_t g = p >= 0 ? p / chunk : -((-p + chunk - 1) / chunk);
          const int64_t block = g >= 0 ? g / chunks : -((-g + chunks - 1) / chunks);
          const int owner = static_cast<int>(g - block * chunks);
          const int64_t offset = p - g * chunk;
          if (block < -history) continue;
          expected.emplace_back(owner, block, block == 0 ? offset : (history + block) * chunk + offset);
        }
        std::vector<std::tuple<int, int64_t, int64_t>> listed;
        int64_t next_row = length - static_cast<int64_t>(expected.size());
        for (const auto& piece : model::halo_pieces(receiver, chunks, chunk, length, history)) {
          EXPECT_EQ(piece.halo_row, next_row);
          next_row += piece.rows;
          for (int64_t r = 0; r < piece.rows; ++r) listed.emplace_back(piece.owner, piece.block, piece.source_row + r);
        }
        EXPECT_EQ(listed, expected) << "receiver " << receiver << " of " << chunks << ", length " << length;
      }
    }
  }
}

TEST(ContextParallel, TrainingOnTwoAndFourChunksMatchesOneRank) {
  const CpRun one = train("one", "--steps 8", 0);
  const CpRun two = train("two", "--steps 8 --cp 2", 2);
  const CpRun four = train("four", "--steps 8 --cp 4", 4);
  expect_same_training(two, one);
  expect_same_training(four, one);
  ASSERT_EQ(four.halo_mb.size(), 4u);
  for (double mb : four.halo_mb) EXPECT_GT(mb, 0);
}

// Spans shorter than a chunk (one hop, part of the previous chunk) and sparse-fixed windows (halos
// of S) too.
TEST(ContextParallel, ShortSpansAndSparseFixedMatchOneRank) {
  expect_same_training(train("short2", "--steps 6 --cp 2 --span-init-heads 8,16,24,30", 2),
                       train("short1", "--steps 6 --span-init-heads 8,16,24,30", 0));
  const CpRun sparse1 = train("sparse1", "--steps 6 --attention sparse-fixed", 0);
  expect_same_training(train("sparse2", "--steps 6 --cp 2 --attention sparse-fixed", 2), sparse1);
  expect_same_training(train("sparse4", "--steps 6 --cp 4 --attention sparse-fixed", 4), sparse1);
}

TEST(ContextParallel, DynamicSpansFullAttentionAndTensorParallelMatchOneRank) {
  const CpRun dyn1 = train("dyn1", "--steps 6 --span-mode dynamic", 0);
  expect_same_training(train("dyn2", "--steps 6 --span-mode dynamic --cp 2", 2), dyn1);
  expect_same_training(train("dyn4", "--steps 6 --span-mode dynamic --cp 4", 4), dyn1);
  const CpRun full1 = train("full1", "--steps 6 --attention full", 0);
  expect_same_training(train("full2", "--steps 6 --attention full --cp 2", 2), full1);
  expect_same_training(train("full4", "--steps 6 --attention full --cp 4", 4), full1);
  expect_same_training(train("tp2cp2", "--steps 6 --tp 2 --cp 2", 4), train("tp1cp1", "--steps 6", 0));
}

// The normalizers: entmax15 keeps only keys with weight, so halos trimmed to the spans' reach are
// exact; ASEntmax's scale counts the keys present, so its halos are whole windows. Both == one rank.
TEST(ContextParallel, EntmaxAndAsentmaxMatchOneRank) {
  for (const std::string normalizer : {"entmax15", "asentmax"}) {
    const std::string flags = "--steps 6 --normalizer " + normalizer;
    expect_same_training(train(normalizer + "2", flags + " --cp 2", 2), train(normalizer + "1", flags, 0));
  }
}

// DP 2 x CP 2: gradients averaged over the four ranks, ZeRO-1 sharding the optimizer state over
// them, two micro-batches per step, heads rebalanced under TP 2 x CP 2.
TEST(ContextParallel, DataParallelZeroGradAccumAndRebalancingMatchOneRank) {
  const CpRun one = train("accum1", "--steps 6 --grad-accum 2", 0);
  expect_same_training(train("dp2cp2", "--steps 6 --cp 2 --zero 1 --grad-accum 2", 4), one);
  expect_same_training(train("rebalanced", "--steps 6 --tp 2 --cp 2 --rebalance-every 2 --grad-accum 2", 4), one);
}

// Checkpoints hold the logical cache: written at --cp 2 and resumed on one rank, written on one
// rank and resumed at --cp 4, the run goes on as if never interrupted.
// bf16 autocast under context parallelism: the chunks' projections and feed-forward in bf16 (a
// bf16 product of m rows rounds unlike one of M), the attention and the halos in fp32: within bf16
// rounding of one rank's run (seen: 2e-5 in bpc, 8e-4 in spans after 8 steps).
TEST(ContextParallel, Bf16MatchesOneRankWithinRounding) {
  const CpRun one = train("bf16_one", "--steps 8 --precision bf16", 1);
  const CpRun two = train("bf16_cp2", "--steps 8 --precision bf16 --cp 2", 2);
  ASSERT_EQ(two.train_bpc.size(), one.train_bpc.size());
  for (const auto& [step, bpc] : one.train_bpc) EXPECT_NEAR(two.train_bpc.at(step), bpc, 1e-4 * bpc) << step;
  ASSERT_EQ(two.spans.size(), one.spans.size());
  for (size_t l = 0; l < one.spans.size(); ++l) {
    for (size_t h = 0; h < one.spans[l].size(); ++h)
      EXPECT_NEAR(two.spans[l][h], one.spans[l][h], 1e-2 * one.spans[l][h]);
  }
  const CpRun fp32 = train("fp32_cp2", "--steps 8 --cp 2", 2);
  EXPECT_NE(fp32.train_bpc.begin()->second, two.train_bpc.begin()->second) << "bf16 changed nothing";
}

// A rank that stops calling collectives in the middle of a CP step leaves the other waiting for its
// halo: that rank's watchdog aborts the job (exit 86), `launch` restarts it from the checkpoint,
// and the run ends as one that never stopped.
TEST(ContextParallel, ARankStoppedInTheHaloExchangeIsCaughtByTheWatchdogAndResumed) {
  const CpRun straight = train("watchdog_straight", "--steps 8 --cp 2", 2);
  const fs::path dir = testing::fresh_dir("cp", "watchdog", false);
  const std::string train = std::string(ADASPAN_MPIEXEC) + " --allow-run-as-root --oversubscribe -np 2 " +
                            ADASPAN_BINARY + " " + kTrain + kPlantedSpans +
                            " --cp 2 --steps 8 --checkpoint-every 4 --step-timeout 4 --fail-at-step 6 --fail-rank 1"
                            " --fail-mode collective --run-dir " +
                            dir.string();
  const auto r = run_adaspan("launch --backoff 0 --max-restarts 1 -- " + train, 0, "", 300);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("rank 1 stops calling collectives at step 6"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("adaspan: rank 0: training step at step 6 made no progress"), std::string::npos) << r.err;
  std::ifstream attempts(dir / "attempts.jsonl");
  std::string first;
  std::getline(attempts, first);
  EXPECT_EQ(nlohmann::json::parse(first)["exit_code"], 86) << first;
  expect_bit_exact_resume(read_run(dir), straight, 4);
  fs::remove_all(dir);
}

// Each rank reads only its chunk of every block (and the byte after it, the last target): rank c
// of CP 2 reads positions [p + c·m, p + (c + 1)·m] of each of its streams, never the whole block.
TEST(ContextParallel, EachRankReadsOnlyItsChunk) {
  const fs::path dir = testing::fresh_dir("cp", "reads", false), trace = testing::fresh_dir("cp", "trace");
  const int64_t steps = 3, block = 256, chunk = 128, streams = 4;
  const auto r = run_adaspan(kTrain + kPlantedSpans + " --cp 2 --steps 3 --run-dir " + dir.string(), 2,
                             "ADASPAN_TRACE_READS=" + trace.string(), 240);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const uint64_t corpus = 4u << 20;  // the built-in corpus
  for (int rank = 0; rank < 2; ++rank) {
    std::ifstream in(trace / ("reads." + std::to_string(rank) + ".txt"));
    std::map<int64_t, int64_t> reads;
    int64_t stream, bytes;
    uint64_t position;
    while (in >> stream >> position >> bytes) {
      const int64_t step = reads[stream]++;
      EXPECT_EQ(position, (corpus * static_cast<uint64_t>(stream) / streams + step * block + rank * chunk) % corpus)
          << "rank " << rank << " stream " << stream << " step " << step;
      EXPECT_EQ(bytes, chunk + 1) << "rank " << rank;
    }
    EXPECT_EQ(reads.size(), static_cast<size_t>(streams)) << "rank " << rank;
    for (const auto& [s, n] : reads) EXPECT_EQ(n, steps) << "rank " << rank << " stream " << s;
  }
  fs::remove_all(dir);
  fs::remove_all(trace);
}

TEST(ContextParallel, CheckpointsResumeOnAnyNumberOfChunks) {
  const CpRun straight = train("straight", "--steps 12", 0);
  for (const auto& [first, second] : {std::pair{2, 1}, std::pair{1, 4}}) {
    const fs::path dir = testing::fresh_dir("cp", "resume_" + std::to_string(first) + "_" + std::to_string(second));
    const auto flags = [](int cp) { return cp > 1 ? " --cp " + std::to_string(cp) : std::string(); };
    const auto a = run_adaspan(kTrain + kPlantedSpans + " --steps 6 --run-dir " + dir.string() + flags(first),
                               first > 1 ? first : 0);
    ASSERT_EQ(a.exit_code, 0) << a.err;
    const auto b =
        run_adaspan(kTrain + kPlantedSpans + " --steps 12 --resume auto --run-dir " + dir.string() + flags(second),
                    second > 1 ? second : 0);
    ASSERT_EQ(b.exit_code, 0) << b.err;
    const CpRun resumed = read_run(dir);
    EXPECT_EQ(resumed.resumed_at, 6) << "cp " << first << " -> " << second;
    expect_same_training(resumed, straight, 1e-6);
    fs::remove_all(dir);
  }
}

// The halo follows the learned spans: with chunks of 256, heads looking back 20-40 bytes (halos of
// 53-73 keys) exchange a fraction of what heads looking back the whole S = 512 do.
TEST(ContextParallel, HaloTrafficFollowsTheSpans) {
  std::string long_blocks = kTrain;
  long_blocks.replace(long_blocks.find("--block-size 256"), 16, "--block-size 1024");
  const CpRun short_spans = train("short", "--steps 4 --cp 4 --span-init-heads 20,20,40,40", 4, long_blocks);
  const CpRun whole_span = train("whole", "--steps 4 --cp 4 --attention full", 4, long_blocks);
  ASSERT_EQ(short_spans.halo_mb.size(), 4u);
  ASSERT_EQ(whole_span.halo_mb.size(), 4u);
  double short_total = 0, whole_total = 0;
  for (int r = 0; r < 4; ++r) {
    short_total += short_spans.halo_mb[static_cast<size_t>(r)];
    whole_total += whole_span.halo_mb[static_cast<size_t>(r)];
  }
  EXPECT_GT(short_total, 0);
  EXPECT_LT(short_total * 4, whole_total) << short_total << " MB vs " << whole_total << " MB";
}

// eval --cp: the same bits per byte as one rank, on 4 chunks and on 2 chunks x 2 stream groups.
TEST(ContextParallel, EvalOnChunksMatchesOneRank) {
  const fs::path dir = testing::fresh_dir("cp", "eval");
  ASSERT_EQ(run_adaspan(kTrain + kPlantedSpans + " --steps 4 --run-dir " + dir.string()).exit_code, 0);
  const fs::path text = dir / "text.txt";
  {
    std::ofstream out(text);
    for (int i = 0; i < 300; ++i) out << "line " << i << ": the halo of a chunk follows each head's span.\n";
  }
  const std::string eval = "eval --json --checkpoint " + (dir / "ckpt-4.h5").string() + " --data " + text.string();
  const auto bpb = [](const testing::CommandResult& r) {
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? nlohmann::json::parse(r.out)["bpb"].get<double>() : -1.0;
  };
  const double one = bpb(run_adaspan(eval));
  EXPECT_NEAR(bpb(run_adaspan(eval + " --cp 4", 4)), one, 1e-6 * one);
  EXPECT_NEAR(bpb(run_adaspan(eval + " --cp 2 --block-size 128", 4)), one, 1e-6 * one);
  fs::remove_all(dir);
}

// A scheduler's signal on one chunk's rank: every rank checkpoints (in the background, with
// --async-checkpoint, until the signal makes it synchronous) and exits 75; the resumed run, on
// another --cp, ends as the uninterrupted one-rank run.
TEST(ContextParallel, PreemptedWithAsyncCheckpointsAndResumedOnAnotherCp) {
  const CpRun straight = train("uninterrupted", "--steps 10", 0);
  const fs::path dir = testing::fresh_dir("cp", "preempted");
  const std::string run = kTrain + kPlantedSpans + " --run-dir " + dir.string() + " --steps 10";
  const auto stopped = run_adaspan(
      run + " --cp 2 --async-checkpoint --checkpoint-every 2 --fail-at-step 5 --fail-rank 1 --fail-mode signal", 2);
  ASSERT_EQ(stopped.exit_code, 75) << stopped.err;
  ASSERT_TRUE(fs::exists(dir / "ckpt-5.h5"));
  const auto resumed = run_adaspan(run + " --cp 4 --resume auto", 4, "ADASPAN_ATTEMPT=2");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const CpRun after = read_run(dir);
  EXPECT_EQ(after.resumed_at, 5);
  expect_same_training(after, straight);
  fs::remove_all(dir);
}

// Resumed on the same layout, the run is the uninterrupted one bit for bit.
TEST(ContextParallel, SameLayoutResumeIsBitExact) {
  const CpRun straight = train("bitexact_straight", "--steps 8 --cp 2", 2);
  const fs::path dir = testing::fresh_dir("cp", "bitexact");
  const std::string run = kTrain + kPlantedSpans + " --cp 2" + host_flags() + " --run-dir " + dir.string();
  ASSERT_EQ(run_adaspan(run + " --steps 4", 2).exit_code, 0);
  ASSERT_EQ(run_adaspan(run + " --steps 8 --resume auto", 2).exit_code, 0);
  expect_bit_exact_resume(read_run(dir), straight, 4);
  fs::remove_all(dir);
}

// What the ranks send per step is what the spans ask for: for every layer, head and chunk, the
// rows of its halo that other ranks own (keys and values forward), plus the rows of current
// chunks among them (their gradients back), counted position by position from the spans.
TEST(ContextParallel, BytesSentEqualTheHalosTheSpansNeed) {
  // Spans 10.5, 70.5, 200.5, 400.5 (+ ramp 32): keys up to distance floor(z + R) can get weight,
  // 43, 103, 233, 433 of them (the windows, rounded up to 64 keys, are 64, 128, 256, 448: the
  // halo leaves out that rounding); a tiny learning rate keeps them there.
  std::string every_step = kTrain;
  every_step.replace(every_step.find("--log-every 2"), 13, "--log-every 1");
  const CpRun run =
      train("traffic", "--steps 4 --cp 4 --lr 1e-6 --span-init-heads 10.5,70.5,200.5,400.5", 4, every_step);
  const int64_t chunks = 4, chunk = 64, layers = 2, streams = 4, head_dim = 8;
  double rows = 0;
  for (int64_t window : {43, 103, 233, 433}) {
    for (int64_t c = 0; c < chunks; ++c) {
      for (int64_t p = c * chunk - window; p < c * chunk; ++p) {
        const int64_t g = p >= 0 ? p / chunk : -((-p + chunk - 1) / chunk);
        const int64_t owner = ((g % chunks) + chunks) % chunks;
        if (owner != c) rows += 1;  // keys and values sent forward
        if (p >= 0) rows += 1;      // their gradients sent back (current block only)
      }
    }
  }
  const double expected_mb = rows * layers * 2 * streams * head_dim * sizeof(float) / 1e6;
  ASSERT_EQ(run.halo_mb_at.count(4), 1u);  // step 4: the history of earlier blocks is full
  double sent = 0;
  for (double mb : run.halo_mb_at.at(4)) sent += mb;
  EXPECT_NEAR(sent, expected_mb, 1e-9 * expected_mb);
}

}  // namespace
}  // namespace adaspan
