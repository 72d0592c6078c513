#include "trainer/checkpoint_session.h"

#include "checkpointing/checkpoint_file.h"
#include "checkpointing/checkpoint_store.h"
#include "trainer/config_json.h"

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

CheckpointSession::CheckpointSession(const TrainConfig& config, MPI_Comm comm, const GroupScalars& group, int rank,
                                     int ranks, FILE* warnings)
    : config_(config), comm_(comm), group_(group), rank_(rank), ranks_(ranks), warnings_(warnings) {}

std::string CheckpointSession::try_load(const std::string& path, const LiveTraining& live, Resumed& out) {
  // 1. Every rank reads what it needs; nothing changes yet.
  std::string error;
  checkpointing::TrainingState state;
  try {
    state = checkpointing::read_checkpoint(
        path, {rank_, ranks_, live.sampler.first_stream(), live.sampler.local_streams()});
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
  if (!mismatch.empty()) throw std::runtime_error("cannot resume from '" + path + "': " + mismatch);

  // 3. Apply.
  restore_state(state, live);
  out.path = path;
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
    if (!error.empty()) throw std::runtime_error("--resume '" + what + "': " + error);
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
  Resumed resumed;
  // Rank 0's listing is everyone's (a shared file system may show new files late on some nodes).
  std::string listing;
  if (rank_ == 0) {
    for (const auto& path : checkpointing::list_checkpoints(config_.run.run_dir)) listing += path + "\n";
  }
  for (const auto& path : split_lines(group_.broadcast(listing))) {
    const std::string error = try_load(path, live, resumed);
    if (error.empty()) return resumed;
    if (warnings_) std::fprintf(warnings_, "adaspan train: warning: skipping checkpoint '%s': %s\n", path.c_str(), error.c_str());
  }
  return std::nullopt;
}

Saved CheckpointSession::save(const LiveTraining& live, int64_t step, int64_t tokens_seen) {
  const auto start = std::chrono::steady_clock::now();
  const std::string tmp = checkpointing::temporary_path(config_.run.run_dir, step);
  std::string error;
  try {
    checkpointing::write_checkpoint(tmp, capture_state(live, step, tokens_seen, to_json(config_).dump()),
                                    {comm_, config_.data.batch_size});
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!group_.all_ok(error.empty())) {
    throw std::runtime_error("checkpoint at step " + std::to_string(step) + " failed: " +
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
  if (rank_ == 0) {
    try {
      saved.path = checkpointing::commit_checkpoint(config_.run.run_dir, step, config_.run.keep_checkpoints);
      saved.bytes = static_cast<int64_t>(std::filesystem::file_size(saved.path));
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  if (!group_.all_ok(error.empty())) {
    throw std::runtime_error("checkpoint at step " + std::to_string(step) + " could not be committed: " +
                             (error.empty() ? "see rank 0" : error));
  }
  saved.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return saved;
}

}  // namespace adaspan::trainer
