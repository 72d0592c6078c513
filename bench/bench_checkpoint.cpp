// Checkpoint write and read speed against `dd` of the same number of bytes on the same disk, in
// one run, as ratios.
//
//   [mpirun -np N] adaspan_bench_checkpoint [--dir DIR] [--layers 12 --d-model 512 --ff-size 2048]
//                                            [--repeats 3] [--json FILE]
//
// The default model has ~38M parameters (12 layers, d 512, ff 2048, 8 heads, span 1024); with
// Adagrad's sums a checkpoint is ~305 MB. Write = the collective HDF5 write, flush, close, fsync
// and rename (what training waits for); read = one rank reading everything back with checksums.
// dd: `dd if=/dev/zero of=F bs=4M count=... conv=fsync` and `dd if=F of=/dev/null bs=4M`. Before
// each read the file is evicted from the page cache (posix_fadvise), so both read from the disk
// ("cold"; warm when eviction fails).
#include "checkpointing/checkpoint_file.h"
#include "checkpointing/checkpoint_store.h"
#include "cluster/communicator.h"
#include "cluster/heap_policy.h"
#include "cluster/thread_config.h"
#include "cluster/world.h"
#include "data/byte_corpus.h"
#include "data/stream_sampler.h"
#include "model/adaptive_span_lm.h"
#include "trainer/optimizer.h"
#include "trainer/training_snapshot.h"

#include <ATen/ATen.h>
#include <mpi.h>
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

namespace {

using namespace adaspan;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Writes the file's dirty pages and drops its pages from the page cache, so that the next read comes
// from the disk. Only this file: dropping every cache would also evict the program's own code.
bool evict_from_page_cache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return false;
  const bool ok = ::fdatasync(fd) == 0 && ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
  ::close(fd);
  return ok;
}

// Seconds of a shell command (dd), or -1 when it fails.
double timed_command(const std::string& command) {
  const auto start = Clock::now();
  return std::system(command.c_str()) == 0 ? seconds_since(start) : -1.0;
}

// A barrier that sleeps while it waits, so that ranks waiting for rank 0's read and dd do not take
// a core from them (MPI_Barrier polls).
void sleeping_barrier() {
  MPI_Request request;
  MPI_Ibarrier(MPI_COMM_WORLD, &request);
  for (int done = 0; MPI_Test(&request, &done, MPI_STATUS_IGNORE), !done;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// A model of the reference's enwik8-small size (12 layers, d 512, 8 heads, ff 2048), S 1024.
model::ModelConfig enwik8_small_model() {
  model::ModelConfig mc;
  mc.layers = 12;
  mc.d_model = 512;
  mc.heads = 8;
  mc.ff_size = 2048;
  mc.attn_span = 1024;
  return mc;
}

// Seconds of each repeat: adaspan's checkpoint write and read, and dd's of the same size.
struct Timings {
  std::vector<double> writes, reads, dd_writes, dd_reads;
  int64_t bytes = 0;
  bool cold = false;  // reads were from disk, not the page cache
};

// Medians as MB/s beside dd's, printed and (with json_path) written as JSON.
void report(const Timings& t, int64_t params, int ranks, int repeats, const std::string& json_path) {
  const auto& [writes, reads, dd_writes, dd_reads, bytes, cold] = t;
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double mb = static_cast<double>(bytes) / 1e6;
  const double w = mb / median(writes), rd = mb / median(reads);
  const double dw = mb / median(dd_writes), dr = mb / median(dd_reads);
  const nlohmann::json figures = {{"parameters", params},   {"file_mb", mb},         {"ranks", ranks},
                                  {"write_mb_per_s", w},    {"read_mb_per_s", rd},   {"dd_write_mb_per_s", dw},
                                  {"dd_read_mb_per_s", dr}, {"write_vs_dd", w / dw}, {"read_vs_dd", rd / dr},
                                  {"cold_reads", cold},     {"repeats", repeats}};
  std::printf("checkpoint of %.1fM parameters + Adagrad state: %.0f MB, written by %d rank(s)\n", params / 1e6, mb,
              ranks);
  std::printf("  write  %7.0f MB/s   dd %7.0f MB/s   ratio %.2f\n", w, dw, w / dw);
  std::printf("  read   %7.0f MB/s   dd %7.0f MB/s   ratio %.2f   (%s)\n", rd, dr, rd / dr,
              cold ? "file evicted from the page cache before each read" : "page cache NOT dropped: warm reads");
  if (!json_path.empty()) std::ofstream(json_path) << figures.dump(2) << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  cluster::keep_large_blocks_in_heap();
  cluster::World world(&argc, &argv);
  model::ModelConfig mc = enwik8_small_model();
  std::string dir = "bench_checkpoint.tmp", json_path;
  int repeats = 3;
  namespace po = boost::program_options;
  po::options_description options("adaspan_bench_checkpoint: checkpoint write/read MB/s vs dd\n\nOptions");
  // clang-format off: one flag per line, as --help lists them
  options.add_options()("help,h", "Show this help.")("dir", po::value(&dir)->default_value(dir),
                                                     "Directory on the disk to measure (created, then removed).")(
      "layers", po::value(&mc.layers)->default_value(mc.layers), "Model layers.")(
      "d-model", po::value(&mc.d_model)->default_value(mc.d_model), "Hidden size.")(
      "ff-size", po::value(&mc.ff_size)->default_value(mc.ff_size), "Feed-forward size.")(
      "repeats", po::value(&repeats)->default_value(repeats), "Measurements of each; the median is reported.")(
      "json", po::value(&json_path), "Also write the figures to this JSON file.");
  // clang-format on
  po::variables_map vm;
  po::store(po::parse_command_line(argc, argv, options), vm);
  po::notify(vm);
  if (vm.count("help")) {
    if (world.is_root()) std::cout << options << "\n";
    return 0;
  }
  cluster::configure_threads(0, world.local_size());
  if (world.is_root()) fs::create_directories(dir);
  MPI_Barrier(MPI_COMM_WORLD);

  at::manual_seed(1);
  model::AdaptiveSpanLM lm(mc);
  auto optimizer = trainer::make_adagrad(lm.parameters(), 0.03);
  std::vector<at::Tensor> sums;
  for (const auto& p : lm.parameters()) sums.push_back(at::rand_like(p));  // state with content, as after training
  optimizer->import_slot("sum", sums);
  const data::ByteCorpus corpus = data::ByteCorpus::from_bytes(std::string(1 << 16, 'x'), "bench");
  const int64_t streams = 8 * world.size();
  data::StreamSampler sampler(corpus, streams, 128, world.rank() * 8, 8);
  std::vector<model::ModelCache> caches(1);
  trainer::CheckpointedProgress progress;
  const trainer::LiveTraining live{lm, *optimizer, sampler, caches, progress, world.rank(), world.size()};
  const checkpointing::TrainingState state = trainer::capture_state(live, 1, 0, "{}");
  int64_t params = 0;
  for (const auto& p : lm.parameters()) params += p.numel();

  std::vector<double> writes, reads, dd_writes, dd_reads;
  int64_t bytes = 0;
  bool cold = false;
  for (int r = 0; r < repeats; ++r) {
    sleeping_barrier();
    auto start = Clock::now();
    checkpointing::write_checkpoint(
        checkpointing::temporary_path(dir, r + 1), state,
        {world.size() > 1 ? cluster::Communicator::world() : cluster::Communicator(), streams});
    std::string path;
    if (world.is_root()) path = checkpointing::commit_checkpoint(dir, r + 1, 1);
    MPI_Barrier(MPI_COMM_WORLD);
    writes.push_back(seconds_since(start));
    if (!world.is_root()) continue;
    bytes = static_cast<int64_t>(fs::file_size(path));
    cold = evict_from_page_cache(path);
    start = Clock::now();
    checkpointing::read_checkpoint(path, {0, 1, 0, 8});
    reads.push_back(seconds_since(start));

    const std::string dd_file = (fs::path(dir) / "dd.bin").string();
    const int64_t blocks = (bytes + (4 << 20) - 1) / (4 << 20);
    dd_writes.push_back(timed_command("dd if=/dev/zero of=" + dd_file + " bs=4M count=" + std::to_string(blocks) +
                                      " conv=fsync status=none"));
    evict_from_page_cache(dd_file);
    dd_reads.push_back(timed_command("dd if=" + dd_file + " of=/dev/null bs=4M status=none"));
    fs::remove(dd_file);
  }
  if (world.is_root()) {
    report({writes, reads, dd_writes, dd_reads, bytes, cold}, params, world.size(), repeats, json_path);
    fs::remove_all(dir);
  }
  return 0;
}
