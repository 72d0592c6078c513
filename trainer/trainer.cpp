#include "trainer/trainer.h"

#include "cluster/device_memory.h"
#include "cluster/stop_signals.h"
#include "cluster/thread_config.h"
#include "cluster/watchdog.h"
#include "data/byte_corpus.h"
#include "data/stream_sampler.h"
#include "data/synthetic_corpus.h"
#include "model/adaptive_span_lm.h"
#include "trainer/checkpoint_session.h"
#include "trainer/fault_injection.h"
#include "trainer/gradient_reducer.h"
#include "trainer/head_rebalancer.h"
#include "trainer/group_scalars.h"
#include "trainer/metrics_log.h"
#include "trainer/optimizer.h"
#include "trainer/progress_display.h"
#include "trainer/train_step.h"
#include "trainer/zero_optimizer.h"

#include <ATen/ATen.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <cmath>
#include <filesystem>
#include <optional>
#include <set>
#include <stdexcept>

namespace adaspan::trainer {
namespace {

using Clock = std::chrono::steady_clock;
constexpr double kLn2 = 0.69314718055994530942;

void require_positive(int64_t value, const char* flag) {
  if (value <= 0) {
    throw std::invalid_argument(std::string("--") + flag + " must be positive, got " + std::to_string(value));
  }
}

void require_readable(const std::vector<std::string>& files, const char* flag) {
  for (const auto& f : files) {
    struct stat st {};
    if (stat(f.c_str(), &st) != 0) throw std::invalid_argument(std::string("--") + flag + ": no such file '" + f + "'");
    if (!S_ISREG(st.st_mode)) throw std::invalid_argument(std::string("--") + flag + ": '" + f + "' is not a file");
    if (st.st_size == 0) throw std::invalid_argument(std::string("--") + flag + ": '" + f + "' is empty (0 bytes)");
  }
}

data::ByteCorpus open_corpus(const std::vector<std::string>& files, uint64_t builtin_size, uint64_t builtin_seed) {
  if (!files.empty()) return data::ByteCorpus::open_files(files);
  return data::ByteCorpus::from_bytes(data::make_synthetic_corpus(builtin_size, builtin_seed).bytes, "built-in");
}

// [rows, M + 1] bytes -> (inputs [rows, M], targets [rows, M]) as int64 on `device`.
std::pair<at::Tensor, at::Tensor> to_tensors(const data::ByteBatch& batch, const at::Device& device) {
  at::Tensor bytes = at::from_blob(const_cast<uint8_t*>(batch.bytes.data()), {batch.rows, batch.cols}, at::kByte)
                         .to(device, at::kLong);
  return {bytes.narrow(1, 0, batch.cols - 1), bytes.narrow(1, 1, batch.cols - 1)};
}

nlohmann::json spans_json(const std::vector<std::vector<double>>& spans) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& layer : spans) out.push_back(layer);
  return out;
}

// Mean NLL (nats) of `blocks` consecutive validation blocks from the stream starts, zero cache.
double evaluate(model::AdaptiveSpanLM& model, data::StreamSampler& sampler, int64_t blocks,
                const at::Device& device) {
  at::NoGradGuard no_grad;
  model.eval();
  sampler.rewind();
  model::ModelCache cache;
  double nll_sum = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    auto [x, y] = to_tensors(sampler.next(), device);
    model::LMOutput out = model.forward(x, cache);
    nll_sum += at::nll_loss(out.log_probs.reshape({-1, out.log_probs.size(-1)}), y.reshape({-1})).item<double>();
    cache = std::move(out.next_cache);
  }
  model.train();
  return nll_sum / static_cast<double>(blocks);
}

// "cpu", "cuda", "cuda:N"; refuses CUDA when this LibTorch or machine has none.
at::Device parse_device(const std::string& name) {
  std::optional<at::Device> device;
  try {
    device.emplace(name);
  } catch (const std::exception&) {
    throw std::invalid_argument("--device '" + name + "' is not cpu, cuda or cuda:N");
  }
  if (device->is_cuda() && !at::hasCUDA()) {
    throw std::invalid_argument("--device " + name + ": this build's LibTorch has no CUDA or no GPU is visible");
  }
  if (!device->is_cpu() && !device->is_cuda()) throw std::invalid_argument("--device must be cpu or cuda");
  return *device;
}

}  // namespace

void validate(const TrainConfig& c) {
  require_positive(c.run.steps, "steps");
  require_positive(c.data.batch_size, "batch-size");
  require_positive(c.data.block_size, "block-size");
  require_positive(c.model.layers, "layers");
  require_positive(c.model.d_model, "d-model");
  require_positive(c.model.heads, "heads");
  require_positive(c.model.ff_size, "ff-size");
  require_positive(c.model.attn_span, "attn-span");
  require_positive(c.run.log_every, "log-every");
  require_positive(c.run.eval_steps, "eval-steps");
  require_positive(c.optim.grad_accum, "grad-accum");
  if (c.run.eval_every < 0) throw std::invalid_argument("--eval-every must be >= 0 (0 = never)");
  if (c.model.d_model % c.model.heads != 0) {
    throw std::invalid_argument("--d-model " + std::to_string(c.model.d_model) + " is not divisible by --heads " +
                                std::to_string(c.model.heads));
  }
  if (!(c.model.span_ramp > 0)) throw std::invalid_argument("--span-ramp must be positive");
  if (c.model.span_loss_coeff < 0) throw std::invalid_argument("--span-loss-coeff must be >= 0");
  if (c.model.span_init < 0 || c.model.span_init > 1) throw std::invalid_argument("--span-init must be in [0, 1]");
  if (c.model.dropout < 0 || c.model.dropout >= 1) throw std::invalid_argument("--dropout must be in [0, 1)");
  if (!(c.optim.lr > 0)) throw std::invalid_argument("--lr must be positive");
  if (c.optim.warmup_steps < 0) throw std::invalid_argument("--warmup-steps must be >= 0");
  if (c.optim.grad_clip < 0) throw std::invalid_argument("--grad-clip must be >= 0 (0 = off)");
  if (c.optim.optimizer != "adagrad" && c.optim.optimizer != "adam") {
    throw std::invalid_argument("--optimizer '" + c.optim.optimizer + "' is not adagrad or adam");
  }
  if (c.run.threads < 0) throw std::invalid_argument("--threads must be >= 0 (0 = all cores)");
  if (c.run.tp < 1) throw std::invalid_argument("--tp must be >= 1");
  if (c.model.heads % c.run.tp != 0) {
    throw std::invalid_argument("--heads " + std::to_string(c.model.heads) + " is not divisible by --tp " + std::to_string(c.run.tp));
  }
  if (c.model.ff_size % c.run.tp != 0) {
    throw std::invalid_argument("--ff-size " + std::to_string(c.model.ff_size) + " is not divisible by --tp " +
                                std::to_string(c.run.tp));
  }
  if (c.model.span_mode == model::SpanMode::dynamic && c.model.attention != model::AttentionKind::adaptive) {
    throw std::invalid_argument("--span-mode dynamic needs --attention adaptive");
  }
  if (c.model.attention == model::AttentionKind::sparse_fixed) {
    require_positive(c.model.sparse_stride, "sparse-stride");
    if (c.data.block_size % c.model.sparse_stride != 0) {
      throw std::invalid_argument("--block-size " + std::to_string(c.data.block_size) +
                                  " is not a multiple of --sparse-stride " + std::to_string(c.model.sparse_stride));
    }
  }
  if (c.run.rebalance_every < 0) throw std::invalid_argument("--rebalance-every must be >= 0 (0 = never)");
  if (c.run.rebalance_every > 0 && c.run.tp < 2) throw std::invalid_argument("--rebalance-every needs --tp >= 2");
  if (c.run.rebalance_every > 0 && c.model.cache != model::CacheMode::kv) {
    throw std::invalid_argument("--rebalance-every needs --cache kv");
  }
  if (!(c.run.rebalance_threshold >= 0 && c.run.rebalance_threshold < 1)) {
    throw std::invalid_argument("--rebalance-threshold must be in [0, 1)");
  }
  if (!c.model.span_init_heads.empty()) {
    if (static_cast<int64_t>(c.model.span_init_heads.size()) != c.model.heads) {
      throw std::invalid_argument("--span-init-heads has " + std::to_string(c.model.span_init_heads.size()) +
                                  " values for " + std::to_string(c.model.heads) + " heads");
    }
    for (double z : c.model.span_init_heads) {
      if (z < 0 || z > static_cast<double>(c.model.attn_span)) throw std::invalid_argument("--span-init-heads values must be in [0, --attn-span]");
    }
  }
  if (c.run.tp > 1 && c.model.cache == model::CacheMode::hidden && (c.run.checkpoint_every > 0 || !c.run.resume.empty())) {
    throw std::invalid_argument("checkpoints with --tp > 1 need --cache kv (hidden caches are sized by each rank's own heads)");
  }
  if (c.run.bucket_mb <= 0) throw std::invalid_argument("--bucket-mb must be positive");
  if (c.run.zero != 0 && c.run.zero != 1) throw std::invalid_argument("--zero must be 0 or 1");
  if (c.run.dp_backend != "auto" && c.run.dp_backend != "mpi" && c.run.dp_backend != "nccl") {
    throw std::invalid_argument("--dp-backend '" + c.run.dp_backend + "' is not auto, mpi or nccl");
  }
  parse_device(c.run.device);
  model::parse_precision(c.run.precision);
  require_readable(c.data.train_files, "data");
  require_readable(c.data.valid_files, "valid-data");
  if (c.run.checkpoint_every < 0) throw std::invalid_argument("--checkpoint-every must be >= 0 (0 = never)");
  if (c.run.keep_checkpoints < 0) throw std::invalid_argument("--keep-checkpoints must be >= 0 (0 = keep all)");
  if (!c.run.resume.empty() && c.run.resume != "auto") require_readable({c.run.resume}, "resume");
  if (c.run.step_timeout < 0) throw std::invalid_argument("--step-timeout must be >= 0 (0 = no watchdog)");
  if (c.run.max_bad_steps < 0) throw std::invalid_argument("--max-bad-steps must be >= 0");
  if (c.fault.at_step < 0) throw std::invalid_argument("--fail-at-step must be >= 0 (0 = none)");
  if (c.fault.count < 1) throw std::invalid_argument("--fail-count must be >= 1");
  static const std::set<std::string> kModes{"crash", "hang", "nan", "signal", "checkpoint"};
  if (!kModes.count(c.fault.mode)) {
    throw std::invalid_argument("--fail-mode '" + c.fault.mode + "' is not crash, hang, nan, signal or checkpoint");
  }
}

namespace {

// ADASPAN_TRACE_READS=DIR: each rank logs "stream position" of every training read to
// DIR/reads.RANK.txt (tests check that ranks read only their own streams).
void trace_reads(data::StreamSampler& sampler, int rank) {
  const char* dir = std::getenv("ADASPAN_TRACE_READS");
  if (!dir) return;
  auto out = std::make_shared<std::ofstream>(std::filesystem::path(dir) / ("reads." + std::to_string(rank) + ".txt"));
  sampler.set_read_observer([out](int64_t stream, uint64_t position) { *out << stream << ' ' << position << '\n'; });
}

}  // namespace

TrainResult train(const TrainConfig& config, bool quiet) { return train(config, DataParallel{}, quiet); }

TrainResult train(const TrainConfig& config, const DataParallel& dp, bool quiet) {
  validate(config);
  const GroupScalars group(dp.control ? dp.control : dp.group);
  const bool root = dp.world_rank == 0;
  // Scalars (metrics, agreement) go over every rank; tensor-parallel ranks of one replica hold the
  // same loss, so means over all ranks are means over the data-parallel replicas.
  const model::ProcessGroup* scalars_group = dp.control ? dp.control : dp.group;
  const int all_ranks = scalars_group ? scalars_group->size() : 1;
  cluster::configure_threads(config.run.threads, dp.ranks_on_node);
  at::manual_seed(config.run.seed);

  // Data first: a corpus error must stop the run before anything is written.
  const data::ByteCorpus train_corpus =
      open_corpus(config.data.train_files, data::kBuiltinTrainBytes, data::kBuiltinTrainSeed);
  std::optional<data::ByteCorpus> valid_corpus;
  if (!config.data.valid_files.empty() || config.data.train_files.empty()) {
    valid_corpus = open_corpus(config.data.valid_files, data::kBuiltinValidBytes, data::kBuiltinValidSeed);
  }
  // This rank owns streams [r·B/N, (r+1)·B/N) of the B global ones.
  const int64_t local_streams = config.data.batch_size / dp.size;
  const int64_t first_stream = dp.rank * local_streams;
  data::StreamSampler sampler(train_corpus, config.data.batch_size, config.data.block_size, first_stream,
                              local_streams);
  trace_reads(sampler, dp.rank);
  std::optional<data::StreamSampler> valid_sampler;
  if (valid_corpus) {
    valid_sampler.emplace(*valid_corpus, config.data.batch_size, config.data.block_size, first_stream, local_streams);
  }

  std::string run_dir_error;
  if (root) {
    std::error_code ec;
    std::filesystem::create_directories(config.run.run_dir, ec);
    if (ec) run_dir_error = "cannot create run dir '" + config.run.run_dir + "': " + ec.message();
  }
  if (!group.all_ok(run_dir_error.empty())) {
    throw std::runtime_error(root ? run_dir_error : "rank 0 could not create the run dir");
  }

  const at::Device device = parse_device(config.run.device);
  model::AdaptiveSpanLM model(config.model);
  model.shard(dp.tp);
  model.to(device);
  model.set_precision(model::parse_precision(config.run.precision));
  if (root && !quiet && device.is_cpu() && model.precision() == model::Precision::bf16) {
    // Measured on an AVX2 CPU (no bf16 instructions): 30x slower than fp32 (adaspan_bench).
    std::fprintf(stderr, "adaspan train: note: --precision bf16 on a CPU is emulated unless it has bf16 "
                         "instructions (AVX512-BF16, AMX) and can be many times slower than fp32\n");
  }
  model.train();
  std::vector<at::Tensor> params = model.parameters();
  std::unique_ptr<GradientReducer> reducer;
  if (dp.group && dp.size > 1) {
    at::NoGradGuard no_grad;
    for (auto& p : params) dp.group->broadcast(p, 0);  // one model, whatever each rank's RNG did
    reducer = std::make_unique<GradientReducer>(params, *dp.group, config.run.bucket_mb << 20, config.run.overlap,
                                                config.run.zero ? Reduction::scatter : Reduction::all_reduce);
  }
  at::manual_seed(config.run.seed + 7919 * static_cast<uint64_t>(dp.world_rank));  // dropout: a stream per rank
  // Gradient norms of tensor-parallel slices are summed over the TP group (clipping sees whole tensors).
  CompleteSquares complete_squares;
  if (dp.tp.active()) {
    std::vector<bool> sharded;
    for (const auto& p : model.named_parameters()) sharded.push_back(model::AdaptiveSpanLM::is_sharded(p.key()));
    complete_squares = [sharded, tp = dp.tp](std::vector<double>& squares) {
      at::Tensor partial = at::zeros({static_cast<int64_t>(squares.size())}, at::kDouble);
      for (size_t i = 0; i < squares.size(); ++i) {
        if (sharded[i]) partial[static_cast<int64_t>(i)] = squares[i];
      }
      tp.group->all_reduce(partial, model::ReduceOp::sum);
      for (size_t i = 0; i < squares.size(); ++i) {
        if (sharded[i]) squares[i] = partial[static_cast<int64_t>(i)].item<double>();
      }
    };
  }
  std::unique_ptr<Optimizer> optimizer;
  if (config.run.zero && reducer) {  // one rank: nothing to shard
    optimizer = make_zero_optimizer(params, *reducer,
                                    {config.optim.optimizer, config.optim.grad_clip, config.optim.adam_beta1,
                                     config.optim.adam_beta2, config.optim.adam_eps, complete_squares});
  } else if (config.optim.optimizer == "adam") {
    optimizer = make_adam(params, config.optim.grad_clip, config.optim.adam_beta1, config.optim.adam_beta2,
                          config.optim.adam_eps, complete_squares);
  } else {
    optimizer = make_adagrad(params, config.optim.grad_clip, complete_squares);
  }

  // --grad-accum K: this rank's streams in K micro-batches of equal rows, a cache each.
  const int64_t micro_batches = config.optim.grad_accum;
  if (local_streams % micro_batches != 0) {
    throw std::invalid_argument("--grad-accum " + std::to_string(micro_batches) + " does not divide the " +
                                std::to_string(local_streams) + " streams of each rank (--batch-size / ranks)");
  }
  std::vector<model::ModelCache> caches(static_cast<size_t>(micro_batches));
  double window_nll = 0;  // this rank's NLL sum over the steps since the last metrics record
  int64_t window_steps = 0;
  const LiveTraining live{model, *optimizer, sampler, caches, window_nll, window_steps, dp.world_rank, all_ranks, dp.rank};
  const bool async_checkpoints = config.run.async_checkpoint && (dp.size == 1 || dp.mpi_thread_multiple);
  if (config.run.async_checkpoint && !async_checkpoints && root && !quiet) {
    std::fprintf(stderr, "adaspan train: note: MPI lacks MPI_THREAD_MULTIPLE; checkpoints are written synchronously\n");
  }
  CheckpointSession checkpoints(config, dp.comm, group, dp.world_rank, all_ranks, root && !quiet ? stderr : nullptr,
                                async_checkpoints);
  const std::optional<Resumed> resumed = checkpoints.resume(live);
  const int64_t first_step = resumed ? resumed->step + 1 : 1;
  int64_t tokens_seen = resumed ? resumed->tokens_seen : 0;
  if (resumed && !resumed->rng_restored) {
    // Written by another number of ranks: a fresh dropout stream per rank, not a replay.
    at::manual_seed(config.run.seed + 7919 * static_cast<uint64_t>(dp.rank) + 104729 * static_cast<uint64_t>(resumed->step));
  }

  // Rank 0 logs. On resume, records past the checkpoint (a crashed attempt's) are dropped: they are redone.
  std::optional<MetricsLog> metrics;
  std::string metrics_error;
  if (root) {
    try {
      metrics.emplace((std::filesystem::path(config.run.run_dir) / "metrics.jsonl").string(),
                      resumed ? std::optional<int64_t>(resumed->step) : std::nullopt);
    } catch (const std::exception& e) {
      metrics_error = e.what();
    }
  }
  if (!group.all_ok(metrics_error.empty())) {
    throw std::runtime_error(root ? metrics_error : "rank 0 could not open metrics.jsonl");
  }
  auto log = [&](const nlohmann::json& record) {
    if (metrics) metrics->write(record);
  };
  if (resumed) {
    log({{"event", "resumed"}, {"step", resumed->step}, {"path", resumed->path}, {"ranks", dp.size},
         {"rng_restored", resumed->rng_restored}});
  }

  ProgressDisplay progress(config.run.steps, quiet || !root ? nullptr : stdout);
  if (resumed) {
    progress.message(("resumed from " + resumed->path + " at step " + std::to_string(resumed->step)).c_str());
  }
  const int64_t tokens_per_step = config.data.batch_size * config.data.block_size;  // all ranks
  TrainResult result;
  const auto start = Clock::now();
  auto window_start = start;

  cluster::Watchdog watchdog(config.run.step_timeout, dp.world_rank, kExitWatchdog, dp.abort_collectives);
  FaultInjector faults(config.fault, dp.world_rank);
  if (faults.crash_before_commit(config.fault.at_step)) checkpoints.crash_before_commit_at(config.fault.at_step);
  int64_t bad_in_a_row = 0, last_checkpoint = resumed ? resumed->step : 0;
  int64_t halved_lr_until = 0;  // after a rollback: half the LR until this step
  int stop = 0;                 // a stop signal every rank has agreed on
  // Which TP rank holds which head (canonical order); starts contiguous, changes on rebalancing.
  double attention_at_log = 0, attention_at_check = 0;  // model.attention_seconds() at the last record / check
  int64_t step_at_check = first_step - 1;
  cluster::HeadPlacement placement =
      cluster::contiguous_placement(config.model.layers, config.model.heads, std::max(1, dp.tp.size));
  const auto log_checkpoint = [&](const Saved& saved) {
    log({{"event", "checkpoint"}, {"step", saved.step}, {"path", saved.path}, {"seconds", saved.seconds},
         {"stall_seconds", saved.stall_seconds}, {"bytes", saved.bytes}});
    char line[200];
    std::snprintf(line, sizeof(line), "step %lld checkpoint %s (%.1f MB, %.2f s, training stalled %.2f s)",
                  static_cast<long long>(saved.step), std::filesystem::path(saved.path).filename().c_str(),
                  saved.bytes / 1e6, saved.seconds, saved.stall_seconds);
    progress.message(line);
  };
  const auto log_finished_checkpoints = [&] {
    while (const std::optional<Saved> saved = checkpoints.take_finished()) log_checkpoint(*saved);
  };

  for (int64_t step = first_step; step <= config.run.steps; ++step) {
    watchdog.enter("training step", step);
    faults.at_step_start(step);
    auto [x, y] = to_tensors(sampler.next(), device);
    std::vector<MicroBatch> micro;
    const std::vector<at::Tensor> xs = x.chunk(micro_batches, 0), ys = y.chunk(micro_batches, 0);
    for (int64_t k = 0; k < micro_batches; ++k) micro.push_back({xs[static_cast<size_t>(k)], ys[static_cast<size_t>(k)]});
    const double lr = warmup_lr(config.optim.lr, step, config.optim.warmup_steps) * (step <= halved_lr_until ? 0.5 : 1.0);
    // One small collective per step: skip together on a non-finite step; stop together on a signal.
    const auto agree = [&](bool finite) {
      const std::vector<double> flags =
          group.reduce({finite ? 0.0 : 1.0, static_cast<double>(cluster::stop_signal())}, model::ReduceOp::max);
      stop = static_cast<int>(flags[1]);
      return flags[0] == 0;
    };
    const StepOutput out = train_step(model, *optimizer, micro, caches, lr, reducer.get(), agree, faults.loss_factor(step));
    tokens_seen += tokens_per_step;
    if (out.applied) {
      bad_in_a_row = 0;
      window_nll += out.nll;
      ++window_steps;
    } else {
      ++result.skipped_steps;
      ++bad_in_a_row;
      log({{"event", "skipped_step"}, {"step", step}, {"reason", "non-finite loss or gradient"},
           {"in_a_row", bad_in_a_row}, {"skipped_total", result.skipped_steps}});
      progress.message(("step " + std::to_string(step) + ": non-finite loss or gradient, update skipped").c_str());
      if (bad_in_a_row > config.run.max_bad_steps) {
        watchdog.enter("rollback", step);
        const std::optional<Resumed> back = checkpoints.load_newest(live);
        if (!back) {
          throw std::runtime_error(std::to_string(bad_in_a_row) + " non-finite steps in a row at step " + std::to_string(step) +
                                   " and no checkpoint to roll back to (use --checkpoint-every)");
        }
        ++result.rollbacks;
        halved_lr_until = step + std::max<int64_t>(config.run.checkpoint_every, 100);
        log({{"event", "rollback"}, {"step", step}, {"to_step", back->step}, {"path", back->path},
             {"lr_scale", 0.5}, {"until_step", halved_lr_until}});
        progress.message(("rolled back to " + back->path + "; half the learning rate until step " +
                          std::to_string(halved_lr_until)).c_str());
        step = back->step;  // the loop's ++ continues after it
        tokens_seen = back->tokens_seen;
        last_checkpoint = back->step;
        bad_in_a_row = 0;  // the metrics window is the checkpoint's again
        window_start = Clock::now();
        continue;
      }
    }

    if (dp.tp.active() && config.run.rebalance_every > 0 && step % config.run.rebalance_every == 0) {
      watchdog.enter("head rebalancing", step);
      const std::vector<std::vector<double>> costs = head_costs(model.all_spans(), config.model);
      const cluster::HeadPlacement plan = cluster::plan_head_placement(costs, dp.tp.size);
      const double before = cluster::max_load(costs, placement, dp.tp.size);
      const double after = cluster::max_load(costs, plan, dp.tp.size);
      // Attention forward seconds per step on each rank since the last check (before the move;
      // the training records that follow show it after).
      const double attention_now = model.attention_seconds();
      const std::vector<double> attention_before =
          group.gather((attention_now - attention_at_check) / static_cast<double>(std::max<int64_t>(1, step - step_at_check)));
      attention_at_check = attention_now;
      step_at_check = step;
      if (after < before * (1.0 - config.run.rebalance_threshold)) {
        const std::vector<double> kv_before = group.gather(static_cast<double>(kv_cache_bytes(caches)));
        move_heads(model, *optimizer, caches, placement, plan);
        const std::vector<double> kv_after = group.gather(static_cast<double>(kv_cache_bytes(caches)));
        log({{"event", "rebalance"}, {"step", step}, {"max_load_before", before}, {"max_load_after", after},
             {"loads_before", cluster::rank_loads(costs, placement, dp.tp.size)},
             {"loads_after", cluster::rank_loads(costs, plan, dp.tp.size)},
             {"kv_cache_bytes_before", kv_before}, {"kv_cache_bytes_after", kv_after},
             {"attention_s_per_step_before", attention_before}, {"placement", plan}});
        char line[160];
        std::snprintf(line, sizeof(line), "step %lld: heads rebalanced, largest rank load %.0f -> %.0f keys",
                      static_cast<long long>(step), before, after);
        progress.message(line);
        placement = plan;
      }
    }

    if ((step % config.run.log_every == 0 || step == config.run.steps) && window_steps > 0) {
      watchdog.enter("metrics reduction", step);
      const double window_s = std::chrono::duration<double>(Clock::now() - window_start).count();
      const double comm_s = reducer ? reducer->take_wait_seconds() : 0.0;
      // Each rank's mean over its equal share of the streams: their mean is the global mean.
      const double nll = group.reduce(window_nll, model::ReduceOp::sum) / all_ranks;
      const double slowest = group.reduce(window_s, model::ReduceOp::max);
      const double fastest = group.reduce(window_s, model::ReduceOp::min);
      const double comm_max = group.reduce(comm_s, model::ReduceOp::max);
      const std::vector<double> peak_mb = group.gather(cluster::peak_memory_mb(config.run.device));
      const double elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();
      const double bpc = nll / static_cast<double>(window_steps) / kLn2;
      const double tokens_per_s = static_cast<double>(tokens_per_step * window_steps) / slowest;
      const double steps = static_cast<double>(window_steps);
      nlohmann::json record = {{"step", step},
           {"bpc", bpc},
           {"lr", lr},
           {"tokens_per_s", tokens_per_s},
           {"elapsed_s", elapsed_s},
           {"ranks", all_ranks},
           {"step_time_max_s", slowest / steps},
           {"step_time_min_s", fastest / steps},
           {"comm_wait_s", comm_max / steps},
           {"peak_memory_mb", peak_mb},
           {"optimizer_state_mb", group.gather(static_cast<double>(optimizer->state_bytes()) / 1e6)},
           {"kv_cache_mb", group.gather(static_cast<double>(kv_cache_bytes(caches)) / 1e6)},
           {"attention_s_per_step", group.gather((model.attention_seconds() - attention_at_log) / steps)},
           {"skipped_steps", result.skipped_steps},
           {"spans", spans_json(model.all_spans())}};
      if (config.model.span_mode == model::SpanMode::dynamic) {
        // Per-token spans of the last training block (this rank's streams), per layer and head.
        record["span_mean"] = spans_json(model.span_means());
        record["span_p99"] = spans_json(model.span_p99s());
      }
      log(record);
      progress.update(step, bpc, tokens_per_s, elapsed_s);
      result.final_train_bpc = bpc;
      attention_at_log = model.attention_seconds();
      window_nll = 0;
      window_steps = 0;
      window_start = Clock::now();
    }
    if (valid_sampler && config.run.eval_every > 0 &&
        (step % config.run.eval_every == 0 || step == config.run.steps)) {
      watchdog.enter("validation", step);
      const double attention_before_eval = model.attention_seconds();
      const double local = evaluate(model, *valid_sampler, config.run.eval_steps, device);
      const double eval_attention = model.attention_seconds() - attention_before_eval;  // not training time
      attention_at_log += eval_attention;
      attention_at_check += eval_attention;
      const double bpc = group.reduce(local, model::ReduceOp::sum) / all_ranks / kLn2;
      log({{"step", step}, {"split", "valid"}, {"bpc", bpc}});
      char line[96];
      std::snprintf(line, sizeof(line), "step %lld valid bpc %.4f", static_cast<long long>(step), bpc);
      progress.message(line);
      window_start = Clock::now();  // validation time is not training throughput
    }
    // A stop signal also writes a checkpoint, whatever --checkpoint-every says: that is its point.
    const bool scheduled = config.run.checkpoint_every > 0 &&
                           (step % config.run.checkpoint_every == 0 || step == config.run.steps);
    if (scheduled || (stop && last_checkpoint != step)) {
      watchdog.enter("checkpoint", step);
      // The last step's and a stopping run's checkpoints are synchronous: nothing may be lost.
      if (async_checkpoints && !stop && step != config.run.steps) {
        checkpoints.save_async(live, step, tokens_seen);
      } else {
        const Saved saved = checkpoints.save(live, step, tokens_seen);
        log_finished_checkpoints();
        log_checkpoint(saved);
      }
      last_checkpoint = step;
      window_start = Clock::now();
    }
    log_finished_checkpoints();
    if (stop) {
      result.preempted = true;
      result.stop_signal = stop;
      result.steps = step;
      log({{"event", "preempted"}, {"step", step}, {"signal", stop}, {"checkpoint", last_checkpoint}});
      progress.message(("stopping on signal " + std::to_string(stop) + " after step " + std::to_string(step) +
                        "; resume with --resume auto").c_str());
      break;
    }
  }
  watchdog.enter("checkpoint", config.run.steps);
  if (const std::optional<Saved> saved = checkpoints.wait()) log_checkpoint(*saved);
  log_finished_checkpoints();
  watchdog.idle();
  progress.finish();

  result.first_step = first_step;
  if (result.preempted) return result;  // no "done": the run is not finished
  result.steps = config.run.steps;
  result.param_norm = model.parameter_norm();
  result.spans = model.all_spans();
  log({{"event", "done"},
       {"step", result.steps},
       {"ranks", all_ranks},
       {"param_norm", result.param_norm},
       {"spans", spans_json(result.spans)}});
  return result;
}

}  // namespace adaspan::trainer
