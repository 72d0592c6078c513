// adaspan eval --checkpoint F --data FILE: bits per byte over a whole file, on any number of ranks.
#include "cluster/mpi_process_group.h"
#include "cluster/thread_config.h"
#include "data/byte_corpus.h"
#include "launcher/inference_commands.h"
#include "trainer/checkpoint_model.h"
#include "trainer/file_evaluation.h"
#include "trainer/group_scalars.h"

#include <ATen/ATen.h>
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>

namespace adaspan::launcher {

namespace po = boost::program_options;

int run_eval(const std::vector<std::string>& args, const cluster::World& world) {
  std::string checkpoint, focus_file, device_name = "cpu";
  std::vector<std::string> files;
  int64_t batch_size = 0, block_size = 0, attn_span = 0;
  int threads = 0;
  bool json = false;
  po::options_description options(
      "adaspan eval: bits per byte of a checkpoint's model over whole files\n"
      "(mpirun -np N adaspan eval ... splits the streams over N ranks)\n\nOptions");
  options.add_options()
      ("help,h", "Show this help and exit.")
      ("checkpoint", po::value(&checkpoint), "Checkpoint file (RUN_DIR/ckpt-STEP.h5).")
      ("data", po::value(&files)->multitoken(), "File(s) to evaluate, read as raw bytes and concatenated.")
      ("batch-size", po::value(&batch_size)->default_value(0),
       "B: the text is cut into B contiguous streams, each read start to end with its cache carried. "
       "0 = the checkpoint's training --batch-size. Must be divisible by the number of ranks.")
      ("block-size", po::value(&block_size)->default_value(0), "M: bytes per forward pass; 0 = as trained.")
      ("attn-span", po::value(&attn_span)->default_value(0),
       "S for evaluation, >= the trained S (length extrapolation, e.g. 4x or 8x with --block-size 4x/8x); "
       "key_pe is zero at the new far positions, learned spans keep their length in bytes. 0 = as trained. "
       "Not for --span-mode dynamic models.")
      ("device", po::value(&device_name)->default_value(device_name), "cpu, cuda or cuda:N.")
      ("threads", po::value(&threads)->default_value(0), "CPU threads for ATen; 0 = cores / ranks on the node.")
      ("focus", po::value(&focus_file),
       "A mask file as long as the data (one byte per data byte): the bytes where it is nonzero are also "
       "reported on their own (bpb_focus) and the rest apart (bpb_rest), e.g. the planted bytes written by "
       "bench/planted_text.py.")
      ("json", po::bool_switch(&json), "Print the result as one JSON object.");
  std::string error;
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(options).run(), vm);
    po::notify(vm);
    if (!vm.count("help") && (checkpoint.empty() || files.empty())) error = "--checkpoint and --data are required";
  } catch (const po::error& e) {
    error = e.what();
  }
  if (vm.count("help") && error.empty()) {
    if (world.is_root()) std::cout << options << "\n";
    return 0;
  }
  if (!error.empty()) {
    if (world.is_root()) std::fprintf(stderr, "adaspan eval: error: %s\n", error.c_str());
    return 2;
  }
  cluster::MpiProcessGroup group(MPI_COMM_WORLD);
  const trainer::GroupScalars scalars(world.size() > 1 ? &group : nullptr);
  try {
    cluster::configure_threads(threads, world.local_size());
    at::Device device(device_name);
    if (device.is_cuda()) device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(world.local_rank()));
    trainer::CheckpointModel loaded;
    std::optional<data::ByteCorpus> corpus, focus;
    error.clear();
    try {
      loaded = trainer::load_checkpoint_model(checkpoint, device, attn_span);
      corpus.emplace(data::ByteCorpus::open_files(files));
      if (!focus_file.empty()) {
        focus.emplace(data::ByteCorpus::open_files({focus_file}));
        if (focus->size() != corpus->size()) {
          throw std::invalid_argument("--focus " + focus_file + " has " + std::to_string(focus->size()) +
                                      " bytes, the data " + std::to_string(corpus->size()));
        }
      }
      if (batch_size == 0) batch_size = loaded.batch_size;
      if (block_size == 0) block_size = loaded.block_size;
      if (batch_size % world.size() != 0) {
        throw std::invalid_argument("--batch-size " + std::to_string(batch_size) + " is not divisible by the " +
                                    std::to_string(world.size()) + " ranks");
      }
      if (block_size <= 0) throw std::invalid_argument("--block-size must be positive");
    } catch (const std::exception& e) {
      error = e.what();
    }
    const int failing = world.size() > 1 ? world.first_failing_rank(error.empty()) : (error.empty() ? -1 : 0);
    if (failing >= 0) {
      if (world.rank() == failing) std::fprintf(stderr, "adaspan eval: error: %s\n", error.c_str());
      return 1;
    }
    trainer::FileEvalOptions o;
    o.streams = batch_size;
    o.block_size = block_size;
    o.local_streams = batch_size / world.size();
    o.first_stream = world.rank() * o.local_streams;
    o.focus = focus ? &*focus : nullptr;
    const bool show = world.is_root() && isatty(STDERR_FILENO);
    const auto start = std::chrono::steady_clock::now();
    const trainer::EvalSums local = trainer::evaluate_file(*loaded.model, *corpus, o, device, [&](int64_t done, int64_t total) {
      if (show) std::fprintf(stderr, "\reval block %lld/%lld", static_cast<long long>(done), static_cast<long long>(total));
    });
    if (show) std::fprintf(stderr, "\n");
    const double nll = scalars.reduce(local.nll_nats, model::ReduceOp::sum);
    const double predicted = scalars.reduce(static_cast<double>(local.predicted), model::ReduceOp::sum);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double bpb = nll / predicted / std::log(2.0);
    const double focus_nll = scalars.reduce(local.focus_nll_nats, model::ReduceOp::sum);
    const double focus_predicted = scalars.reduce(static_cast<double>(local.focus_predicted), model::ReduceOp::sum);
    const double bpb_focus = focus_predicted > 0 ? focus_nll / focus_predicted / std::log(2.0) : 0.0;
    const double bpb_rest = (nll - focus_nll) / std::max(1.0, predicted - focus_predicted) / std::log(2.0);
    if (world.is_root()) {
      if (json) {
        nlohmann::json out{{"checkpoint", checkpoint}, {"step", loaded.step}, {"bpb", bpb}, {"attn_span", loaded.attn_span},
                           {"bytes", corpus->size()}, {"predicted_bytes", static_cast<int64_t>(predicted)},
                           {"batch_size", batch_size}, {"block_size", block_size},
                           {"ranks", world.size()}, {"seconds", seconds}};
        if (focus) {
          out["bpb_focus"] = bpb_focus;
          out["bpb_rest"] = bpb_rest;
          out["focus_bytes"] = static_cast<int64_t>(focus_predicted);
        }
        std::cout << out.dump() << "\n";
      } else {
        std::printf("bpb %.6f over %lld predicted bytes of %s (checkpoint step %lld, %d ranks, %.1f s)\n", bpb,
                    static_cast<long long>(predicted), corpus->name().c_str(), static_cast<long long>(loaded.step),
                    world.size(), seconds);
        if (focus) {
          std::printf("  focus bytes %lld: bpb %.6f; the rest: bpb %.6f\n", static_cast<long long>(focus_predicted),
                      bpb_focus, bpb_rest);
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "adaspan eval: error on rank %d: %s\n", world.rank(), e.what());
    if (world.size() > 1) world.abort(1);
    return 1;
  }
  return 0;
}

}  // namespace adaspan::launcher
