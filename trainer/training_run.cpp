#include "trainer/training_run.h"

#include "checkpointing/run_directory.h"
#include "cluster/device_memory.h"
#include "cluster/stop_signals.h"
#include "cluster/thread_config.h"
#include "data/corpus_identity.h"
#include "data/synthetic_corpus.h"
#include "model/mixed_precision.h"
#include "trainer/context_caches.h"
#include "trainer/head_rebalancer.h"
#include "trainer/train_step.h"
#include "trainer/zero_optimizer.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>

namespace adaspan::trainer {
namespace {

constexpr double kLn2 = 0.69314718055994530942;

data::ByteCorpus open_corpus(const std::vector<std::string>& files, uint64_t builtin_size, uint64_t builtin_seed) {
  if (!files.empty()) return data::ByteCorpus::open_files(files);
  return data::ByteCorpus::from_bytes(data::make_synthetic_corpus(builtin_size, builtin_seed).bytes, "built-in");
}

// [rows, m + 1] bytes -> (inputs [rows, m], targets [rows, m]) as int64 on `device`: the block, or
// under context parallelism this rank's chunk of it (the sampler reads only that).
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
double evaluate(model::AdaptiveSpanLM& model, data::StreamSampler& sampler, int64_t blocks, const at::Device& device) {
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

// ADASPAN_TRACE_READS=DIR: each rank logs "stream position bytes" of every training read to
// DIR/reads.RANK.txt (tests check that ranks read only their own streams and chunks).
void trace_reads(data::StreamSampler& sampler, int rank) {
  const char* dir = std::getenv("ADASPAN_TRACE_READS");
  if (!dir) return;
  auto out = std::make_shared<std::ofstream>(std::filesystem::path(dir) / ("reads." + std::to_string(rank) + ".txt"));
  sampler.set_read_observer([out](int64_t stream, uint64_t position, int64_t bytes) {
    *out << stream << ' ' << position << ' ' << bytes << '\n';
  });
}

// Gradient norms of tensor-parallel slices summed over the TP group, so clipping sees whole tensors.
CompleteSquares tp_complete_squares(model::AdaptiveSpanLM& model, const model::TensorParallel& tp) {
  if (!tp.active()) return {};
  std::vector<bool> sharded;
  for (const auto& p : model.named_parameters()) sharded.push_back(model::AdaptiveSpanLM::is_sharded(p.key()));
  return [sharded, tp](std::vector<double>& squares) {
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

model::ProcessGroup* scalars_group(const Parallelism& p) { return p.control ? p.control : p.gradients; }

// 16 hex digits from the system's entropy: a run's name in its checkpoints and records.
std::string new_run_id() {
  std::random_device entropy;
  const uint64_t id = (static_cast<uint64_t>(entropy()) << 32) ^ entropy();
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(id));
  return text;
}

}  // namespace

TrainingRun::TrainingRun(const TrainConfig& config, const Parallelism& parallelism, bool quiet)
    : config_(config),
      parallelism_(parallelism),
      quiet_(quiet),
      root_(parallelism.world_rank == 0),
      group_(scalars_group(parallelism)),
      // Tensor-parallel ranks of one replica hold the same loss, so means over all ranks are
      // means over the data-parallel replicas.
      all_ranks_(scalars_group(parallelism) ? scalars_group(parallelism)->size() : 1),
      device_(config.run.device),
      tokens_per_step_(config.data.batch_size * config.data.block_size),
      progress_(config.run.steps, quiet || parallelism.world_rank != 0 ? nullptr : stdout),
      watchdog_(config.run.step_timeout, parallelism.world_rank, kExitWatchdog, parallelism.abort_collectives),
      faults_(config.fault, parallelism.world_rank, [this] { watchdog_.idle(); }) {
  cluster::configure_threads(config.run.threads, parallelism.ranks_on_node);
  at::manual_seed(config.run.seed);
  open_data();
  build_model();
  build_optimizer();
  // A checkpoint named by path is read before the run dir is made: one that does not fit leaves
  // nothing behind. --resume auto reads the run dir, so it waits for the lock.
  const bool resume_from_path = !config_.run.resume.empty() && config_.run.resume != "auto";
  if (resume_from_path) open_checkpoints();
  create_run_dir();
  if (!resume_from_path) open_checkpoints();
  open_metrics();
}

void TrainingRun::open_data() {
  train_corpus_.emplace(open_corpus(config_.data.train_files, data::kBuiltinTrainBytes, data::kBuiltinTrainSeed));
  config_.data.identity = data::corpus_identity(*train_corpus_);  // stored in checkpoints, compared on resume
  if (!config_.data.valid_files.empty() || config_.data.train_files.empty()) {
    valid_corpus_.emplace(open_corpus(config_.data.valid_files, data::kBuiltinValidBytes, data::kBuiltinValidSeed));
  }
  // This rank owns streams [r·B/N, (r+1)·B/N) of the B global ones.
  const int64_t local_streams = config_.data.batch_size / parallelism_.dp_size;
  const int64_t first_stream = parallelism_.dp_rank * local_streams;
  // Under context parallelism each rank reads only its chunk of every block (and its targets).
  const int64_t chunk = config_.data.block_size / parallelism_.cp.size;
  sampler_.emplace(*train_corpus_, config_.data.batch_size, config_.data.block_size, first_stream, local_streams);
  sampler_->set_chunk(parallelism_.cp.rank * chunk, chunk);
  trace_reads(*sampler_, parallelism_.world_rank);
  if (valid_corpus_) {
    valid_sampler_.emplace(*valid_corpus_, config_.data.batch_size, config_.data.block_size, first_stream,
                           local_streams);
    valid_sampler_->set_chunk(parallelism_.cp.rank * chunk, chunk);
  }
  // --grad-accum K: this rank's streams in K micro-batches of equal rows, a cache each.
  if (local_streams % config_.optim.grad_accum != 0) {
    throw std::invalid_argument("--grad-accum " + std::to_string(config_.optim.grad_accum) + " does not divide the " +
                                std::to_string(local_streams) + " streams of each rank (--batch-size / ranks)");
  }
  caches_.resize(static_cast<size_t>(config_.optim.grad_accum));
}

void TrainingRun::create_run_dir() {
  std::string error;
  if (root_) {
    try {
      prepare_run_dir();
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  if (!group_.all_ok(error.empty())) throw RunRefused(root_ ? error : "rank 0 could not prepare the run dir");
}

// Rank 0, before anything is written: the run dir exists and is this run's alone (locked); a
// fresh run does not write over an earlier run's files; a crash's half-written files are gone.
void TrainingRun::prepare_run_dir() {
  const std::string& dir = config_.run.run_dir;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create run dir '" + dir + "': " + ec.message());
  checkpointing::require_writable(dir);
  lock_.emplace(dir);
  const std::vector<std::string> earlier = checkpointing::earlier_run_files(dir);
  if (config_.run.resume.empty() && !earlier.empty()) {
    if (!config_.run.fresh) {
      std::string names;
      for (size_t i = 0; i < earlier.size() && i < 3; ++i) names += (i ? ", " : "") + earlier[i];
      if (earlier.size() > 3) names += ", ...";
      throw std::runtime_error("run dir '" + dir + "' holds an earlier run (" + names +
                               "): continue it with --resume auto, or start over with --fresh (its files move to " +
                               dir + "/previous-<time>/)");
    }
    const std::string aside = checkpointing::move_earlier_run_aside(dir);
    if (!quiet_)
      std::fprintf(stderr, "adaspan train: note: --fresh: the earlier run's files moved to %s\n", aside.c_str());
  }
  for (const auto& name : checkpointing::remove_stale_temporaries(dir)) {
    if (!quiet_)
      std::fprintf(stderr, "adaspan train: note: removed '%s', left half-written by a crash\n", name.c_str());
  }
}

void TrainingRun::build_model() {
  model_.emplace(config_.model);
  model_->shard(parallelism_.tp);
  model_->set_context_parallel(parallelism_.cp);
  model_->to(device_);
  model_->set_precision(model::parse_precision(config_.run.precision));
  if (root_ && !quiet_ && device_.is_cpu() && model_->precision() == model::Precision::bf16) {
    // Measured on an AVX2 CPU (no bf16 instructions): 30x slower than fp32 (adaspan_bench).
    std::fprintf(stderr,
                 "adaspan train: note: --precision bf16 on a CPU is emulated unless it has bf16 "
                 "instructions (AVX512-BF16, AMX) and can be many times slower than fp32\n");
  }
  model_->train();
}

void TrainingRun::build_optimizer() {
  std::vector<at::Tensor> params = model_->parameters();
  if (parallelism_.gradients && parallelism_.gradients->size() > 1) {  // DP x CP replicas of this shard
    at::NoGradGuard no_grad;
    for (auto& p : params) parallelism_.gradients->broadcast(p, 0);  // one model, whatever each rank's RNG did
    reducer_ = std::make_unique<GradientReducer>(params, *parallelism_.gradients, config_.run.bucket_mb << 20,
                                                 config_.run.overlap,
                                                 config_.run.zero ? Reduction::scatter : Reduction::all_reduce);
  }
  // Dropout: a stream per rank.
  at::manual_seed(config_.run.seed + 7919 * static_cast<uint64_t>(parallelism_.world_rank));
  const OptimConfig& o = config_.optim;
  CompleteSquares complete_squares = tp_complete_squares(*model_, parallelism_.tp);
  if (config_.run.zero && reducer_) {  // one replica: nothing to shard
    optimizer_ = make_zero_optimizer(
        params, *reducer_, {o.optimizer, o.grad_clip, o.adam_beta1, o.adam_beta2, o.adam_eps, complete_squares});
  } else if (o.optimizer == "adam") {
    optimizer_ = make_adam(params, o.grad_clip, o.adam_beta1, o.adam_beta2, o.adam_eps, complete_squares);
  } else {
    optimizer_ = make_adagrad(params, o.grad_clip, complete_squares);
  }
}

void TrainingRun::open_checkpoints() {
  // Under context parallelism the replicas of a shard are DP x CP ranks; CP rank 0 writes the cache.
  const int replica = parallelism_.dp_rank * parallelism_.cp.size + parallelism_.cp.rank;
  live_.emplace(LiveTraining{*model_, *optimizer_, *sampler_, caches_, state_.progress, parallelism_.world_rank,
                             all_ranks_, replica, parallelism_.cp.rank == 0});
  // The background writer calls MPI (collective HDF5 over `files`) while this thread does too.
  async_checkpoints_ =
      config_.run.async_checkpoint && (!parallelism_.files.valid() || parallelism_.mpi_thread_multiple);
  if (config_.run.async_checkpoint && !async_checkpoints_ && root_ && !quiet_) {
    std::fprintf(stderr, "adaspan train: note: MPI lacks MPI_THREAD_MULTIPLE; checkpoints are written synchronously\n");
  }
  checkpoints_ =
      std::make_unique<CheckpointSession>(config_, parallelism_.files, group_, parallelism_.world_rank, all_ranks_,
                                          root_ && !quiet_ ? stderr : nullptr, async_checkpoints_);
  resumed_ = checkpoints_->resume(*live_);
  if (resumed_) caches_loaded();
  // A resumed run keeps its checkpoint's run id; a fresh one (or one resumed from a checkpoint
  // older than run ids) gets a new one, rank 0's for every rank.
  run_id_ = resumed_ && !resumed_->run_id.empty() ? resumed_->run_id : group_.broadcast(root_ ? new_run_id() : "");
  checkpoints_->set_run_id(run_id_, resumed_ && resumed_->adopts_unnamed);
  first_step_ = resumed_ ? resumed_->step + 1 : 1;
  state_.tokens_seen = resumed_ ? resumed_->tokens_seen : 0;
  state_.last_checkpoint = resumed_ ? resumed_->step : 0;
  state_.step_at_check = first_step_ - 1;
  state_.placement =
      cluster::contiguous_placement(config_.model.layers, config_.model.heads, std::max(1, parallelism_.tp.size));
  if (resumed_ && !resumed_->rng_restored) {
    // Written by another number of ranks: a fresh dropout stream per rank, not a replay.
    at::manual_seed(config_.run.seed + 7919 * static_cast<uint64_t>(parallelism_.dp_rank) +
                    104729 * static_cast<uint64_t>(resumed_->step));
  }
  if (faults_.crash_before_commit(config_.fault.at_step)) checkpoints_->crash_before_commit_at(config_.fault.at_step);
}

void TrainingRun::open_metrics() {
  // On resume, records past the checkpoint (a crashed attempt's) are dropped: they are redone.
  std::string error;
  if (root_) {
    try {
      if (!resumed_ && !checkpointing::earlier_run_files(config_.run.run_dir).empty()) {
        // --resume auto found nothing usable: the earlier files move aside instead of being overwritten.
        const std::string aside = checkpointing::move_earlier_run_aside(config_.run.run_dir);
        if (!quiet_)
          std::fprintf(stderr, "adaspan train: note: no usable checkpoint; the earlier files moved to %s\n",
                       aside.c_str());
      }
      metrics_.emplace((std::filesystem::path(config_.run.run_dir) / "metrics.jsonl").string(),
                       resumed_ ? std::optional<int64_t>(resumed_->step) : std::nullopt);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  if (!group_.all_ok(error.empty())) throw std::runtime_error(root_ ? error : "rank 0 could not open metrics.jsonl");
  if (resumed_) {
    log({{"event", "resumed"},
         {"step", resumed_->step},
         {"path", resumed_->path},
         {"run_id", run_id_},
         {"ranks", parallelism_.dp_size},
         {"rng_restored", resumed_->rng_restored}});
    progress_.message(("resumed from " + resumed_->path + " at step " + std::to_string(resumed_->step)).c_str());
  }
}

TrainResult TrainingRun::run() {
  start_ = Clock::now();
  state_.window_start = start_;
  state_.last_checkpoint_time = start_;
  if (config_.run.final_checkpoint && !checkpoints_possible() && root_ && !quiet_) {
    std::fprintf(stderr,
                 "adaspan train: note: no final checkpoint: --tp > 1 with --cache hidden cannot be "
                 "checkpointed (use --cache kv)\n");
  }
  for (state_.step = first_step_; state_.step <= config_.run.steps; ++state_.step) {
    if (!step_or_skip() && maybe_rollback()) continue;
    maybe_rebalance();
    maybe_log();
    maybe_validate();
    maybe_checkpoint();
    if (should_stop()) break;
  }
  return finish();
}

bool TrainingRun::step_or_skip() {
  const int64_t step = state_.step;
  watchdog_.enter("training step", step);
  faults_.at_step_start(step);
  auto [x, y] = to_tensors(sampler_->next(), device_);  // x, y: [B / DP, M / CP]
  std::vector<MicroBatch> micro;
  const std::vector<at::Tensor> xs = x.chunk(config_.optim.grad_accum, 0), ys = y.chunk(config_.optim.grad_accum, 0);
  for (size_t k = 0; k < xs.size(); ++k) micro.push_back({xs[k], ys[k]});
  state_.lr = warmup_lr(config_.optim.lr, step, config_.optim.warmup_steps) *
              (step <= state_.progress.halved_lr_until ? 0.5 : 1.0);
  // One small collective per step: skip together on a non-finite step, stop together on a signal,
  // checkpoint together when --checkpoint-minutes have passed on any rank's clock.
  const auto agree = [this](bool finite) {
    const double minutes = std::chrono::duration<double>(Clock::now() - state_.last_checkpoint_time).count() / 60;
    const bool due = config_.run.checkpoint_minutes > 0 && minutes >= config_.run.checkpoint_minutes;
    const std::vector<double> flags = group_.reduce(
        {finite ? 0.0 : 1.0, static_cast<double>(cluster::stop_signal()), due ? 1.0 : 0.0}, model::ReduceOp::max);
    state_.stop_signal = static_cast<int>(flags[1]);
    state_.checkpoint_due = flags[2] > 0;
    return flags[0] == 0;
  };
  const StepOutput out =
      train_step(*model_, *optimizer_, micro, caches_, state_.lr, reducer_.get(), agree, faults_.loss_factor(step));
  state_.tokens_seen += tokens_per_step_;
  if (out.applied) {
    state_.bad_in_a_row = 0;
    state_.progress.window.nll += out.nll;
    ++state_.progress.window.steps;
    return true;
  }
  ++state_.skipped_steps;
  ++state_.bad_in_a_row;
  log({{"event", "skipped_step"},
       {"step", step},
       {"reason", "non-finite loss or gradient"},
       {"in_a_row", state_.bad_in_a_row},
       {"skipped_total", state_.skipped_steps}});
  progress_.message(("step " + std::to_string(step) + ": non-finite loss or gradient, update skipped").c_str());
  return false;
}

bool TrainingRun::maybe_rollback() {
  const int64_t step = state_.step;
  if (state_.bad_in_a_row <= config_.run.max_bad_steps) return false;
  watchdog_.enter("rollback", step);
  const std::optional<Resumed> back = checkpoints_->load_newest(*live_);
  if (!back) {
    throw std::runtime_error(std::to_string(state_.bad_in_a_row) + " non-finite steps in a row at step " +
                             std::to_string(step) + " and no checkpoint to roll back to (use --checkpoint-every)");
  }
  ++state_.rollbacks;
  state_.progress.halved_lr_until = step + config_.run.rollback_lr_steps;
  log({{"event", "rollback"},
       {"step", step},
       {"to_step", back->step},
       {"path", back->path},
       {"lr_scale", 0.5},
       {"until_step", state_.progress.halved_lr_until}});
  progress_.message(("rolled back to " + back->path + "; half the learning rate until step " +
                     std::to_string(state_.progress.halved_lr_until))
                        .c_str());
  caches_loaded();
  state_.step = back->step;  // the loop's ++ continues after it
  state_.tokens_seen = back->tokens_seen;
  state_.last_checkpoint = back->step;
  state_.bad_in_a_row = 0;  // the metrics window is the checkpoint's again
  state_.window_start = Clock::now();
  return true;
}

void TrainingRun::maybe_rebalance() {
  const int64_t step = state_.step;
  const int tp = parallelism_.tp.size;
  if (!parallelism_.tp.active() || config_.run.rebalance_every <= 0 || step % config_.run.rebalance_every != 0) return;
  watchdog_.enter("head rebalancing", step);
  const std::vector<std::vector<double>> costs = head_costs(model_->all_spans(), config_.model);
  const cluster::HeadPlacement plan = cluster::plan_head_placement(costs, tp);
  const double before = cluster::max_load(costs, state_.placement, tp);
  const double after = cluster::max_load(costs, plan, tp);
  // Attention forward seconds per step on each rank since the last check (before the move; the
  // training records that follow show it after).
  const double attention_now = model_->attention_seconds();
  const std::vector<double> attention_before =
      group_.gather((attention_now - state_.attention_at_check) /
                    static_cast<double>(std::max<int64_t>(1, step - state_.step_at_check)));
  state_.attention_at_check = attention_now;
  state_.step_at_check = step;
  if (!(after < before * (1.0 - config_.run.rebalance_threshold))) return;
  const std::vector<double> kv_before = group_.gather(static_cast<double>(kv_cache_bytes(caches_)));
  move_heads(*model_, *optimizer_, caches_, state_.placement, plan);
  const std::vector<double> kv_after = group_.gather(static_cast<double>(kv_cache_bytes(caches_)));
  log({{"event", "rebalance"},
       {"step", step},
       {"max_load_before", before},
       {"max_load_after", after},
       {"loads_before", cluster::rank_loads(costs, state_.placement, tp)},
       {"loads_after", cluster::rank_loads(costs, plan, tp)},
       {"kv_cache_bytes_before", kv_before},
       {"kv_cache_bytes_after", kv_after},
       {"attention_s_per_step_before", attention_before},
       {"placement", plan}});
  char line[160];
  std::snprintf(line, sizeof(line), "step %lld: heads rebalanced, largest rank load %.0f -> %.0f keys",
                static_cast<long long>(step), before, after);
  progress_.message(line);
  state_.placement = plan;
}

void TrainingRun::maybe_log() {
  const int64_t step = state_.step;
  if ((step % config_.run.log_every != 0 && step != config_.run.steps) || state_.progress.window.steps == 0) return;
  watchdog_.enter("metrics reduction", step);
  const double window_s = std::chrono::duration<double>(Clock::now() - state_.window_start).count();
  const nlohmann::json record = training_record(window_s);
  log(record);
  progress_.update(step, record["bpc"].get<double>(), record["tokens_per_s"].get<double>(),
                   record["elapsed_s"].get<double>());
  state_.last_bpc = record["bpc"].get<double>();
  state_.attention_at_log = model_->attention_seconds();
  state_.progress.window = {};
  state_.window_start = Clock::now();
}

nlohmann::json TrainingRun::training_record(double window_s) {
  const double comm_s = reducer_ ? reducer_->take_wait_seconds() : 0.0;
  const model::HaloTraffic halo = *parallelism_.cp.traffic;  // context parallelism's, this window
  *parallelism_.cp.traffic = {};
  // Each rank's mean over its equal share of the streams: their mean is the global mean.
  const double nll = group_.reduce(state_.progress.window.nll, model::ReduceOp::sum) / all_ranks_;
  const double slowest = group_.reduce(window_s, model::ReduceOp::max);
  const double fastest = group_.reduce(window_s, model::ReduceOp::min);
  const double comm_max = group_.reduce(comm_s, model::ReduceOp::max);
  const std::vector<double> peak_mb = group_.gather(cluster::peak_memory_mb(config_.run.device));
  const double steps = static_cast<double>(state_.progress.window.steps);
  nlohmann::json record = {
      {"step", state_.step},
      {"bpc", nll / steps / kLn2},
      {"lr", state_.lr},
      {"tokens_per_s", static_cast<double>(tokens_per_step_) * steps / slowest},
      {"elapsed_s", std::chrono::duration<double>(Clock::now() - start_).count()},
      {"ranks", all_ranks_},
      {"step_time_max_s", slowest / steps},
      {"step_time_min_s", fastest / steps},
      {"comm_wait_s", comm_max / steps},
      {"peak_memory_mb", peak_mb},
      {"optimizer_state_mb", group_.gather(static_cast<double>(optimizer_->state_bytes()) / 1e6)},
      {"kv_cache_mb", group_.gather(static_cast<double>(kv_cache_bytes(caches_)) / 1e6)},
      {"halo_mb_per_step", group_.gather(halo.bytes_sent / 1e6 / steps)},
      {"cp_comm_wait_s", group_.gather(halo.wait_seconds / steps)},
      {"attention_s_per_step", group_.gather((model_->attention_seconds() - state_.attention_at_log) / steps)},
      {"skipped_steps", state_.skipped_steps},
      {"spans", spans_json(model_->all_spans())}};
  if (config_.model.span_mode == model::SpanMode::dynamic) {
    // Per-token spans of the last training block (this rank's streams), per layer and head.
    record["span_mean"] = spans_json(model_->span_means());
    record["span_p99"] = spans_json(model_->span_p99s());
  }
  return record;
}

void TrainingRun::maybe_validate() {
  const int64_t step = state_.step;
  if (!valid_sampler_ || config_.run.eval_every <= 0 ||
      (step % config_.run.eval_every != 0 && step != config_.run.steps)) {
    return;
  }
  watchdog_.enter("validation", step);
  const double attention_before = model_->attention_seconds();
  const model::HaloTraffic training_halos = *parallelism_.cp.traffic;  // validation's are not training's
  const double local = evaluate(*model_, *valid_sampler_, config_.run.eval_steps, device_);
  const double eval_attention = model_->attention_seconds() - attention_before;  // not training time
  *parallelism_.cp.traffic = training_halos;
  state_.attention_at_log += eval_attention;
  state_.attention_at_check += eval_attention;
  const double bpc = group_.reduce(local, model::ReduceOp::sum) / all_ranks_ / kLn2;
  log({{"step", step}, {"split", "valid"}, {"bpc", bpc}});
  char line[96];
  std::snprintf(line, sizeof(line), "step %lld valid bpc %.4f", static_cast<long long>(step), bpc);
  progress_.message(line);
  state_.window_start = Clock::now();  // validation time is not training throughput
}

void TrainingRun::maybe_checkpoint() {
  const int64_t step = state_.step;
  const bool last = step == config_.run.steps;
  const bool every = config_.run.checkpoint_every > 0 && step % config_.run.checkpoint_every == 0;
  const bool final = last && config_.run.final_checkpoint;
  // A stop signal also writes a checkpoint, whatever --checkpoint-every says: that is its point.
  const bool stopping = state_.stop_signal != 0 && state_.last_checkpoint != step;
  if ((every || final || state_.checkpoint_due || stopping) && checkpoints_possible()) {
    watchdog_.enter("checkpoint", step);
    // The last step's and a stopping run's checkpoints are synchronous: nothing may be lost.
    std::vector<model::ModelCache> logical;
    const LiveTraining live = checkpointed(logical);
    if (async_checkpoints_ && !state_.stop_signal && !last) {
      checkpoints_->save_async(live, step, state_.tokens_seen);
    } else {
      const Saved saved = checkpoints_->save(live, step, state_.tokens_seen);
      log_finished_checkpoints();
      log_checkpoint(saved);
    }
    state_.last_checkpoint = step;
    state_.last_checkpoint_time = Clock::now();
    state_.window_start = Clock::now();
  }
  log_finished_checkpoints();
}

// What a checkpoint captures: the live training, with the logical caches (filled into `logical`)
// under context parallelism.
LiveTraining TrainingRun::checkpointed(std::vector<model::ModelCache>& logical) const {
  if (!parallelism_.cp.enabled()) return *live_;
  logical =
      logical_caches(caches_, parallelism_.cp, config_.data.block_size / parallelism_.cp.size, config_.model.attn_span);
  const LiveTraining& live = *live_;
  return LiveTraining{live.model, live.optimizer, live.sampler, logical,          live.progress,
                      live.rank,  live.ranks,     live.dp_rank, live.writes_cache};
}

// After a checkpoint was loaded into caches_ (logical): this rank's chunks of it.
void TrainingRun::caches_loaded() {
  if (!parallelism_.cp.enabled()) return;
  caches_ =
      chunk_caches(caches_, parallelism_.cp, config_.data.block_size / parallelism_.cp.size, config_.model.attn_span);
}

bool TrainingRun::checkpoints_possible() const {
  // Hidden caches are sized by each tensor-parallel rank's own heads: no logical checkpoint of them.
  return !(parallelism_.tp.active() && config_.model.cache == model::CacheMode::hidden);
}

bool TrainingRun::should_stop() {
  if (!state_.stop_signal) return false;
  log({{"event", "preempted"},
       {"step", state_.step},
       {"signal", state_.stop_signal},
       {"checkpoint", state_.last_checkpoint}});
  progress_.message(("stopping on signal " + std::to_string(state_.stop_signal) + " after step " +
                     std::to_string(state_.step) + "; resume with --resume auto")
                        .c_str());
  return true;
}

TrainResult TrainingRun::finish() {
  watchdog_.enter("checkpoint", config_.run.steps);
  if (const std::optional<Saved> saved = checkpoints_->wait()) log_checkpoint(*saved);
  log_finished_checkpoints();
  watchdog_.idle();
  progress_.finish();

  TrainResult result;
  result.first_step = first_step_;
  result.final_train_bpc = state_.last_bpc;
  result.skipped_steps = state_.skipped_steps;
  result.rollbacks = state_.rollbacks;
  if (state_.stop_signal) {  // no "done": the run is not finished
    result.preempted = true;
    result.stop_signal = state_.stop_signal;
    result.steps = state_.step;
    return result;
  }
  result.steps = config_.run.steps;
  result.param_norm = model_->parameter_norm();
  result.spans = model_->all_spans();
  log({{"event", "done"},
       {"step", result.steps},
       {"run_id", run_id_},
       {"ranks", all_ranks_},
       {"param_norm", result.param_norm},
       {"spans", spans_json(result.spans)}});
  return result;
}

void TrainingRun::log(const nlohmann::json& record) {
  if (metrics_) metrics_->write(record);
}

void TrainingRun::log_checkpoint(const Saved& saved) {
  log({{"event", "checkpoint"},
       {"run_id", run_id_},
       {"step", saved.step},
       {"path", saved.path},
       {"seconds", saved.seconds},
       {"stall_seconds", saved.stall_seconds},
       {"bytes", saved.bytes}});
  char line[200];
  std::snprintf(line, sizeof(line), "step %lld checkpoint %s (%.1f MB, %.2f s, training stalled %.2f s)",
                static_cast<long long>(saved.step), std::filesystem::path(saved.path).filename().c_str(),
                saved.bytes / 1e6, saved.seconds, saved.stall_seconds);
  progress_.message(line);
}

void TrainingRun::log_finished_checkpoints() {
  while (const std::optional<Saved> saved = checkpoints_->take_finished()) log_checkpoint(*saved);
}

}  // namespace adaspan::trainer
