// Bad input, one row each: a command line (or a file it names) that the binary refuses, the exit
// status (2: bad usage, 1: a failure while running), and a distinctive part of its one error line.
// Every row also checks that exactly one line reached stderr (and nothing stdout) and that nothing
// was written: the scratch directory (with any run dir a row names) lists the same files, of the
// same sizes, after.
//
// docs/bad-input.md mirrors this table row for row, in the same order: change both together.
// Inputs that are not handled cleanly yet (stack traces, several lines, files written) are listed
// at the end of that document, not here.
//
// Placeholders in the arguments and in the expected text, made fresh for each row:
//   {dir}      a run dir or output dir that does not exist (and must not exist afterwards)
//   {tiny}     the flags of a tiny model and run (1 layer, d 32, 2 heads, ff 64, S 64, B 4, M 32)
//   {missing}  a path where nothing is        {folder}   an empty directory
//   {empty}    a 0-byte file                  {onebyte}  a 1-byte file
//   {text}     a 4000-byte text file (not HDF5, not a zip)
//   {empty_run} a directory whose metrics.jsonl holds one line that is not JSON
//   {plain}    an HDF5 file that is not a checkpoint (one dataset, no attributes)
//   {future}   an HDF5 file claiming checkpoint format 99
//   {ckpt}     a real checkpoint (train {tiny} --steps 2), trained once per test process
//   {dyn}      the same with --span-mode dynamic
//   {run}      a copy of {ckpt}'s run dir (ckpt-2.h5, latest, metrics.jsonl)
//   {busy}     the same, locked (flock on .lock) by this test while the row runs
//   {damaged}  a copy of {ckpt} with a byte of model/key_pe flipped (checksum mismatch)
//   {truncated} a copy of {ckpt} cut to half its size
//   {badjson}  a copy of {ckpt} whose stored config is not JSON
//   {nokey}    a copy of {ckpt} without its model/key_pe dataset
//   {unknown_cfg}, {zero_cfg}, {junk_cfg}  --config files: an unknown key, `layers = 0`, a line without `=`
//   {zip_nomember}, {zip_small}  zips without an enwik8 member, and with a 10-byte one
#include "hdf5_chunks.h"
#include "tests/ci_policy.h"
#include "tests/command_runner.h"
#include "tests/scratch_dir.h"

#include <ATen/Context.h>
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/file.h>
#include <unistd.h>
#include <zip.h>

#include <fcntl.h>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>

namespace adaspan {
namespace {

namespace fs = std::filesystem;

enum Needs : unsigned {
  kNothing = 0,
  kNoGpu = 1,       // the row is about a machine without CUDA: skipped where a GPU is visible
  kMatplotlib = 2,  // the row runs scripts/report.py: skipped (outside CI) without matplotlib and h5py
  kTorch = 4,       // the row runs scripts/reference_checkpoint.py: skipped (outside CI) without torch and h5py
};

struct Row {
  const char* name;
  const char* args;
  int exit_code;
  const char* expected;  // part of the one stderr line, placeholders replaced
  unsigned needs = kNothing;
};

void PrintTo(const Row& row, std::ostream* os) { *os << row.args; }

// In the order of docs/bad-input.md.
const Row kRows[] = {
    // train: the command line
    {"train_unknown_flag", "train --steps 2 --run-dir {dir} --no-such-flag 3", 2,
     "unrecognised option '--no-such-flag'"},
    {"train_stray_word", "train --steps 2 --run-dir {dir} stray", 2, "too many positional options"},
    {"train_flag_without_value", "train --steps 2 --run-dir {dir} --layers", 2,
     "the required argument for option '--layers' is missing"},
    {"train_flag_twice", "train --steps 2 --run-dir {dir} --layers 1 --layers 2", 2,
     "option '--layers' cannot be specified more than once"},
    {"train_switch_with_value", "train --steps 2 --run-dir {dir} --no-overlap=maybe", 2,
     "option '--no-overlap' does not take any arguments"},
    {"train_steps_not_integer", "train --steps abc --run-dir {dir}", 2, "--steps: 'abc' is not an integer"},
    {"train_steps_fraction", "train --steps 1.5 --run-dir {dir}", 2, "--steps: '1.5' is not an integer"},
    {"train_lr_not_number", "train --steps 2 --run-dir {dir} --lr fast", 2, "--lr: 'fast' is not a number"},
    {"train_seed_negative", "train --steps 2 --run-dir {dir} --seed -1", 2, "--seed: '-1' is negative"},
    // train: --config files
    {"config_missing", "train --steps 2 --run-dir {dir} --config {missing}", 2, "--config: cannot read '{missing}'"},
    {"config_unknown_key", "train --steps 2 --run-dir {dir} --config {unknown_cfg}", 2,
     "unrecognised option 'no-such-key'"},
    {"config_line_without_equals", "train --steps 2 --run-dir {dir} --config {junk_cfg}", 2,
     "invalid line 'just words'"},
    {"config_value_out_of_range", "train --steps 2 --run-dir {dir} --config {zero_cfg}", 2,
     "--layers must be positive, got 0"},
    // train: data files
    {"data_missing", "train --steps 2 --run-dir {dir} --data {missing}", 2, "--data: no such file '{missing}'"},
    {"data_directory", "train --steps 2 --run-dir {dir} --data {folder}", 2, "--data: '{folder}' is not a file"},
    {"data_empty", "train --steps 2 --run-dir {dir} --data {empty}", 2, "--data: '{empty}' is empty (0 bytes)"},
    {"valid_data_missing", "train --steps 2 --run-dir {dir} --valid-data {missing}", 2,
     "--valid-data: no such file '{missing}'"},
    {"valid_data_empty", "train --steps 2 --run-dir {dir} --valid-data {empty}", 2,
     "--valid-data: '{empty}' is empty (0 bytes)"},
    {"data_fewer_bytes_than_streams", "train {tiny} --steps 2 --run-dir {dir} --data {onebyte}", 1,
     "corpus '{onebyte}' has 1 bytes, fewer than the 4 streams"},
    // train: data and model flags
    {"batch_size_zero", "train --steps 2 --run-dir {dir} --batch-size 0", 2, "--batch-size must be positive, got 0"},
    {"block_size_zero", "train --steps 2 --run-dir {dir} --block-size 0", 2, "--block-size must be positive, got 0"},
    {"layers_zero", "train --steps 2 --run-dir {dir} --layers 0", 2, "--layers must be positive, got 0"},
    {"d_model_zero", "train --steps 2 --run-dir {dir} --d-model 0", 2, "--d-model must be positive, got 0"},
    {"heads_zero", "train --steps 2 --run-dir {dir} --heads 0", 2, "--heads must be positive, got 0"},
    {"d_model_not_divisible_by_heads", "train --steps 2 --run-dir {dir} --d-model 30 --heads 4", 2,
     "--d-model 30 is not divisible by --heads 4"},
    {"ff_size_zero", "train --steps 2 --run-dir {dir} --ff-size 0", 2, "--ff-size must be positive, got 0"},
    {"attn_span_zero", "train --steps 2 --run-dir {dir} --attn-span 0", 2, "--attn-span must be positive, got 0"},
    {"span_ramp_zero", "train --steps 2 --run-dir {dir} --span-ramp 0", 2, "--span-ramp must be positive, got 0"},
    {"span_init_above_one", "train --steps 2 --run-dir {dir} --span-init 1.5", 2,
     "--span-init must be in [0, 1], got 1.5"},
    {"span_init_negative", "train --steps 2 --run-dir {dir} --span-init -0.1", 2,
     "--span-init must be in [0, 1], got -0.1"},
    {"span_init_heads_count", "train --steps 2 --run-dir {dir} --d-model 32 --heads 2 --span-init-heads 5,60,10", 2,
     "--span-init-heads has 3 values for 2 heads"},
    {"span_init_heads_beyond_span",
     "train --steps 2 --run-dir {dir} --d-model 32 --heads 2 --attn-span 64 --span-init-heads 5,100", 2,
     "--span-init-heads values must be in [0, --attn-span]"},
    {"span_init_heads_not_numbers", "train --steps 2 --run-dir {dir} --span-init-heads 5,x", 2,
     "--span-init-heads: 'x' is not a number"},
    {"span_loss_coeff_negative", "train --steps 2 --run-dir {dir} --span-loss-coeff -1", 2,
     "--span-loss-coeff must be >= 0, got -1"},
    {"dropout_one", "train --steps 2 --run-dir {dir} --dropout 1", 2, "--dropout must be in [0, 1), got 1"},
    {"cache_unknown", "train --steps 2 --run-dir {dir} --cache disk", 2, "--cache: unknown cache mode 'disk'"},
    {"attention_unknown", "train --steps 2 --run-dir {dir} --attention foo", 2, "--attention: unknown attention 'foo'"},
    {"span_mode_unknown", "train --steps 2 --run-dir {dir} --span-mode foo", 2, "--span-mode: unknown span mode 'foo'"},
    {"span_mode_dynamic_not_adaptive", "train --steps 2 --run-dir {dir} --span-mode dynamic --attention fixed", 2,
     "--span-mode dynamic needs --attention adaptive"},
    {"normalizer_unknown", "train --steps 2 --run-dir {dir} --normalizer foo", 2,
     "--normalizer: unknown normalizer 'foo'"},
    {"asentmax_scale_unknown", "train --steps 2 --run-dir {dir} --asentmax-scale foo", 2,
     "--asentmax-scale: unknown asentmax scale 'foo'"},
    {"sparse_stride_zero", "train --steps 2 --run-dir {dir} --attention sparse-fixed --sparse-stride 0", 2,
     "--sparse-stride must be positive, got 0"},
    {"sparse_stride_not_dividing_block",
     "train --steps 2 --run-dir {dir} --block-size 32 --attention sparse-fixed --sparse-stride 5", 2,
     "--block-size 32 is not a multiple of --sparse-stride 5"},
    // train: optimisation flags
    {"optimizer_unknown", "train --steps 2 --run-dir {dir} --optimizer sgd", 2,
     "--optimizer 'sgd' is not adagrad or adam"},
    {"lr_zero", "train --steps 2 --run-dir {dir} --lr 0", 2, "--lr must be positive, got 0"},
    {"warmup_steps_negative", "train --steps 2 --run-dir {dir} --warmup-steps -1", 2,
     "--warmup-steps must be >= 0, got -1"},
    {"grad_clip_negative", "train --steps 2 --run-dir {dir} --grad-clip -1", 2,
     "--grad-clip must be >= 0 (0 = off), got -1"},
    {"grad_accum_zero", "train --steps 2 --run-dir {dir} --grad-accum 0", 2, "--grad-accum must be positive, got 0"},
    {"grad_accum_not_dividing_streams", "train --steps 2 --run-dir {dir} --batch-size 4 --grad-accum 3", 2,
     "--grad-accum 3 does not divide the 4 streams of each rank"},
    // train: run flags
    {"steps_zero", "train --steps 0 --run-dir {dir}", 2, "--steps must be positive, got 0"},
    {"threads_negative", "train --steps 2 --run-dir {dir} --threads -1", 2,
     "--threads must be >= 0 (0 = all cores), got -1"},
    {"device_unknown", "train --steps 2 --run-dir {dir} --device tpu", 2, "--device 'tpu' is not cpu, cuda or cuda:N"},
    {"device_cuda_without_gpu", "train --steps 2 --run-dir {dir} --device cuda", 2,
     "--device cuda: this build's LibTorch has no CUDA or no GPU is visible", kNoGpu},
    {"precision_unknown", "train --steps 2 --run-dir {dir} --precision fp16", 2,
     "unknown precision 'fp16' (expected fp32 or bf16)"},
    {"log_every_zero", "train --steps 2 --run-dir {dir} --log-every 0", 2, "--log-every must be positive, got 0"},
    {"eval_every_negative", "train --steps 2 --run-dir {dir} --eval-every -1", 2,
     "--eval-every must be >= 0 (0 = never), got -1"},
    {"eval_steps_zero", "train --steps 2 --run-dir {dir} --eval-steps 0", 2, "--eval-steps must be positive, got 0"},
    // train: checkpoints, resuming and the run dir
    {"checkpoint_every_negative", "train --steps 2 --run-dir {dir} --checkpoint-every -1", 2,
     "--checkpoint-every must be >= 0 (0 = never), got -1"},
    {"checkpoint_minutes_negative", "train --steps 2 --run-dir {dir} --checkpoint-minutes -1", 2,
     "--checkpoint-minutes must be >= 0 (0 = none), got -1"},
    {"keep_checkpoints_negative", "train --steps 2 --run-dir {dir} --keep-checkpoints -1", 2,
     "--keep-checkpoints must be >= 0 (0 = keep all), got -1"},
    {"fresh_with_resume", "train --steps 2 --run-dir {dir} --fresh --resume auto", 2,
     "--fresh and --resume exclude each other"},
    {"resume_missing", "train --steps 2 --run-dir {dir} --resume {missing}", 2, "--resume: no such file '{missing}'"},
    {"resume_directory", "train --steps 2 --run-dir {dir} --resume {folder}", 2, "--resume: '{folder}' is not a file"},
    {"resume_empty", "train --steps 2 --run-dir {dir} --resume {empty}", 2, "--resume: '{empty}' is empty (0 bytes)"},
    {"resume_not_hdf5", "train {tiny} --steps 2 --run-dir {run} --resume {text}", 2,
     "--resume '{text}': HDF5 '{text}': cannot open for reading"},
    {"resume_hdf5_not_a_checkpoint", "train {tiny} --steps 2 --run-dir {run} --resume {plain}", 2,
     "'{plain}' is not a complete adaspan checkpoint"},
    {"resume_future_format", "train {tiny} --steps 2 --run-dir {run} --resume {future}", 2,
     "'{future}' has checkpoint format 99; this adaspan reads up to"},
    {"resume_damaged", "train {tiny} --steps 4 --run-dir {run} --resume {damaged}", 2,
     "cannot read dataset 'model/key_pe' (checksum mismatch"},
    {"resume_other_shape",
     "train --layers 1 --d-model 64 --heads 2 --ff-size 64 --attn-span 64 --block-size 32 --batch-size 4 --threads 1"
     " --steps 4 --run-dir {run} --resume {run}/ckpt-2.h5",
     2, "--d-model is 32 in the checkpoint, 64 here"},
    {"resume_other_optimizer", "train {tiny} --steps 4 --run-dir {run} --resume {run}/ckpt-2.h5 --optimizer adam", 2,
     "--optimizer is \"adagrad\" in the checkpoint, \"adam\" here"},
    {"resume_other_attention", "train {tiny} --steps 4 --run-dir {run} --resume {run}/ckpt-2.h5 --attention fixed", 2,
     "--attention is \"adaptive\" in the checkpoint, \"fixed\" here"},
    {"resume_other_data", "train {tiny} --steps 4 --run-dir {run} --resume {run}/ckpt-2.h5 --data {text}", 2,
     "the checkpoint's data-identity is"},
    {"resume_past_steps", "train {tiny} --steps 1 --run-dir {run} --resume {run}/ckpt-2.h5", 2,
     "it is at step 2, past --steps 1 (the step to stop at)"},
    {"run_dir_holds_earlier_run", "train {tiny} --steps 2 --run-dir {run}", 2,
     "run dir '{run}' holds an earlier run (ckpt-2.h5, latest, metrics.jsonl)"},
    {"run_dir_in_use", "train {tiny} --steps 4 --run-dir {busy} --resume auto", 2, "run dir '{busy}' is in use by"},
    {"run_dir_under_a_file", "train {tiny} --steps 2 --run-dir {text}/sub", 2,
     "cannot create run dir '{text}/sub': Not a directory"},
    // train: fault tolerance flags
    {"step_timeout_negative", "train --steps 2 --run-dir {dir} --step-timeout -1", 2,
     "--step-timeout must be >= 0 (0 = no watchdog), got -1"},
    {"max_bad_steps_negative", "train --steps 2 --run-dir {dir} --max-bad-steps -1", 2,
     "--max-bad-steps must be >= 0, got -1"},
    {"rollback_lr_steps_negative", "train --steps 2 --run-dir {dir} --rollback-lr-steps -1", 2,
     "--rollback-lr-steps must be >= 0, got -1"},
    {"fail_at_step_negative", "train --steps 2 --run-dir {dir} --fail-at-step -1", 2,
     "--fail-at-step must be >= 0 (0 = none), got -1"},
    {"fail_mode_unknown", "train --steps 2 --run-dir {dir} --fail-mode boom", 2,
     "--fail-mode 'boom' is not crash, hang, collective, nan, signal or checkpoint"},
    {"fail_count_zero", "train --steps 2 --run-dir {dir} --fail-count 0", 2, "--fail-count must be >= 1, got 0"},
    {"fail_rank_not_integer", "train --steps 2 --run-dir {dir} --fail-rank x", 2, "--fail-rank: 'x' is not an integer"},
    // train: parallelism flags (one process)
    {"tp_zero", "train --steps 2 --run-dir {dir} --tp 0", 2, "--tp must be >= 1, got 0"},
    {"heads_not_divisible_by_tp", "train --steps 2 --run-dir {dir} --heads 2 --tp 3", 2,
     "--heads 2 is not divisible by --tp 3"},
    {"ff_size_not_divisible_by_tp", "train --steps 2 --run-dir {dir} --d-model 32 --heads 2 --ff-size 63 --tp 2", 2,
     "--ff-size 63 is not divisible by --tp 2"},
    {"tp_hidden_cache_with_checkpoints", "train --steps 2 --run-dir {dir} --tp 2 --cache hidden --checkpoint-every 1",
     2, "checkpoints with --tp > 1 need --cache kv"},
    {"tp_more_than_world", "train --steps 2 --run-dir {dir} --d-model 32 --heads 2 --ff-size 64 --tp 2", 2,
     "world size 1 is not divisible by --tp 2"},
    {"rebalance_without_tp", "train --steps 2 --run-dir {dir} --rebalance-every 5", 2,
     "--rebalance-every needs --tp >= 2"},
    {"rebalance_hidden_cache",
     "train --steps 2 --run-dir {dir} --rebalance-every 5 --tp 2 --cache hidden --checkpoint-every 0", 2,
     "--rebalance-every needs --cache kv"},
    {"rebalance_every_negative", "train --steps 2 --run-dir {dir} --rebalance-every -1", 2,
     "--rebalance-every must be >= 0 (0 = never), got -1"},
    {"rebalance_threshold_one", "train --steps 2 --run-dir {dir} --rebalance-threshold 1", 2,
     "--rebalance-threshold must be in [0, 1), got 1"},
    {"dp_backend_unknown", "train --steps 2 --run-dir {dir} --dp-backend gloo", 2,
     "--dp-backend 'gloo' is not auto, mpi or nccl"},
    {"dp_backend_nccl_on_cpu", "train --steps 2 --run-dir {dir} --dp-backend nccl", 2, "--dp-backend nccl"},
    {"bucket_mb_zero", "train --steps 2 --run-dir {dir} --bucket-mb 0", 2, "--bucket-mb must be positive, got 0"},
    {"zero_two", "train --steps 2 --run-dir {dir} --zero 2", 2, "--zero must be in [0, 1], got 2"},
    // eval
    {"eval_nothing", "eval", 2, "--checkpoint and --data are required"},
    {"eval_without_data", "eval --checkpoint {ckpt}", 2, "--checkpoint and --data are required"},
    {"eval_without_checkpoint", "eval --data {text}", 2, "--checkpoint and --data are required"},
    {"eval_unknown_flag", "eval --checkpoint {ckpt} --data {text} --bogus", 2, "unrecognised option '--bogus'"},
    {"eval_switch_with_value", "eval --checkpoint {ckpt} --data {text} --json=maybe", 2,
     "option '--json' does not take any arguments"},
    {"eval_batch_size_negative", "eval --checkpoint {ckpt} --data {text} --batch-size -1", 2,
     "--batch-size must be >= 0, got -1"},
    {"eval_block_size_not_integer", "eval --checkpoint {ckpt} --data {text} --block-size x", 2,
     "--block-size: 'x' is not an integer"},
    {"eval_attn_span_negative", "eval --checkpoint {ckpt} --data {text} --attn-span -1", 2,
     "--attn-span must be >= 0, got -1"},
    {"eval_threads_negative", "eval --checkpoint {ckpt} --data {text} --threads -1", 2,
     "--threads must be >= 0, got -1"},
    {"eval_checkpoint_missing", "eval --checkpoint {missing} --data {text}", 1,
     "HDF5 '{missing}': cannot open for reading (missing, truncated or not HDF5)"},
    {"eval_checkpoint_directory", "eval --checkpoint {folder} --data {text}", 1,
     "HDF5 '{folder}': cannot open for reading"},
    {"eval_checkpoint_not_hdf5", "eval --checkpoint {text} --data {text}", 1, "HDF5 '{text}': cannot open for reading"},
    {"eval_checkpoint_hdf5_not_a_checkpoint", "eval --checkpoint {plain} --data {text}", 1,
     "'{plain}' is not a complete adaspan checkpoint"},
    {"eval_checkpoint_future_format", "eval --checkpoint {future} --data {text}", 1,
     "'{future}' has checkpoint format 99"},
    {"eval_checkpoint_damaged", "eval --checkpoint {damaged} --data {text}", 1,
     "cannot read dataset 'model/key_pe' (checksum mismatch"},
    {"eval_checkpoint_config_not_json", "eval --checkpoint {badjson} --data {text}", 1, "[json.exception.parse_error"},
    {"eval_checkpoint_without_a_dataset", "eval --checkpoint {nokey} --data {text}", 1,
     "'{nokey}' has no dataset 'model/key_pe'"},
    {"eval_data_missing", "eval --checkpoint {ckpt} --data {missing}", 1,
     "cannot open data file '{missing}': No such file or directory"},
    {"eval_data_directory", "eval --checkpoint {ckpt} --data {folder}", 1,
     "data file '{folder}' is not a regular file"},
    {"eval_data_empty", "eval --checkpoint {ckpt} --data {empty}", 1, "data file '{empty}' is empty (0 bytes)"},
    {"eval_data_shorter_than_streams", "eval --checkpoint {ckpt} --data {onebyte}", 1,
     "evaluation needs at least 2 bytes per stream: 1 bytes, 4 streams"},
    {"eval_attn_span_below_trained", "eval --checkpoint {ckpt} --data {text} --attn-span 32", 1,
     "--attn-span 32 is below the checkpoint's 64"},
    {"eval_attn_span_dynamic_spans", "eval --checkpoint {dyn} --data {text} --attn-span 128", 1,
     "--attn-span cannot change S of a model with dynamic spans"},
    {"eval_focus_size_mismatch", "eval --checkpoint {ckpt} --data {text} --focus {onebyte}", 1,
     "--focus {onebyte} has 1 bytes, the data 4000"},
    {"eval_focus_missing", "eval --checkpoint {ckpt} --data {text} --focus {missing}", 1,
     "cannot open data file '{missing}'"},
    // generate
    {"generate_nothing", "generate", 2, "--checkpoint is required"},
    {"generate_without_prompt", "generate --checkpoint {ckpt}", 2, "--prompt is required and must not be empty"},
    {"generate_empty_prompt", "generate --checkpoint {ckpt} --prompt ''", 2,
     "--prompt is required and must not be empty"},
    {"generate_top_k_above_256", "generate --checkpoint {ckpt} --prompt hi --top-k 300", 2,
     "--top-k must be in [0, 256], got 300"},
    {"generate_top_k_negative", "generate --checkpoint {ckpt} --prompt hi --top-k -1", 2,
     "--top-k must be in [0, 256], got -1"},
    {"generate_bytes_negative", "generate --checkpoint {ckpt} --prompt hi --bytes -1", 2,
     "--bytes must be >= 0, got -1"},
    {"generate_temperature_negative", "generate --checkpoint {ckpt} --prompt hi --temperature -0.5", 2,
     "--temperature must be >= 0, got -0.5"},
    {"generate_temperature_not_number", "generate --checkpoint {ckpt} --prompt hi --temperature hot", 2,
     "--temperature: 'hot' is not a number"},
    {"generate_unknown_flag", "generate --checkpoint {ckpt} --prompt hi --bogus", 2, "unrecognised option '--bogus'"},
    {"generate_checkpoint_missing", "generate --checkpoint {missing} --prompt hi", 1,
     "HDF5 '{missing}': cannot open for reading"},
    {"generate_checkpoint_hdf5_not_a_checkpoint", "generate --checkpoint {plain} --prompt hi", 1,
     "'{plain}' is not a complete adaspan checkpoint"},
    {"generate_checkpoint_damaged", "generate --checkpoint {damaged} --prompt hi", 1,
     "cannot read dataset 'model/key_pe' (checksum mismatch"},
    // inspect
    {"inspect_nothing", "inspect", 2, "name a checkpoint file"},
    {"inspect_two_files", "inspect {ckpt} {ckpt}", 2, "too many positional options"},
    {"inspect_unknown_flag", "inspect {ckpt} --bogus", 2, "unrecognised option '--bogus'"},
    {"inspect_missing", "inspect {missing}", 1, "HDF5 '{missing}': cannot open for reading"},
    {"inspect_empty_file", "inspect {empty}", 1, "HDF5 '{empty}': cannot open for reading"},
    {"inspect_directory", "inspect {folder}", 1, "HDF5 '{folder}': cannot open for reading"},
    {"inspect_not_hdf5", "inspect {text}", 1, "HDF5 '{text}': cannot open for reading"},
    {"inspect_truncated", "inspect {truncated}", 1, "HDF5 '{truncated}': cannot open for reading"},
    {"inspect_hdf5_not_a_checkpoint", "inspect {plain}", 1, "'{plain}' is not a complete adaspan checkpoint"},
    {"inspect_future_format", "inspect {future}", 1, "'{future}' has checkpoint format 99"},
    {"inspect_damaged", "inspect {damaged}", 1, "cannot read dataset 'model/key_pe' (checksum mismatch"},
    {"inspect_config_not_json", "inspect {badjson}", 1, "[json.exception.parse_error"},
    // report
    {"report_nothing", "report", 2, "name the run directory: adaspan report RUN_DIR"},
    {"report_two_dirs", "report {folder} {folder}", 2, "too many positional options"},
    {"report_unknown_flag", "report --bogus", 2, "unrecognised option '--bogus'"},
    {"report_missing_dir", "report {missing}", 1, "no metrics.jsonl in '{missing}'", kMatplotlib},
    {"report_dir_without_metrics", "report {folder}", 1, "no metrics.jsonl in '{folder}'", kMatplotlib},
    // launch
    {"launch_nothing", "launch", 2, "give the command after --"},
    {"launch_empty_command", "launch --", 2, "give the command after --"},
    {"launch_command_without_separator", "launch true", 2, "too many positional options"},
    {"launch_unknown_flag", "launch --bogus -- true", 2, "unrecognised option '--bogus'"},
    {"launch_max_restarts_negative", "launch --max-restarts -1 -- true", 2, "--max-restarts must be >= 0, got -1"},
    {"launch_max_restarts_not_integer", "launch --max-restarts x -- true", 2, "--max-restarts: 'x' is not an integer"},
    {"launch_backoff_negative", "launch --backoff -1 -- true", 2, "--backoff must be >= 0, got -1"},
    // prepare
    {"prepare_nothing", "prepare", 2, "unknown dataset '' (supported: enwik8, builtin)"},
    {"prepare_unknown_dataset", "prepare enwik9 --out {dir}", 2,
     "unknown dataset 'enwik9' (supported: enwik8, builtin)"},
    {"prepare_two_datasets", "prepare builtin enwik8 --out {dir}", 2, "too many positional options"},
    {"prepare_builtin_without_out", "prepare builtin", 2, "--out is required"},
    {"prepare_enwik8_without_zip", "prepare enwik8 --out {dir}", 2, "--zip and --out are required"},
    {"prepare_builtin_with_zip", "prepare builtin --zip {text} --out {dir}", 2,
     "--zip, --valid-bytes and --test-bytes are enwik8's"},
    {"prepare_builtin_with_valid_bytes", "prepare builtin --valid-bytes 5 --out {dir}", 2,
     "--zip, --valid-bytes and --test-bytes are enwik8's"},
    {"prepare_valid_bytes_negative", "prepare enwik8 --zip {zip_small} --out {dir} --valid-bytes -2", 2,
     "--valid-bytes: '-2' is negative"},
    {"prepare_zip_missing", "prepare enwik8 --zip {missing} --out {dir}", 1,
     "cannot open zip '{missing}': No such file"},
    {"prepare_zip_not_a_zip", "prepare enwik8 --zip {text} --out {dir}", 1,
     "cannot open zip '{text}': Not a zip archive"},
    {"prepare_zip_without_enwik8", "prepare enwik8 --zip {zip_nomember} --out {dir}", 1,
     "zip '{zip_nomember}' has no member 'enwik8'"},
    {"prepare_zip_too_small", "prepare enwik8 --zip {zip_small} --out {dir}", 1,
     "'enwik8' has 10 bytes, not more than valid + test"},
    {"prepare_out_under_a_file", "prepare builtin --out {text}/sub", 1, "cannot create directories: Not a directory"},
    {"config_directory", "train --steps 2 --run-dir {dir} --config {folder}", 2, "--config: '{folder}' is not a file"},
    {"eval_device_unknown", "eval --checkpoint {ckpt} --data {text} --device tpu", 2,
     "--device 'tpu' is not cpu, cuda or cuda:N"},
    {"report_metrics_without_records", "report {empty_run}", 1, "holds no metrics records", kMatplotlib},
    {"generate_device_unknown", "generate --checkpoint {ckpt} --prompt hi --device cuda:x", 2,
     "--device 'cuda:x' is not cpu, cuda or cuda:N"},
    {"eval_device_cuda_without_gpu", "eval --checkpoint {ckpt} --data {text} --device cuda", 2,
     "--device cuda: this build's LibTorch has no CUDA or no GPU is visible", kNoGpu},
    {"generate_device_cuda_without_gpu", "generate --checkpoint {ckpt} --prompt hi --device cuda", 2,
     "--device cuda: this build's LibTorch has no CUDA or no GPU is visible", kNoGpu},
    {"inspect_checkpoint_without_a_dataset", "inspect {nokey}", 1, "'{nokey}' has no dataset 'model/key_pe'"},
    {"resume_path_into_a_new_run_dir", "train {tiny} --steps 4 --run-dir {dir} --resume {ckpt} --optimizer adam", 2,
     "--optimizer is \"adagrad\" in the checkpoint, \"adam\" here"},
    {"unknown_command", "frobnicate", 2, "unknown command 'frobnicate' (train, eval, generate, inspect, report"},
    {"launch_command_not_found", "launch -- {missing}", 2, "cannot run '{missing}': No such file or directory"},
    {"launch_command_not_on_path", "launch -- no-such-program-adaspan", 2,
     "cannot run 'no-such-program-adaspan': not found on PATH"},
    {"cp_not_dividing_the_block", "train --steps 2 --run-dir {dir} --block-size 128 --cp 3", 2,
     "--block-size 128 is not divisible by --cp 3"},
    {"cp_chunk_not_a_multiple_of_64", "train --steps 2 --run-dir {dir} --block-size 96 --cp 2", 2,
     "--cp 2 cuts --block-size 96 into chunks of 48 positions, not a multiple of 64"},
    {"cp_with_hidden_cache", "train --steps 2 --run-dir {dir} --block-size 128 --cp 2 --cache hidden", 2,
     "--cp > 1 needs --cache kv"},
    {"cp_more_than_the_ranks", "train --steps 2 --run-dir {dir} --block-size 128 --cp 2", 2,
     "world size 1 is not divisible by --tp 1 x --cp 2"},
    {"eval_cp_more_than_the_ranks", "eval --checkpoint {ckpt} --data {text} --cp 2", 1,
     "world size 1 is not divisible by --cp 2"},
    {"import_unknown_format", "import frobnicate {missing} --out {dir} --reference-data {folder}", 2,
     "unknown format 'frobnicate' (reference)"},
    {"import_nothing", "import reference", 2,
     "name the reference checkpoint: adaspan import reference CKPT.pt --out RUN_DIR"},
    {"import_without_reference_data", "import reference {missing} --out {dir}", 2, "--reference-data DIR is required"},
    {"import_missing_checkpoint", "import reference {missing} --out {dir} --reference-data {folder}", 1,
     "no reference checkpoint '{missing}'", kTorch},
    {"import_not_a_checkpoint", "import reference {text} --out {dir} --reference-data {folder}", 1,
     "'{text}' is not a readable torch checkpoint", kTorch},
    {"export_nothing", "export reference", 2,
     "name the checkpoint: adaspan export reference CHECKPOINT --out model.pt"},
    {"export_not_a_checkpoint", "export reference {text} --out {folder}/m.pt --reference-data {folder}", 1,
     "'{text}' is not a readable HDF5 file", kTorch},
    {"export_nbatches_zero", "export reference {ckpt} --out {folder}/m.pt --reference-data {folder} --nbatches 0", 2,
     "--nbatches must be at least 1"},
};

// ---- What the rows read: files made for each row, checkpoints trained once per process ----

const char* const kTiny =
    "--layers 1 --d-model 32 --heads 2 --ff-size 64 --attn-span 64 --block-size 32 --batch-size 4 --threads 1";

// The run dirs of the shared checkpoints, removed when the process ends.
struct SharedRuns {
  std::map<std::string, fs::path> dirs;
  ~SharedRuns() {
    std::error_code ec;
    for (const auto& [name, dir] : dirs) fs::remove_all(dir, ec);
  }
};

SharedRuns& shared_runs() {
  static SharedRuns runs;
  return runs;
}

// The run dir of `train {tiny} --steps 2 EXTRA`, trained on first use (ckpt-2.h5 in it).
void trained_run(const std::string& name, const std::string& extra, fs::path* dir) {
  auto& dirs = shared_runs().dirs;
  if (!dirs.count(name)) {
    const fs::path run = testing::fresh_dir("badinput", "shared_" + name, false);
    const auto r = testing::run_adaspan(std::string("train ") + kTiny + " --steps 2 --run-dir " + run.string() + extra);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(fs::exists(run / "ckpt-2.h5"));
    dirs[name] = run;
  }
  *dir = dirs[name];
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

std::string text_bytes(size_t n) {
  const std::string line = "the quick brown fox jumps over the lazy dog; ";
  std::string out;
  while (out.size() < n) out += line;
  out.resize(n);
  return out;
}

void write_int_attribute(hid_t file, const char* name, int64_t value) {
  const hid_t space = H5Screate(H5S_SCALAR);
  const hid_t a = H5Acreate2(file, name, H5T_NATIVE_INT64, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT64, &value);
  H5Aclose(a);
  H5Sclose(space);
}

// An HDF5 file with one small dataset; with `format`, also the attributes of a finished checkpoint
// of that format version (and nothing else).
void write_hdf5(const fs::path& path, int64_t format = 0) {
  const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  const hsize_t dims[1] = {3};
  const int64_t values[3] = {1, 2, 3};
  const hid_t space = H5Screate_simple(1, dims, nullptr);
  const hid_t d = H5Dcreate2(f, "x", H5T_NATIVE_INT64, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, values);
  H5Dclose(d);
  H5Sclose(space);
  if (format > 0) {
    write_int_attribute(f, "format_version", format);
    write_int_attribute(f, "complete", 1);
  }
  ASSERT_GE(H5Fclose(f), 0);
}

// Flips a byte inside the first chunk of `dataset` (its Fletcher32 checksum no longer matches).
void damage_dataset(const fs::path& path, const char* dataset) {
  const haddr_t address = testing::first_chunk_address(path.string(), dataset);
  ASSERT_NE(address, HADDR_UNDEF);
  std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
  io.seekg(static_cast<std::streamoff>(address + 8));
  char byte = 0;
  io.read(&byte, 1);
  byte = static_cast<char>(byte ^ 0x5a);
  io.seekp(static_cast<std::streamoff>(address + 8));
  io.write(&byte, 1);
}

// Replaces the root attribute `config` (the stored config JSON) with `text`.
void replace_config(const fs::path& path, const std::string& text) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  ASSERT_GE(H5Adelete(f, "config"), 0);
  const hid_t space = H5Screate(H5S_SCALAR);
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, text.size());
  const hid_t a = H5Acreate2(f, "config", type, space, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(H5Awrite(a, type, text.c_str()), 0);
  H5Aclose(a);
  H5Tclose(type);
  H5Sclose(space);
  ASSERT_GE(H5Fclose(f), 0);
}

void remove_dataset(const fs::path& path, const char* dataset) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  ASSERT_GE(H5Ldelete(f, dataset, H5P_DEFAULT), 0);
  ASSERT_GE(H5Fclose(f), 0);
}

void write_zip(const fs::path& path, const std::string& member, const std::string& bytes) {
  int error = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  ASSERT_NE(z, nullptr) << error;
  zip_source_t* source = zip_source_buffer(z, bytes.data(), bytes.size(), 0);
  ASSERT_GE(zip_file_add(z, member.c_str(), source, ZIP_FL_OVERWRITE), 0);
  ASSERT_EQ(zip_close(z), 0);
}

// Every file and directory under `root`, with the size of each file but the run dirs' .lock
// (rewritten by every run that takes the lock).
std::map<std::string, uintmax_t> listing(const fs::path& root) {
  std::map<std::string, uintmax_t> out;
  if (!fs::exists(root)) return out;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    const bool sized = entry.is_regular_file() && entry.path().filename() != ".lock";
    out[fs::relative(entry.path(), root).string()] = sized ? entry.file_size() : 0;
  }
  return out;
}

class BadInput : public ::testing::TestWithParam<Row> {
 protected:
  void TearDown() override {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    std::error_code ec;
    if (!scratch_.empty()) fs::remove_all(scratch_, ec);
  }

  // Makes what placeholder `key` names and records its value.
  void make(const std::string& key);
  void make_checkpoint_copy(const std::string& key);
  // `text` with every placeholder replaced, making each on first use.
  void substitute(std::string& text);

  fs::path scratch_;
  std::map<std::string, std::string> values_;
  std::set<fs::path> shared_used_;
  int lock_fd_ = -1;
};

void BadInput::make_checkpoint_copy(const std::string& key) {
  fs::path run;
  ASSERT_NO_FATAL_FAILURE(trained_run("adaptive", "", &run));
  const fs::path path = scratch_ / (key + ".h5");
  fs::copy_file(run / "ckpt-2.h5", path);
  if (key == "damaged") {
    ASSERT_NO_FATAL_FAILURE(damage_dataset(path, "model/key_pe"));
  } else if (key == "truncated") {
    fs::resize_file(path, fs::file_size(path) / 2);
  } else if (key == "badjson") {
    ASSERT_NO_FATAL_FAILURE(replace_config(path, "not json {"));
  } else if (key == "nokey") {
    ASSERT_NO_FATAL_FAILURE(remove_dataset(path, "model/key_pe"));
  }
  values_[key] = path.string();
}

void BadInput::make(const std::string& key) {
  const fs::path path = scratch_ / key;
  std::string value = path.string();
  if (key == "tiny") {
    value = kTiny;
  } else if (key == "dir" || key == "missing") {
    // nothing there
  } else if (key == "empty") {
    write_file(path, "");
  } else if (key == "onebyte") {
    write_file(path, "x");
  } else if (key == "text") {
    write_file(path, text_bytes(4000));
  } else if (key == "folder") {
    fs::create_directory(path);
  } else if (key == "empty_run") {  // a run dir whose metrics.jsonl holds no record
    fs::create_directory(path);
    write_file(path / "metrics.jsonl", "not json\n");
  } else if (key == "plain" || key == "future") {
    value += ".h5";
    ASSERT_NO_FATAL_FAILURE(write_hdf5(value, key == "future" ? 99 : 0));
  } else if (key == "ckpt" || key == "dyn") {
    fs::path run;
    ASSERT_NO_FATAL_FAILURE(
        trained_run(key == "dyn" ? "dynamic" : "adaptive", key == "dyn" ? " --span-mode dynamic" : "", &run));
    shared_used_.insert(run);
    value = (run / "ckpt-2.h5").string();
  } else if (key == "run" || key == "busy") {
    fs::path run;
    ASSERT_NO_FATAL_FAILURE(trained_run("adaptive", "", &run));
    fs::copy(run, path, fs::copy_options::recursive);
    if (key == "busy") {  // as a running training holds it
      lock_fd_ = ::open((path / ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      ASSERT_GE(lock_fd_, 0);
      ASSERT_EQ(::flock(lock_fd_, LOCK_EX | LOCK_NB), 0);
    }
  } else if (key == "damaged" || key == "truncated" || key == "badjson" || key == "nokey") {
    ASSERT_NO_FATAL_FAILURE(make_checkpoint_copy(key));
    return;
  } else if (key == "unknown_cfg") {
    write_file(path, "layers = 1\nno-such-key = 3\n");
  } else if (key == "zero_cfg") {
    write_file(path, "layers = 0\n");
  } else if (key == "junk_cfg") {
    write_file(path, "just words\n");
  } else if (key == "zip_nomember" || key == "zip_small") {
    value += ".zip";
    ASSERT_NO_FATAL_FAILURE(write_zip(value, key == "zip_small" ? "enwik8" : "other", "0123456789"));
  } else {
    FAIL() << "unknown placeholder {" << key << "}";
  }
  values_[key] = value;
}

void BadInput::substitute(std::string& text) {
  static const std::regex placeholder(R"(\{([a-z_]+)\})");
  std::string out;
  std::smatch m;
  while (std::regex_search(text, m, placeholder)) {
    const std::string key = m[1];
    if (!values_.count(key)) {
      ASSERT_NO_FATAL_FAILURE(make(key));
    }
    out += m.prefix().str() + values_[key];
    text = m.suffix().str();
  }
  text = out + text;
}

TEST_P(BadInput, OneErrorLineExitStatusNothingWritten) {
  const Row& row = GetParam();
  if ((row.needs & kNoGpu) && at::hasCUDA()) GTEST_SKIP() << "a GPU is visible";
  if ((row.needs & kMatplotlib) &&
      std::system("timeout 60 python3 -c 'import matplotlib, h5py' > /dev/null 2>&1") != 0) {
    ADASPAN_SKIP_OUTSIDE_CI("python3 lacks matplotlib or h5py (scripts/setup.sh installs them)");
  }
  if ((row.needs & kTorch) && std::system("timeout 60 python3 -c 'import torch, h5py' > /dev/null 2>&1") != 0) {
    ADASPAN_SKIP_OUTSIDE_CI("python3 lacks torch or h5py (scripts/setup.sh installs them)");
  }
  scratch_ = testing::fresh_dir("badinput", row.name);
  std::string args = row.args, expected = row.expected;
  ASSERT_NO_FATAL_FAILURE(substitute(args));
  ASSERT_NO_FATAL_FAILURE(substitute(expected));

  std::map<fs::path, std::map<std::string, uintmax_t>> before;
  before[scratch_] = listing(scratch_);
  for (const auto& run : shared_used_) before[run] = listing(run);
  const testing::CommandResult r = testing::run_adaspan(args, 0, "", 120);

  EXPECT_EQ(r.exit_code, row.exit_code) << args << "\n" << r.err;
  EXPECT_EQ(r.out, "") << r.out;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("error"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(expected), std::string::npos) << "expected: " << expected << "\nstderr: " << r.err;
  if (values_.count("dir")) {
    EXPECT_FALSE(fs::exists(values_["dir"])) << values_["dir"] << " was created";
  }
  for (const auto& [dir, files] : before) EXPECT_EQ(listing(dir), files) << "files changed under " << dir;
}

INSTANTIATE_TEST_SUITE_P(Rows, BadInput, ::testing::ValuesIn(kRows),
                         [](const ::testing::TestParamInfo<Row>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace adaspan
