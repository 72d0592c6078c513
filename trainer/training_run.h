#pragma once
// One training run on one rank. The constructor builds what the run needs, in this order: data
// (first, so that a missing file stops the run before anything is written), the run dir, the
// model, the optimizer, the checkpoints (resuming when asked), the metrics log. run() is the loop:
//
//   for each step:
//     step_or_skip()      K micro-batches forward/backward, gradient all-reduce, update; a
//                         non-finite step is skipped on every rank together
//     maybe_rollback()    too many skipped in a row: back to the newest checkpoint, half the LR
//     maybe_rebalance()   TP: move heads between ranks when the learned spans make it pay
//     maybe_log()         a metrics record every --log-every steps
//     maybe_validate()    a validation pass every --eval-every steps
//     maybe_checkpoint()  every --checkpoint-every steps, at the last step, and on a stop signal
//     should_stop()       a stop signal every rank has agreed on
//
// Every rank runs the same phases in the same order, so their collectives match.
#include "checkpointing/run_directory.h"
#include "cluster/head_placement.h"
#include "cluster/watchdog.h"
#include "data/byte_corpus.h"
#include "data/stream_sampler.h"
#include "model/adaptive_span_lm.h"
#include "trainer/checkpoint_session.h"
#include "trainer/fault_injection.h"
#include "trainer/gradient_reducer.h"
#include "trainer/group_scalars.h"
#include "trainer/metrics_log.h"
#include "trainer/optimizer.h"
#include "trainer/progress_display.h"
#include "trainer/trainer.h"
#include "trainer/training_snapshot.h"

#include <ATen/Device.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

namespace adaspan::trainer {

// Everything the loop changes from step to step.
struct LoopState {
  using Clock = std::chrono::steady_clock;
  int64_t step = 0;               // the step being run
  int64_t tokens_seen = 0;        // over all ranks, since step 1
  double lr = 0;                  // this step's learning rate
  CheckpointedProgress progress;  // the metrics window since the last record; a rollback's halved LR
  Clock::time_point window_start;
  int64_t bad_in_a_row = 0;     // non-finite steps in a row
  int64_t last_checkpoint = 0;  // the newest checkpoint's step (written or loaded)
  int stop_signal = 0;          // a stop signal every rank has agreed on; 0: none
  bool checkpoint_due = false;  // --checkpoint-minutes have passed on some rank (agreed)
  Clock::time_point last_checkpoint_time;
  int64_t skipped_steps = 0, rollbacks = 0;
  // model.attention_seconds() at the last metrics record and at the last rebalancing check.
  double attention_at_log = 0, attention_at_check = 0;
  int64_t step_at_check = 0;
  cluster::HeadPlacement placement;  // which TP rank holds which head (canonical order)
  double last_bpc = 0;               // of the last metrics record
};

class TrainingRun {
 public:
  // config must have passed validate(); `parallelism` must outlive the run.
  TrainingRun(const TrainConfig& config, const Parallelism& parallelism, bool quiet);
  TrainResult run();

 private:
  using Clock = LoopState::Clock;

  // Construction, in order.
  void open_data();
  void create_run_dir();
  void prepare_run_dir();  // rank 0
  void build_model();
  void build_optimizer();
  void open_checkpoints();
  void open_metrics();

  // The loop's phases.
  bool step_or_skip();    // false: the update was skipped (non-finite loss or gradient)
  bool maybe_rollback();  // true: the run went back to a checkpoint; the loop continues after it
  void maybe_rebalance();
  void maybe_log();
  void maybe_validate();
  void maybe_checkpoint();
  bool should_stop();
  bool checkpoints_possible() const;
  LiveTraining checkpointed(std::vector<model::ModelCache>& logical) const;
  void caches_loaded();
  TrainResult finish();

  // The metrics record of the window that ends at this step.
  nlohmann::json training_record(double window_s);
  void log(const nlohmann::json& record);
  void log_checkpoint(const Saved& saved);
  void log_finished_checkpoints();

  TrainConfig config_;  // as given, with the corpus's identity once it is open
  const Parallelism& parallelism_;
  const bool quiet_, root_;
  const GroupScalars group_;  // host scalars over every rank
  const int all_ranks_;
  const at::Device device_;
  const int64_t tokens_per_step_;                  // over all ranks
  std::optional<checkpointing::RunDirLock> lock_;  // rank 0; released last

  std::optional<data::ByteCorpus> train_corpus_, valid_corpus_;
  std::optional<data::StreamSampler> sampler_, valid_sampler_;
  std::optional<model::AdaptiveSpanLM> model_;
  std::unique_ptr<GradientReducer> reducer_;  // none on one replica
  std::unique_ptr<Optimizer> optimizer_;
  std::vector<model::ModelCache> caches_;  // one per micro-batch (--grad-accum)
  LoopState state_;
  std::optional<LiveTraining> live_;
  std::unique_ptr<CheckpointSession> checkpoints_;
  bool async_checkpoints_ = false;
  std::optional<Resumed> resumed_;
  std::string run_id_;                 // this run's lineage, in its checkpoints and events
  std::optional<MetricsLog> metrics_;  // rank 0
  ProgressDisplay progress_;
  cluster::Watchdog watchdog_;
  FaultInjector faults_;
  int64_t first_step_ = 1;
  Clock::time_point start_;
};

}  // namespace adaspan::trainer
