#pragma once
// A run's checkpoints as the training loop sees them: resume at the start (--resume auto|PATH),
// save every --checkpoint-every steps (collective write to ckpt-STEP.h5.tmp, then rank 0 commits:
// rename, `latest`, keep the newest --keep-checkpoints).
#include "cluster/communicator.h"
#include "trainer/group_scalars.h"
#include "trainer/train_config.h"
#include "trainer/training_snapshot.h"

#include <cstdio>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace adaspan::trainer {

struct Resumed {
  std::string path;
  std::string run_id;           // the checkpoint's run ("" before run ids)
  bool adopts_unnamed = false;  // its lineage includes the files without a run id
  int64_t step = 0, tokens_seen = 0;
  bool rng_restored = false;  // false when the writer had another number of ranks
};

struct Saved {
  int64_t step = 0;
  std::string path;
  double seconds = 0;        // from the snapshot to the commit
  double stall_seconds = 0;  // of those, the training loop waited (all of it when synchronous)
  int64_t bytes = 0;
};

class CheckpointSession {
 public:
  // comm: every rank of the job, each writing its share of the file (not valid: one rank);
  // `warnings` gets one line per skipped checkpoint (rank 0 only; nullptr = silent).
  // async: save_async may be used; needs MPI_THREAD_MULTIPLE when comm is valid (the background
  // writer talks to the other ranks' writers on its own duplicate of comm).
  CheckpointSession(const TrainConfig& config, const cluster::Communicator& comm, const GroupScalars& group, int rank,
                    int ranks, FILE* warnings, bool async = false);
  ~CheckpointSession();  // waits for a background write

  // Restores `live` from the checkpoint --resume names; nullopt for a fresh run (no --resume, or
  // auto with no valid checkpoint). auto skips damaged checkpoints with a warning; an explicit
  // path that cannot be read, or an incompatible config, throws std::runtime_error.
  std::optional<Resumed> resume(const LiveTraining& live);

  // The newest valid checkpoint of the run dir, whatever --resume says (rollback after repeated
  // non-finite steps); nullopt when there is none.
  std::optional<Resumed> load_newest(const LiveTraining& live);

  // Writes and commits now (after waiting for a background write, if any).
  Saved save(const LiveTraining& live, int64_t step, int64_t tokens_seen);
  // Copies the state to host memory now and writes it in a background thread while training
  // goes on; the commit (rename, `latest`) happens when every rank's write is complete, so a crash
  // meanwhile leaves the previous checkpoint as it was. Waits for the previous write first.
  void save_async(const LiveTraining& live, int64_t step, int64_t tokens_seen);
  // The background write, once it has committed (nullopt while running or when there is none).
  // Throws std::runtime_error if it failed.
  std::optional<Saved> take_finished();
  // Waits for the background write, if any.
  std::optional<Saved> wait();

  // This run's id, written into every checkpoint, and its lineage (the id and the parent's it
  // resumed from): rollback, a later resume and retention use only checkpoints of the lineage.
  // This run's id, and whether its lineage includes the checkpoints without one (it began from one).
  void set_run_id(const std::string& run_id, bool adopts_unnamed);

  // Fault injection: exit (status 3) after writing step `step`'s checkpoint, before committing it.
  void crash_before_commit_at(int64_t step) { crash_before_commit_ = step; }

 private:
  // Empty when every rank loaded `path` into `live`, else the reason (nothing changed then).
  std::string try_load(const std::string& path, const LiveTraining& live, Resumed& out);
  std::string space_shortfall(const checkpointing::TrainingState& state, const GroupScalars& group) const;
  // Rank 0: the run dir's checkpoints of this lineage, `latest` first; with no lineage yet (a
  // resume), that of the first readable one. Others are named in a warning and left alone.
  std::vector<std::string> lineage_checkpoints();
  bool in_lineage(const std::string& path) const;
  // Writes `state` to the temporary file and commits it; collective over comm / group.
  Saved write_and_commit(const checkpointing::TrainingState& state, int64_t step, const cluster::Communicator& comm,
                         const GroupScalars& group);

  const TrainConfig& config_;
  cluster::Communicator comm_;
  const GroupScalars& group_;
  int rank_, ranks_;
  FILE* warnings_;
  int64_t crash_before_commit_ = -1;
  std::string run_id_;
  bool adopts_unnamed_ = false;
  std::set<std::string> lineage_;
  // Asynchronous writes: a duplicate communicator and its group, used only by the writer thread.
  cluster::Communicator async_comm_;
  std::unique_ptr<model::ProcessGroup> async_group_;
  std::unique_ptr<GroupScalars> async_scalars_;
  std::future<Saved> pending_;
  std::vector<Saved> finished_;  // waited for by save_async, not yet taken
};

}  // namespace adaspan::trainer
