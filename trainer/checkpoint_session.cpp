#include "trainer/checkpoint_session.h"

#include "checkpointing/checkpoint_file.h"
#include "checkpointing/checkpoint_store.h"
#include "cluster/mpi_process_group.h"
#include "trainer/config_json.h"
#include "trainer/run_refused.h"
#include "trainer/trainer.h"

#include <ATen/ATen.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <sstream>
#include <stdexcept>

namespace adaspan::trainer {
namespace {

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

}  // namespace

CheckpointSession::CheckpointSession(const TrainConfig& config, const cluster::Communicator& comm,
                                     const GroupScalars& group, int rank, int ranks, FILE* warnings, bool async)
    : config_(config), comm_(comm), group_(group), rank_(rank), ranks_(ranks), warnings_(warnings) {
  if (async && comm_.valid()) {
    async_comm_ = comm_.duplicate();  // collective
    async_group_ = std::make_unique<cluster::MpiProcessGroup>(async_comm_);
  }
  async_scalars_ = std::make_unique<GroupScalars>(async_group_.get());
}

CheckpointSession::~CheckpointSession() {
  try {
    wait();
  } catch (const std::exception& e) {
    if (warnings_) std::fprintf(warnings_, "adaspan train: warning: %s\n", e.what());
  }
  async_group_.reset();
  async_comm_.release();
}

std::string CheckpointSession::try_load(const std::string& path, const LiveTraining& live, Resumed& out) {
  // 1. Every rank reads what it needs; nothing changes yet.
  std::string error;
  checkpointing::TrainingState state;
  try {
    state = checkpointing::read_checkpoint(path,
                                           {rank_, ranks_, live.sampler.first_stream(), live.sampler.local_streams()});
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!group_.all_ok(error.empty())) return error.empty() ? "another rank could not read it" : error;

  // 2. Same file on every rank: a config that does not fit is every rank's error, and fatal.
  nlohmann::json stored;
  try {
    stored = nlohmann::json::parse(state.config_json);
  } catch (const std::exception& e) {
    return std::string("its stored config is not JSON: ") + e.what();
  }
  const std::string mismatch = resume_incompatibility(config_, stored);
  if (!mismatch.empty()) throw RunRefused("cannot resume from '" + path + "': " + mismatch);
  if (state.step > config_.run.steps) {
    throw RunRefused("cannot resume from '" + path + "': it is at step " + std::to_string(state.step) +
                     ", past --steps " + std::to_string(config_.run.steps) + " (the step to stop at)");
  }

  // 3. Apply.
  restore_state(state, live);
  if (warnings_) {
    for (const auto& change : resume_changes(config_, stored)) {
      std::fprintf(warnings_, "adaspan train: note: changed since the checkpoint: %s\n", change.c_str());
    }
  }
  out.path = path;
  out.run_id = state.run_id;
  out.adopts_unnamed = state.run_id.empty() || state.adopts_unnamed;
  out.step = state.step;
  out.tokens_seen = state.tokens_seen;
  out.rng_restored = state.rng_cpu.defined();
  return "";
}

std::optional<Resumed> CheckpointSession::resume(const LiveTraining& live) {
  const std::string& what = config_.run.resume;
  if (what.empty()) return std::nullopt;
  Resumed resumed;
  if (what != "auto") {
    const std::string error = try_load(what, live, resumed);
    if (!error.empty()) throw RunRefused("--resume '" + what + "': " + error);  // agreed in try_load
    return resumed;
  }
  std::optional<Resumed> newest = load_newest(live);
  if (!newest && warnings_) {
    std::fprintf(warnings_, "adaspan train: note: --resume auto: no usable checkpoint in '%s'; starting at step 0\n",
                 config_.run.run_dir.c_str());
  }
  return newest;
}

std::optional<Resumed> CheckpointSession::load_newest(const LiveTraining& live) {
  if (std::optional<Saved> done = wait()) finished_.push_back(*done);  // the newest may be in flight
  Resumed resumed;
  // Rank 0's listing is everyone's (a shared file system may show new files late on some nodes).
  std::string listing;
  if (rank_ == 0) {
    for (const auto& path : lineage_checkpoints()) listing += path + "\n";
  }
  for (const auto& path : split_lines(group_.broadcast(listing))) {
    const std::string error = try_load(path, live, resumed);
    if (error.empty()) return resumed;
    if (warnings_)
      std::fprintf(warnings_, "adaspan train: warning: skipping checkpoint '%s': %s\n", path.c_str(), error.c_str());
  }
  return std::nullopt;
}

// Empty when the run dir's file system can hold the checkpoint, else why not (every rank calls
// it; rank 0's answer counts). The need is this lineage's previous checkpoint (the same model),
// or for the first one what the ranks will write: the pieces each rank writes (tensor-parallel
// shards, streams' cache rows) and once the tensors every rank holds whole; plus 10%. A write
// that runs out of space midway leaves HDF5 (1.10) in a state its clean-up crashes on.
std::string CheckpointSession::space_shortfall(const checkpointing::TrainingState& state,
                                               const GroupScalars& group) const {
  double written = 0;
  for (const auto* list : {&state.parameters, &state.optimizer_state, &state.cache}) {
    for (const auto& t : *list) {
      const bool writes = t.pieces.dim < 0 ? rank_ == 0 : !t.pieces.offsets.empty();
      if (writes && t.tensor.defined()) written += static_cast<double>(t.tensor.numel()) * t.tensor.element_size();
    }
  }
  uint64_t need = static_cast<uint64_t>(group.reduce(written, model::ReduceOp::sum));
  if (rank_ != 0) return "";
  for (const auto& path : checkpointing::list_checkpoints(config_.run.run_dir)) {
    if (!in_lineage(path)) continue;
    std::error_code ec;
    need = std::max<uint64_t>(need, std::filesystem::file_size(path, ec));
    break;  // the newest of this lineage
  }
  need = need + need / 10 + (64 << 10);
  const uint64_t free = checkpointing::free_bytes(config_.run.run_dir);
  if (free >= need) return "";
  return "the file system of '" + config_.run.run_dir + "' has " + std::to_string(free >> 10) + " KiB free, the " +
         "checkpoint needs about " + std::to_string(need >> 10) + " KiB";
}

Saved CheckpointSession::write_and_commit(const checkpointing::TrainingState& state, int64_t step,
                                          const cluster::Communicator& comm, const GroupScalars& group) {
  const auto start = std::chrono::steady_clock::now();
  const std::string tmp = checkpointing::temporary_path(config_.run.run_dir, step);
  std::string error = space_shortfall(state, group);
  if (!group.all_ok(error.empty())) {
    throw CheckpointUnwritable("checkpoint at step " + std::to_string(step) + " not written (the previous one is " +
                               "intact): " + (error.empty() ? "see rank 0" : error));
  }
  try {
    checkpointing::write_checkpoint(tmp, state, {comm, config_.data.batch_size});
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!group.all_ok(error.empty())) {
    if (rank_ == 0) std::remove(tmp.c_str());  // the space it holds, on a full disk
    throw CheckpointUnwritable("checkpoint at step " + std::to_string(step) + " failed (the previous one is intact): " +
                               (error.empty() ? "another rank could not write it" : error));
  }
  if (step == crash_before_commit_) {
    if (rank_ == 0) {
      std::fprintf(stderr, "adaspan train: --fail-mode checkpoint: exiting before committing step %lld\n",
                   static_cast<long long>(step));
    }
    std::fflush(stderr);
    ::_exit(3);
  }
  Saved saved;
  saved.step = step;
  if (rank_ == 0) {
    try {
      saved.path = checkpointing::commit_checkpoint(config_.run.run_dir, step, config_.run.keep_checkpoints,
                                                    [this](const std::string& path) { return in_lineage(path); });
      saved.bytes = static_cast<int64_t>(std::filesystem::file_size(saved.path));
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  if (!group.all_ok(error.empty())) {
    throw CheckpointUnwritable("checkpoint at step " + std::to_string(step) +
                               " could not be committed: " + (error.empty() ? "see rank 0" : error));
  }
  if (saved.path.empty()) saved.path = checkpointing::checkpoint_path(config_.run.run_dir, step);
  saved.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return saved;
}

void CheckpointSession::set_run_id(const std::string& run_id, bool adopts_unnamed) {
  run_id_ = run_id;
  adopts_unnamed_ = adopts_unnamed;
  lineage_ = {run_id};
  if (adopts_unnamed) lineage_.insert("");
}

bool CheckpointSession::in_lineage(const std::string& path) const {
  try {
    return lineage_.count(checkpointing::read_checkpoint_header(path).run_id) > 0;
  } catch (const std::exception&) {
    return false;  // unreadable: not known to be ours, so not deleted
  }
}

std::vector<std::string> CheckpointSession::lineage_checkpoints() {
  std::vector<std::string> ignored, ours;
  const std::vector<std::string> all = checkpointing::list_checkpoints(config_.run.run_dir, &ignored);
  for (const auto& name : ignored) {
    if (warnings_)
      std::fprintf(warnings_, "adaspan train: warning: ignoring '%s' (its step is out of range)\n", name.c_str());
  }
  std::set<std::string> lineage = lineage_;
  for (const auto& path : all) {
    checkpointing::TrainingState header;
    try {
      header = checkpointing::read_checkpoint_header(path);
    } catch (const std::exception&) {
      ours.push_back(path);  // damaged: try_load says why and skips it
      continue;
    }
    const std::string& id = header.run_id;
    if (lineage.empty()) {  // a resume: the lineage of `latest`, or else the newest
      lineage = {id};
      if (header.adopts_unnamed) lineage.insert("");
    }
    if (lineage.count(id)) {
      ours.push_back(path);
    } else if (warnings_) {
      std::fprintf(warnings_, "adaspan train: warning: skipping '%s': it belongs to another run (%s)\n", path.c_str(),
                   id.empty() ? "no run id" : id.c_str());
    }
  }
  return ours;
}

Saved CheckpointSession::save(const LiveTraining& live, int64_t step, int64_t tokens_seen) {
  if (std::optional<Saved> previous = wait()) finished_.push_back(*previous);
  checkpointing::TrainingState state = capture_state(live, step, tokens_seen, to_json(config_).dump());
  state.run_id = run_id_;
  state.adopts_unnamed = adopts_unnamed_;
  Saved saved = write_and_commit(state, step, comm_, group_);
  saved.stall_seconds = saved.seconds;
  return saved;
}

namespace {

// A copy of every tensor in host memory, so that training can change the live ones meanwhile.
checkpointing::TrainingState on_host(checkpointing::TrainingState state) {
  const auto copy = [](at::Tensor& t) {
    if (t.defined()) t = t.detach().to(at::kCPU).clone().contiguous();
  };
  for (auto* list : {&state.parameters, &state.optimizer_state, &state.cache}) {
    for (auto& named : *list) copy(named.tensor);
  }
  copy(state.rng_cpu);
  copy(state.rng_cuda);
  copy(state.metrics_window);
  return state;
}

}  // namespace

void CheckpointSession::save_async(const LiveTraining& live, int64_t step, int64_t tokens_seen) {
  const auto start = std::chrono::steady_clock::now();
  std::optional<Saved> previous = wait();
  if (previous) finished_.push_back(*previous);
  auto state = std::make_shared<checkpointing::TrainingState>(
      on_host(capture_state(live, step, tokens_seen, to_json(config_).dump())));
  state->run_id = run_id_;
  state->adopts_unnamed = adopts_unnamed_;
  const double stall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  pending_ = std::async(std::launch::async, [this, state, step, stall, start] {
    Saved saved = write_and_commit(*state, step, async_comm_, *async_scalars_);
    saved.stall_seconds = stall;
    saved.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return saved;
  });
}

std::optional<Saved> CheckpointSession::take_finished() {
  if (!finished_.empty()) {
    const Saved saved = finished_.front();
    finished_.erase(finished_.begin());
    return saved;
  }
  if (!pending_.valid() || pending_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return std::nullopt;
  return pending_.get();  // rethrows the writer's error
}

std::optional<Saved> CheckpointSession::wait() {
  if (!pending_.valid()) return std::nullopt;
  return pending_.get();
}

}  // namespace adaspan::trainer
