#pragma once
// Everything `adaspan train` is told, grouped as the flags are (see trainer/train_option_table.cpp
// for each field's help text, unit and default).
#include "model/model_config.h"

#include <cstdint>
#include <string>
#include <vector>

namespace adaspan::trainer {

struct DataConfig {
  std::vector<std::string> train_files;  // empty: the built-in synthetic corpus
  std::vector<std::string> valid_files;  // empty: built-in valid split if training on built-in, else none
  int64_t batch_size = 16;               // B, global streams
  int64_t block_size = 128;              // M
  std::string identity;                  // of the training corpus (data/corpus_identity.h), set by the run
};

struct OptimConfig {
  std::string optimizer = "adagrad";  // adagrad (reference, per-tensor clipped step) | adam
  double lr = 0.07;
  int64_t warmup_steps = 100;
  double grad_clip = 0.03;  // adagrad: per tensor; adam: global norm. 0 = off
  int64_t grad_accum = 1;   // micro-batches per step (the reference's --batch-split)
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_eps = 1e-8;
};

struct RunConfig {
  int64_t steps = 500;
  uint64_t seed = 1;
  int threads = 0;                   // 0: cores / ranks on the node
  std::string device = "cpu";        // cpu | cuda | cuda:N
  std::string precision = "fp32";    // fp32 | bf16 (autocast; fp32 master weights and optimizer state)
  int tp = 1;                        // tensor-parallel ranks per replica
  int cp = 1;                        // context-parallel ranks: chunks per block
  int64_t rebalance_every = 0;       // steps between span-aware head placements (tp > 1); 0 = never
  double rebalance_threshold = 0.1;  // move heads when the largest rank load drops by more than this
  std::string dp_backend = "auto";   // auto | mpi | nccl
  int64_t bucket_mb = 25;            // gradient all-reduce bucket size
  bool overlap = true;               // reduce buckets during backward
  int zero = 0;                      // 1: ZeRO stage 1, optimizer state sharded over data parallelism
  std::string run_dir = "runs/latest";
  int64_t log_every = 10;
  int64_t eval_every = 100;         // 0 = never
  int64_t eval_steps = 20;          // blocks per validation pass
  int64_t checkpoint_every = 0;     // steps between checkpoints; 0 = none
  double checkpoint_minutes = 0;    // minutes between checkpoints (agreed at a step boundary); 0 = none
  bool final_checkpoint = true;     // a checkpoint at the last step
  int64_t keep_checkpoints = 3;     // newest checkpoints kept; 0 = all
  bool async_checkpoint = false;    // write checkpoints in a background thread
  std::string resume;               // "" (fresh run) | "auto" | a checkpoint path
  bool fresh = false;               // a fresh run moves an earlier run's files to RUN_DIR/previous-<time>/
  double step_timeout = 0;          // seconds a step (or checkpoint, validation) may take; 0 = no watchdog
  int64_t max_bad_steps = 3;        // non-finite steps in a row tolerated (skipped); more: roll back
  int64_t rollback_lr_steps = 100;  // after a rollback, steps at half the learning rate
};

// Planted failures for tests (see trainer/fault_injection.h). at_step 0: none.
struct FaultConfig {
  int64_t at_step = 0;
  int rank = 0;
  std::string mode = "crash";  // crash | hang | nan | signal | checkpoint
  int64_t count = 1;           // nan: consecutive steps
};

struct TrainConfig {
  model::ModelConfig model;
  DataConfig data;
  OptimConfig optim;
  RunConfig run;
  FaultConfig fault;
};

}  // namespace adaspan::trainer
