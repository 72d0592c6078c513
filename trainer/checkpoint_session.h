#pragma once
// A run's checkpoints as the training loop sees them: resume at the start (--resume auto|PATH),
// save every --checkpoint-every steps (collective write to ckpt-STEP.h5.tmp, then rank 0 commits:
// rename, `latest`, keep the newest --keep-checkpoints).
#include "trainer/group_scalars.h"
#include "trainer/train_config.h"
#include "trainer/training_snapshot.h"

#include <mpi.h>

#include <cstdio>
#include <optional>
#include <string>

namespace adaspan::trainer {

struct Resumed {
  std::string path;
  int64_t step = 0, tokens_seen = 0;
  bool rng_restored = false;  // false when the writer had another number of ranks
};

struct Saved {
  std::string path;
  double seconds = 0;
  int64_t bytes = 0;
};

class CheckpointSession {
 public:
  // comm: the data-parallel ranks' communicator (MPI_COMM_NULL for one rank); `warnings` gets
  // one line per skipped checkpoint (rank 0 only; nullptr = silent).
  CheckpointSession(const TrainConfig& config, MPI_Comm comm, const GroupScalars& group, int rank, int ranks,
                    FILE* warnings);

  // Restores `live` from the checkpoint --resume names; nullopt for a fresh run (no --resume, or
  // auto with no valid checkpoint). auto skips damaged checkpoints with a warning; an explicit
  // path that cannot be read, or an incompatible config, throws std::runtime_error.
  std::optional<Resumed> resume(const LiveTraining& live);

  // The newest valid checkpoint of the run dir, whatever --resume says (rollback after repeated
  // non-finite steps); nullopt when there is none.
  std::optional<Resumed> load_newest(const LiveTraining& live);

  Saved save(const LiveTraining& live, int64_t step, int64_t tokens_seen);

  // Fault injection: exit (status 3) after writing step `step`'s checkpoint, before committing it.
  void crash_before_commit_at(int64_t step) { crash_before_commit_ = step; }

 private:
  // Empty when every rank loaded `path` into `live`, else the reason (nothing changed then).
  std::string try_load(const std::string& path, const LiveTraining& live, Resumed& out);

  const TrainConfig& config_;
  MPI_Comm comm_;
  const GroupScalars& group_;
  int rank_, ranks_;
  FILE* warnings_;
  int64_t crash_before_commit_ = -1;
};

}  // namespace adaspan::trainer
