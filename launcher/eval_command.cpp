// adaspan eval --checkpoint F --data FILE: bits per byte over a whole file, on any number of ranks.
#include "cluster/grid.h"
#include "cluster/mpi_process_group.h"
#include "cluster/thread_config.h"
#include "data/byte_corpus.h"
#include "launcher/command_line.h"
#include "launcher/inference_commands.h"
#include "trainer/checkpoint_model.h"
#include "trainer/device_choice.h"
#include "trainer/file_evaluation.h"
#include "trainer/group_scalars.h"

#include <ATen/ATen.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>

namespace adaspan::launcher {

namespace {

struct EvalConfig {
  std::string checkpoint, focus, log_probs, device = "cpu";
  std::vector<std::string> files;
  int64_t batch_size = 0, block_size = 0, attn_span = 0;
  int threads = 0, cp = 1;
  bool json = false;
};

const trainer::OptionTable<EvalConfig>& eval_options() {
  using trainer::value;
  static const trainer::OptionTable<EvalConfig> table = {
      value<EvalConfig>("checkpoint", FIELD(checkpoint), "Checkpoint file (RUN_DIR/ckpt-STEP.h5).")
          .check([](const EvalConfig& c) {
            if (c.checkpoint.empty() || c.files.empty())
              throw std::invalid_argument("--checkpoint and --data are required");
          }),
      value<EvalConfig>("data", FIELD(files), "File(s) to evaluate, read as raw bytes and concatenated."),
      value<EvalConfig>("batch-size", FIELD(batch_size),
                        "B: the text is cut into B contiguous streams, each read start to end with its cache carried. "
                        "0 = the checkpoint's training --batch-size. Must be divisible by the number of ranks.")
          .at_least(0),
      value<EvalConfig>("block-size", FIELD(block_size), "M: bytes per forward pass; 0 = as trained.").at_least(0),
      value<EvalConfig>("attn-span", FIELD(attn_span),
                        "S for evaluation, >= the trained S (length extrapolation, e.g. 4x or 8x with --block-size "
                        "4x/8x); key_pe is zero at the new far positions, learned spans keep their length in bytes. "
                        "0 = as trained. Not for --span-mode dynamic models.")
          .at_least(0),
      value<EvalConfig>("device", FIELD(device), "cpu, cuda or cuda:N.").check([](const EvalConfig& c) {
        trainer::require_device(c.device);
      }),
      value<EvalConfig>("cp", FIELD(cp),
                        "Context-parallel ranks: each block is cut into cp chunks, one per rank, each fetching only "
                        "the keys and values its heads' windows reach (as train --cp). The streams are split over "
                        "the ranks / cp groups. Needs a --cache kv model and chunks of a multiple of 64.")
          .at_least(1),
      value<EvalConfig>("threads", FIELD(threads), "CPU threads for ATen; 0 = cores / ranks on the node.").at_least(0),
      value<EvalConfig>("logprobs", FIELD(log_probs),
                        "Also write the natural log-probability of every data byte the model predicts to this file: "
                        "float32, little-endian, one per data byte in data order, NaN for the first byte of each "
                        "stream (nothing predicts it). One rank only."),
      value<EvalConfig>("focus", FIELD(focus),
                        "A mask file as long as the data (one byte per data byte): the bytes where it is nonzero are "
                        "also reported on their own (bpb_focus) and the rest apart (bpb_rest), e.g. the planted bytes "
                        "written by bench/planted_text.py."),
      value<EvalConfig>("json", FIELD(json), "Print the result as one JSON object."),
  };
  return table;
}

// What an evaluation reads: the model, the text, the optional focus mask, and the layout.
struct EvalInputs {
  trainer::CheckpointModel loaded;
  std::optional<data::ByteCorpus> corpus, focus;
  int64_t batch_size = 0, block_size = 0;
  std::string log_probs_path;  // --logprobs
};

EvalInputs open_inputs(const EvalConfig& c, const at::Device& device, int ranks) {
  EvalInputs in;
  if (!c.log_probs.empty() && ranks > 1) {
    throw std::invalid_argument("--logprobs runs on one rank (" + std::to_string(ranks) + " were started)");
  }
  in.log_probs_path = c.log_probs;
  in.loaded = trainer::load_checkpoint_model(c.checkpoint, device, c.attn_span);
  in.corpus.emplace(data::ByteCorpus::open_files(c.files));
  if (!c.focus.empty()) {
    in.focus.emplace(data::ByteCorpus::open_files({c.focus}));
    if (in.focus->size() != in.corpus->size()) {
      throw std::invalid_argument("--focus " + c.focus + " has " + std::to_string(in.focus->size()) +
                                  " bytes, the data " + std::to_string(in.corpus->size()));
    }
  }
  in.batch_size = c.batch_size > 0 ? c.batch_size : in.loaded.batch_size;
  in.block_size = c.block_size > 0 ? c.block_size : in.loaded.block_size;
  if (ranks % c.cp != 0) {
    throw std::invalid_argument("world size " + std::to_string(ranks) + " is not divisible by --cp " +
                                std::to_string(c.cp));
  }
  const int stream_groups = ranks / c.cp;
  if (in.batch_size % stream_groups != 0) {
    throw std::invalid_argument("--batch-size " + std::to_string(in.batch_size) + " is not divisible by the " +
                                std::to_string(stream_groups) + " ranks" +
                                (c.cp > 1 ? " / --cp " + std::to_string(c.cp) : std::string()));
  }
  if (c.cp > 1 && in.loaded.model->config().cache != model::CacheMode::kv) {
    throw std::invalid_argument("--cp > 1 needs a model trained with --cache kv");
  }
  if (c.cp > 1 && (in.block_size % c.cp != 0 || (in.block_size / c.cp) % 64 != 0)) {
    throw std::invalid_argument("--cp " + std::to_string(c.cp) + " needs a --block-size (" +
                                std::to_string(in.block_size) + ") cut into chunks of a multiple of 64");
  }
  return in;
}

// Raw float32 (this machine's byte order: little-endian on x86 and ARM), written whole or not at all.
void write_log_probs(const std::string& path, const std::vector<float>& log_probs) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(log_probs.data()),
              static_cast<std::streamsize>(log_probs.size() * sizeof(float)));
    if (!out.good()) throw std::runtime_error("cannot write --logprobs '" + path + "'");
  }
  std::filesystem::rename(tmp, path);
}

// Bits per byte over all ranks: everything, the focus bytes, the rest.
struct EvalResult {
  double bpb = 0, bpb_focus = 0, bpb_rest = 0, predicted = 0, focus_predicted = 0, seconds = 0;
};

// cp: this rank's context-parallel group (size 1: none); the streams go to the world / cp groups.
EvalResult evaluate(const EvalInputs& in, const at::Device& device, const cluster::World& world,
                    const trainer::GroupScalars& scalars, const model::ContextParallel& cp) {
  trainer::FileEvalOptions o;
  o.streams = in.batch_size;
  o.block_size = in.block_size;
  o.local_streams = in.batch_size / (world.size() / cp.size);
  o.first_stream = (world.rank() / cp.size) * o.local_streams;
  o.cp = cp;
  o.focus = in.focus ? &*in.focus : nullptr;
  std::vector<float> log_probs;
  if (!in.log_probs_path.empty()) {
    log_probs.assign(in.corpus->size(), std::numeric_limits<float>::quiet_NaN());
    o.log_probs = &log_probs;
  }
  const bool show = world.is_root() && isatty(STDERR_FILENO);
  const auto start = std::chrono::steady_clock::now();
  const trainer::EvalSums local =
      trainer::evaluate_file(*in.loaded.model, *in.corpus, o, device, [&](int64_t done, int64_t total) {
        if (show)
          std::fprintf(stderr, "\reval block %lld/%lld", static_cast<long long>(done), static_cast<long long>(total));
      });
  if (show) std::fprintf(stderr, "\n");
  if (!in.log_probs_path.empty()) write_log_probs(in.log_probs_path, log_probs);
  EvalResult r;
  const double nll = scalars.reduce(local.nll_nats, model::ReduceOp::sum);
  r.predicted = scalars.reduce(static_cast<double>(local.predicted), model::ReduceOp::sum);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.bpb = nll / r.predicted / std::log(2.0);
  const double focus_nll = scalars.reduce(local.focus_nll_nats, model::ReduceOp::sum);
  r.focus_predicted = scalars.reduce(static_cast<double>(local.focus_predicted), model::ReduceOp::sum);
  r.bpb_focus = r.focus_predicted > 0 ? focus_nll / r.focus_predicted / std::log(2.0) : 0.0;
  r.bpb_rest = (nll - focus_nll) / std::max(1.0, r.predicted - r.focus_predicted) / std::log(2.0);
  return r;
}

void print_result(const EvalConfig& c, const EvalInputs& in, const EvalResult& r, int ranks) {
  if (c.json) {
    nlohmann::json out{{"checkpoint", c.checkpoint},
                       {"step", in.loaded.step},
                       {"bpb", r.bpb},
                       {"attn_span", in.loaded.attn_span},
                       {"bytes", in.corpus->size()},
                       {"predicted_bytes", static_cast<int64_t>(r.predicted)},
                       {"batch_size", in.batch_size},
                       {"block_size", in.block_size},
                       {"ranks", ranks},
                       {"seconds", r.seconds}};
    if (in.focus) {
      out["bpb_focus"] = r.bpb_focus;
      out["bpb_rest"] = r.bpb_rest;
      out["focus_bytes"] = static_cast<int64_t>(r.focus_predicted);
    }
    std::cout << out.dump() << "\n";
    return;
  }
  std::printf("bpb %.6f over %lld predicted bytes of %s (checkpoint step %lld, %d ranks, %.1f s)\n", r.bpb,
              static_cast<long long>(r.predicted), in.corpus->name().c_str(), static_cast<long long>(in.loaded.step),
              ranks, r.seconds);
  if (in.focus) {
    std::printf("  focus bytes %lld: bpb %.6f; the rest: bpb %.6f\n", static_cast<long long>(r.focus_predicted),
                r.bpb_focus, r.bpb_rest);
  }
}

}  // namespace

int run_eval(const std::vector<std::string>& args, const cluster::World& world) {
  const CommandLine line{"eval",
                         "adaspan eval: bits per byte of a checkpoint's model over whole files\n"
                         "(mpirun -np N adaspan eval ... splits the streams over N ranks)"};
  ParsedCommand<EvalConfig> parsed = parse_command(line, eval_options(), args);
  if (parsed.help || !parsed.error.empty()) {  // the same on every rank: rank 0 prints
    int exit_code = parsed.help ? 0 : 2;
    if (world.is_root()) exit_on_help_or_error(line, parsed, exit_code);
    return exit_code;
  }
  const EvalConfig& c = parsed.config;
  cluster::MpiProcessGroup group(cluster::Communicator::world());
  const trainer::GroupScalars scalars(world.size() > 1 ? &group : nullptr);
  try {
    cluster::configure_threads(c.threads, world.local_size());
    at::Device device(c.device);
    if (device.is_cuda()) device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(world.local_rank()));
    std::optional<EvalInputs> in;
    std::string error;
    try {
      in.emplace(open_inputs(c, device, world.size()));
    } catch (const std::exception& e) {
      error = e.what();
    }
    const int failing = world.size() > 1 ? world.first_failing_rank(error.empty()) : (error.empty() ? -1 : 0);
    if (failing >= 0) {
      if (world.rank() == failing) std::fprintf(stderr, "adaspan eval: error: %s\n", error.c_str());
      return 1;
    }
    // Context-parallel groups of consecutive ranks (cluster/grid.h with TP 1).
    std::optional<cluster::Grid> grid;
    model::ContextParallel cp;
    if (c.cp > 1) {
      grid.emplace(cluster::Communicator::world(), 1, c.cp);
      cp.group = &grid->cp_group();
      cp.rank = grid->cp_rank();
      cp.size = c.cp;
      in->loaded.model->set_context_parallel(cp);
    }
    const EvalResult result = evaluate(*in, device, world, scalars, cp);
    if (world.is_root()) print_result(c, *in, result, world.size());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "adaspan eval: error on rank %d: %s\n", world.rank(), e.what());
    if (world.size() > 1) world.abort(1);
    return 1;
  }
  return 0;
}

}  // namespace adaspan::launcher
