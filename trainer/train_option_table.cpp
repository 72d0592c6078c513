#include "trainer/train_option_table.h"

#include "model/mixed_precision.h"
#include "trainer/device_choice.h"

#include <sys/stat.h>

namespace adaspan::trainer {

// The model's enums travel as their names ("kv", "sparse-fixed"); parse errors name the value.
#define ADASPAN_ENUM_CODEC(Type, parse_fn)                                                    \
  template <>                                                                                 \
  struct Codec<Type> {                                                                        \
    static Type parse(const std::string& text) { return parse_fn(text); }                     \
    static std::string text(Type value) { return model::to_string(value); }                   \
    static nlohmann::json json(Type value) { return model::to_string(value); }                \
    static Type from_json(const nlohmann::json& j) { return parse_fn(j.get<std::string>()); } \
  };
ADASPAN_ENUM_CODEC(model::CacheMode, model::parse_cache_mode)
ADASPAN_ENUM_CODEC(model::AttentionKind, model::parse_attention_kind)
ADASPAN_ENUM_CODEC(model::SpanMode, model::parse_span_mode)
ADASPAN_ENUM_CODEC(model::NormalizerKind, model::parse_normalizer)
ADASPAN_ENUM_CODEC(model::AsentmaxScale, model::parse_asentmax_scale)
#undef ADASPAN_ENUM_CODEC

namespace {

using O = Option<TrainConfig>;
using model::AttentionKind;
using model::CacheMode;
using model::NormalizerKind;
using model::SpanMode;

template <class Field>
O opt(const std::string& name, Field field, std::string help) {
  return value<TrainConfig>(name, field, std::move(help));
}

// Every file exists, is a regular file and is not empty.
void require_readable(const std::vector<std::string>& files, const std::string& flag) {
  for (const auto& f : files) {
    struct stat st {};
    if (stat(f.c_str(), &st) != 0) throw std::invalid_argument("--" + flag + ": no such file '" + f + "'");
    if (!S_ISREG(st.st_mode)) throw std::invalid_argument("--" + flag + ": '" + f + "' is not a file");
    if (st.st_size == 0) throw std::invalid_argument("--" + flag + ": '" + f + "' is empty (0 bytes)");
  }
}

// `a` is divisible by `b` (both flags of the config), else "--a N is not divisible by --b M".
auto divisible(const char* a, int64_t (*get_a)(const TrainConfig&), const char* b, int64_t (*get_b)(const TrainConfig&),
               const char* why = "") {
  return [=](const TrainConfig& c) {
    if (get_b(c) > 0 && get_a(c) % get_b(c) != 0) {
      throw std::invalid_argument(std::string("--") + a + " " + std::to_string(get_a(c)) + " is not divisible by --" +
                                  b + " " + std::to_string(get_b(c)) + why);
    }
  };
}

// --no-NAME: a switch that turns a default-on field off (text and JSON say the switch's value).
template <class Field>
O negated_switch(const std::string& name, Field field, std::string help) {
  O o = opt(name, field, std::move(help));
  o.parse = [field](TrainConfig& c, const std::vector<std::string>& given) {
    field(c) = !given.empty() && !Codec<bool>::parse(given.back());
  };
  o.text = [field](const TrainConfig& c) { return Codec<bool>::text(!field(c)); };
  o.to_json = [field](const TrainConfig& c) { return nlohmann::json(!field(c)); };
  o.from_json = [field](TrainConfig& c, const nlohmann::json& j) { field(c) = !j.get<bool>(); };
  return o;
}

OptionTable<TrainConfig> data_options() {
  return {
      opt("data", FIELD(data.train_files),
          "Training corpus: one or more files, read as raw bytes and concatenated (memory-mapped, never loaded "
          "whole). Default: the built-in synthetic corpus (4 MiB, planted 200-900 byte dependencies).")
          .in("data")
          .stored("data")
          .check([](const TrainConfig& c) { require_readable(c.data.train_files, "data"); }),
      opt("valid-data", FIELD(data.valid_files),
          "Validation corpus files. Default: the built-in validation corpus when training on the built-in one, "
          "else no validation.")
          .in("data")
          .stored("data")
          .check([](const TrainConfig& c) { require_readable(c.data.valid_files, "valid-data"); }),
      opt("batch-size", FIELD(data.batch_size),
          "B: global number of parallel byte streams; stream k starts at byte k*N/B.")
          .in("data")
          .positive()
          .stored("data")
          .must_match(),
      opt("data-identity", FIELD(data.identity),
          "The training corpus's size and sampled hash (data/corpus_identity.h), computed at the start: a resume "
          "on other data is refused, on the same data under another path only noted.")
          .not_a_flag()
          .stored_since_later("data")
          .must_match_if_stored(),
      opt("block-size", FIELD(data.block_size), "M: bytes per stream per step (queries per block).")
          .in("data")
          .positive()
          .stored("data"),
  };
}

OptionTable<TrainConfig> model_options() {
  const auto attention_is = [](AttentionKind k) {
    return [k](const TrainConfig& c) { return c.model.attention == k; };
  };
  return {
      opt("vocab", FIELD(model.vocab), "Symbols (bytes).").not_a_flag().stored("model").must_match(),
      opt("layers", FIELD(model.layers), "Transformer layers.").in("model").positive().stored("model").must_match(),
      opt("d-model", FIELD(model.d_model), "Hidden size; divisible by --heads.")
          .in("model")
          .positive()
          .stored("model")
          .must_match(),
      opt("heads", FIELD(model.heads), "Attention heads per layer, each with its own span.")
          .in("model")
          .positive()
          .stored("model")
          .must_match()
          .check(divisible(
              "d-model", [](const TrainConfig& c) { return c.model.d_model; }, "heads",
              [](const TrainConfig& c) { return c.model.heads; })),
      opt("ff-size", FIELD(model.ff_size), "Inner size of the feed-forward (ReLU) sublayer.")
          .in("model")
          .positive()
          .stored("model")
          .must_match(),
      opt("attn-span", FIELD(model.attn_span), "S: the largest span (bytes) a head can learn; size of key_pe.")
          .in("model")
          .positive()
          .stored("model")
          .must_match(),
      opt("span-ramp", FIELD(model.span_ramp), "R: length (bytes) of the soft mask's linear ramp.")
          .in("model")
          .positive()
          .stored("model")
          .must_match(),
      opt("span-init", FIELD(model.span_init), "Initial span as a fraction of S, in [0, 1].")
          .in("model")
          .within(0, 1)
          .stored("model"),
      opt("span-init-heads", FIELD(model.span_init_heads),
          "Initial span of each head in bytes, comma-separated (one value per head, the same for every layer); "
          "overrides --span-init. For experiments and benchmarks with a planted span distribution.")
          .in("model")
          .stored_since_later("model")
          .check([](const TrainConfig& c) {
            const auto& z = c.model.span_init_heads;
            if (z.empty()) return;
            if (static_cast<int64_t>(z.size()) != c.model.heads) {
              throw std::invalid_argument("--span-init-heads has " + std::to_string(z.size()) + " values for " +
                                          std::to_string(c.model.heads) + " heads");
            }
            for (double v : z) {
              if (v < 0 || v > static_cast<double>(c.model.attn_span)) {
                throw std::invalid_argument("--span-init-heads values must be in [0, --attn-span]");
              }
            }
          }),
      opt("span-loss-coeff", FIELD(model.span_loss_coeff),
          "lambda of the L1 span penalty lambda*S*mean(span/S) per layer.")
          .in("model")
          .at_least(0)
          .stored("model"),
      opt("dropout", FIELD(model.dropout),
          "Dropout on attention probabilities and the feed-forward hidden layer, in [0, 1).")
          .in("model")
          .within(0, 1, true)
          .stored("model")
          .must_match(),
      opt("cache", FIELD(model.cache),
          "What layers keep between blocks: kv (each head's keys/values, trimmed to its span; memory follows "
          "spans, cached K/V are one step stale) or hidden (the reference's layer inputs, re-projected each step).")
          .in("model")
          .stored("model")
          .must_match(),
      opt("trim-hidden-cache", FIELD(model.trim_hidden_cache),
          "Hidden caches keep min(S, span + 64) rows (the reference's --adapt-span-cache), else all S.")
          .not_a_flag()
          .stored("model")
          .must_match(),
      opt("attention", FIELD(model.attention),
          "Which keys a head sees: adaptive (a learned span per head, or per token with --span-mode dynamic), "
          "fixed or full (the last --attn-span keys, nothing learned: the sliding-window and full-attention "
          "baselines, the same computation at the same S), sparse-fixed (the Sparse Transformer's fixed "
          "pattern within --attn-span: the --sparse-stride nearest keys plus every --sparse-stride-th position).")
          .in("model")
          .stored_since_later("model")
          .must_match(),
      opt("span-mode", FIELD(model.span_mode),
          "static (one span per head, as the reference) or dynamic (a span per token and head, "
          "z_t = S*sigmoid(v_h.x_t/sqrt(d_model) + b_h) from the layer input, starting at --span-init; L1 penalty "
          "on the mean z_t; cost follows the largest span of each 64-query tile; the kv cache keeps the widest "
          "window of the last block + 64). Needs --attention adaptive.")
          .in("model")
          .stored_since_later("model")
          .must_match()
          .check([](const TrainConfig& c) {
            if (c.model.span_mode == SpanMode::dynamic && c.model.attention != AttentionKind::adaptive) {
              throw std::invalid_argument("--span-mode dynamic needs --attention adaptive");
            }
          }),
      opt("normalizer", FIELD(model.normalizer),
          "softmax, entmax15 (exact sort-based 1.5-entmax: exact zeros) or asentmax (1.5-entmax of scores "
          "scaled per query by 1 + beta*(log n)^gamma (delta = 1), n = keys the query sees + 2, at most the "
          "window + 2; Vasylenko et al. 2025). The span mask applies as with softmax: mask, then renormalise.")
          .in("model")
          .stored_since_later("model")
          .must_match(),
      opt("asentmax-scale", FIELD(model.asentmax_scale),
          "With --normalizer asentmax, its beta and gamma: head (learned per head: beta ~ U(0.1,1), gamma ~ "
          "N(0,0.1)) or hidden (beta = softplus(W_b x), gamma = 2 tanh(W_g x) from the query's layer input).")
          .in("model")
          .stored_since_later("model")
          .must_match_when([](const TrainConfig& c) { return c.model.normalizer == NormalizerKind::asentmax; }),
      opt("sparse-stride", FIELD(model.sparse_stride),
          "c of --attention sparse-fixed: local keys and the stride of the summary positions (stream positions "
          "p with p mod c = c - 1); --block-size must be a multiple of it (so resumed caches keep the pattern).")
          .in("model")
          .stored_since_later("model")
          .must_match_when(attention_is(AttentionKind::sparse_fixed))
          .check([](const TrainConfig& c) {
            if (c.model.attention != AttentionKind::sparse_fixed) return;
            if (c.model.sparse_stride <= 0) {
              throw std::invalid_argument("--sparse-stride must be positive, got " +
                                          std::to_string(c.model.sparse_stride));
            }
            if (c.data.block_size % c.model.sparse_stride != 0) {
              throw std::invalid_argument("--block-size " + std::to_string(c.data.block_size) +
                                          " is not a multiple of --sparse-stride " +
                                          std::to_string(c.model.sparse_stride));
            }
          }),
  };
}

OptionTable<TrainConfig> optim_options() {
  return {
      opt("optimizer", FIELD(optim.optimizer),
          "adagrad (the reference's Adagrad, step clipped per tensor by --grad-clip) or adam (global-norm clip).")
          .in("optim")
          .one_of({"adagrad", "adam"})
          .stored("optim")
          .must_match(),
      opt("lr", FIELD(optim.lr), "Peak learning rate.").in("optim").positive().stored("optim"),
      opt("warmup-steps", FIELD(optim.warmup_steps), "Linear warmup: step n uses lr*min(1, n/warmup). 0 = none.")
          .in("optim")
          .at_least(0)
          .stored("optim"),
      opt("grad-clip", FIELD(optim.grad_clip), "Gradient clipping threshold (L2); 0 = off.")
          .in("optim")
          .at_least(0, "0 = off")
          .stored("optim"),
      opt("grad-accum", FIELD(optim.grad_accum),
          "K: each step accumulates K micro-batches of (--batch-size / ranks) / K streams (each with its own "
          "cache) before one update, which equals the update of the whole batch; activation memory / K. "
          "The reference's --batch-split.")
          .in("optim")
          .positive()
          .stored("optim"),
      opt("adam-beta1", FIELD(optim.adam_beta1), "Adam's beta1.").not_a_flag().stored("optim"),
      opt("adam-beta2", FIELD(optim.adam_beta2), "Adam's beta2.").not_a_flag().stored("optim"),
      opt("adam-eps", FIELD(optim.adam_eps), "Adam's epsilon.").not_a_flag().stored("optim"),
  };
}

OptionTable<TrainConfig> run_options() {
  return {
      opt("steps", FIELD(run.steps), "Optimizer steps: the step to stop at (also when resuming).")
          .in("run")
          .positive()
          .stored("run")
          .changes_on_resume(),
      opt("seed", FIELD(run.seed), "Seed of parameter init and dropout.").in("run").stored("run"),
      opt("threads", FIELD(run.threads),
          "CPU threads for ATen (OpenBLAS is pinned to 1). 0 = the cores of the node divided by its ranks.")
          .in("run")
          .at_least(0, "0 = all cores"),
      opt("device", FIELD(run.device),
          "Where the model runs: cpu, or cuda / cuda:N when LibTorch has CUDA and a GPU is present.")
          .in("run")
          .stored("run")
          .check([](const TrainConfig& c) { require_device(c.run.device); }),
      opt("precision", FIELD(run.precision),
          "fp32, or bf16: the forward pass under bf16 autocast (matrix products in bf16, softmax and losses in "
          "fp32), attention kernels and spans in fp32; parameters, gradients and optimizer state stay fp32.")
          .in("run")
          .check([](const TrainConfig& c) { model::parse_precision(c.run.precision); }),
      opt("run-dir", FIELD(run.run_dir), "Directory for metrics.jsonl and checkpoints (created).")
          .in("run")
          .stored("run")
          .changes_on_resume(),
      opt("log-every", FIELD(run.log_every), "Steps between metrics records (bpc averaged over them).")
          .in("run")
          .positive(),
      opt("eval-every", FIELD(run.eval_every), "Steps between validation passes; 0 = never.")
          .in("run")
          .at_least(0, "0 = never"),
      opt("eval-steps", FIELD(run.eval_steps),
          "Blocks per validation pass, from the validation streams' starts with an empty cache.")
          .in("run")
          .positive(),
  };
}

OptionTable<TrainConfig> checkpoint_options() {
  return {
      opt("checkpoint-every", FIELD(run.checkpoint_every),
          "Steps between checkpoints RUN_DIR/ckpt-STEP.h5 (and one at the last step, see --no-final-checkpoint); "
          "0 = none. Written "
          "collectively by all ranks, atomically (a .tmp file renamed when complete; RUN_DIR/latest names the "
          "newest).")
          .in("checkpoints")
          .at_least(0, "0 = never")
          .stored("run"),
      opt("checkpoint-minutes", FIELD(run.checkpoint_minutes),
          "Minutes between checkpoints, besides --checkpoint-every: when this long has passed since the last "
          "one on any rank's clock, every rank checkpoints at the end of the same step. 0 = none.")
          .in("checkpoints")
          .at_least(0, "0 = none")
          .stored_since_later("run"),
      negated_switch("no-final-checkpoint", FIELD(run.final_checkpoint),
                     "Do not write the checkpoint at the last step (written by default, so that every finished run "
                     "can be evaluated, sampled and resumed).")
          .in("checkpoints")
          .stored_since_later("run"),
      opt("keep-checkpoints", FIELD(run.keep_checkpoints),
          "Newest checkpoints of this run kept in RUN_DIR; its older ones are deleted (another run's files never). "
          "0 = keep all.")
          .in("checkpoints")
          .at_least(0, "0 = keep all")
          .stored("run"),
      opt("async-checkpoint", FIELD(run.async_checkpoint),
          "Copy the state to host memory at the step boundary and write the checkpoint in a background thread "
          "while training goes on; it is committed (renamed, `latest`) once complete on every rank. The last "
          "step's checkpoint and one written on a stop signal are synchronous. Needs MPI_THREAD_MULTIPLE (else "
          "synchronous).")
          .in("checkpoints")
          .stored("run"),
      opt("fresh", FIELD(run.fresh),
          "Start over in a --run-dir that holds an earlier run (metrics.jsonl, checkpoints): its files move to "
          "RUN_DIR/previous-<UTC time>/ (never deleted). Without it such a run dir is refused unless --resume.")
          .in("checkpoints")
          .check([](const TrainConfig& c) {
            if (c.run.fresh && !c.run.resume.empty())
              throw std::invalid_argument("--fresh and --resume exclude each other");
          }),
      opt("resume", FIELD(run.resume),
          "Continue a run: `auto` (the checkpoint RUN_DIR/latest names, else the newest valid one of that run, "
          "skipping damaged ones and other runs' with a warning; a fresh start when there is none) or a checkpoint "
          "path. Model shape, the attention variant "
          "(--attention, --span-mode, --normalizer, and --asentmax-scale / --sparse-stride where used), "
          "--batch-size, --optimizer and --cache must match the checkpoint; --steps is the step to stop at. Any "
          "number of ranks may resume any checkpoint.")
          .in("checkpoints")
          .check([](const TrainConfig& c) {
            if (!c.run.resume.empty() && c.run.resume != "auto") require_readable({c.run.resume}, "resume");
          }),
  };
}

OptionTable<TrainConfig> fault_options() {
  return {
      opt("step-timeout", FIELD(run.step_timeout),
          "Seconds a training step, validation pass or checkpoint may take before this rank's watchdog aborts "
          "the job (exit 86) with the rank and the operation named, so that a supervisor restarts it. 0 = off.")
          .in("faults")
          .at_least(0, "0 = no watchdog"),
      opt("max-bad-steps", FIELD(run.max_bad_steps),
          "Steps with a non-finite loss or gradient are skipped (counted in metrics); more than this many in "
          "a row roll back to the newest checkpoint and halve the learning rate for --rollback-lr-steps steps.")
          .in("faults")
          .at_least(0),
      opt("rollback-lr-steps", FIELD(run.rollback_lr_steps),
          "Steps after a rollback that run at half the learning rate (the same non-finite step is then less "
          "likely to recur).")
          .in("faults")
          .at_least(0),
      opt("fail-at-step", FIELD(fault.at_step),
          "Testing: plant a failure at this step (0 = none), on the first attempt only (ADASPAN_ATTEMPT <= 1).")
          .in("faults")
          .at_least(0, "0 = none"),
      opt("fail-rank", FIELD(fault.rank), "Testing: the rank that fails.").in("faults"),
      opt("fail-mode", FIELD(fault.mode),
          "Testing: crash (the rank exits), hang (stops; the watchdog's case), collective (stops calling "
          "collectives unseen by its own watchdog: the other ranks' watchdogs catch it inside an all-reduce), nan "
          "(NaN loss), signal (SIGUSR1), checkpoint (the job dies between writing a checkpoint and committing it).")
          .in("faults")
          .one_of({"crash", "hang", "collective", "nan", "signal", "checkpoint"}),
      opt("fail-count", FIELD(fault.count), "Testing: with --fail-mode nan, the number of consecutive NaN steps.")
          .in("faults")
          .at_least(1),
  };
}

OptionTable<TrainConfig> parallel_options() {
  const auto heads = [](const TrainConfig& c) { return c.model.heads; };
  const auto ff = [](const TrainConfig& c) { return c.model.ff_size; };
  const auto tp = [](const TrainConfig& c) { return static_cast<int64_t>(c.run.tp); };
  return {
      opt("tp", FIELD(run.tp),
          "Tensor-parallel ranks per model replica (consecutive ranks): each holds --heads / tp heads and "
          "--ff-size / tp feed-forward units of every layer (Megatron-style); data parallelism uses world size / "
          "tp. Checkpoints are logical: any tp resumes any checkpoint.")
          .in("parallel")
          .at_least(1)
          .stored("run")
          .check(divisible("heads", heads, "tp", tp))
          .check(divisible("ff-size", ff, "tp", tp))
          .check([](const TrainConfig& c) {
            if (c.run.tp > 1 && c.model.cache == CacheMode::hidden &&
                (c.run.checkpoint_every > 0 || c.run.checkpoint_minutes > 0 || !c.run.resume.empty())) {
              throw std::invalid_argument(
                  "checkpoints with --tp > 1 need --cache kv (hidden caches are sized by each rank's own heads)");
            }
          }),
      opt("cp", FIELD(run.cp),
          "Context-parallel ranks: each block of --block-size M is cut into cp chunks of M / cp positions, one "
          "per rank (ranks strided by --tp); a rank reads, embeds and trains only its chunk, and fetches from the "
          "ranks before it the keys and values its heads' learned windows reach (a halo of W_h per head, not "
          "the whole block). World = DP x CP x TP. Needs --cache kv. Checkpoints are logical: any cp resumes "
          "any checkpoint.")
          .in("parallel")
          .at_least(1)
          .stored("run")
          .check([](const TrainConfig& c) {
            if (c.run.cp == 1) return;
            const int64_t m = c.data.block_size;
            if (m % c.run.cp != 0) {
              throw std::invalid_argument("--block-size " + std::to_string(m) + " is not divisible by --cp " +
                                          std::to_string(c.run.cp));
            }
            if ((m / c.run.cp) % 64 != 0) {
              throw std::invalid_argument("--cp " + std::to_string(c.run.cp) + " cuts --block-size " +
                                          std::to_string(m) + " into chunks of " + std::to_string(m / c.run.cp) +
                                          " positions, not a multiple of 64");
            }
            if (c.model.cache != CacheMode::kv) {
              throw std::invalid_argument(
                  "--cp > 1 needs --cache kv (a hidden cache would need every position's "
                  "layer input on every rank)");
            }
          }),
      opt("rebalance-every", FIELD(run.rebalance_every),
          "With --tp > 1: every N steps, plan a head-to-rank placement from the learned spans (equal heads per "
          "rank, smallest largest per-rank sum of span windows) and move the heads (weights, spans, optimizer "
          "state, KV caches) when it helps by more than --rebalance-threshold. Needs --cache kv. 0 = never.")
          .in("parallel")
          .at_least(0, "0 = never")
          .check([](const TrainConfig& c) {
            if (c.run.rebalance_every > 0 && c.run.tp < 2)
              throw std::invalid_argument("--rebalance-every needs --tp >= 2");
            if (c.run.rebalance_every > 0 && c.model.cache != CacheMode::kv) {
              throw std::invalid_argument("--rebalance-every needs --cache kv");
            }
          }),
      opt("rebalance-threshold", FIELD(run.rebalance_threshold),
          "Relative drop of the largest rank's load that makes a rebalance worth its exchange.")
          .in("parallel")
          .within(0, 1, true),
      opt("dp-backend", FIELD(run.dp_backend),
          "Gradient averaging: mpi (CPU tensors, or CUDA tensors staged through the host; works with several "
          "ranks on one GPU), nccl (CUDA tensors), or auto (nccl for --device cuda when built with NCCL, else mpi).")
          .in("parallel")
          .one_of({"auto", "mpi", "nccl"}),
      opt("bucket-mb", FIELD(run.bucket_mb), "Size (MiB) of the gradient buckets all-reduced as one message.")
          .in("parallel")
          .positive(),
      opt("zero", FIELD(run.zero),
          "1: ZeRO stage 1, the optimizer state sharded over the data-parallel ranks (gradients reduce-scattered, "
          "each rank updates its shard, parameters all-gathered): optimizer memory / ranks. 0: replicated. "
          "Checkpoints are the same either way, so a run may resume with the other setting.")
          .in("parallel")
          .within(0, 1)
          .stored("run"),
      negated_switch("no-overlap", FIELD(run.overlap),
                     "Reduce gradients after the backward pass instead of during it (for measurements).")
          .in("parallel"),
  };
}

OptionTable<TrainConfig> build_table() {
  OptionTable<TrainConfig> table;
  // In --help order; the stored config's sections follow each option's `stored`.
  for (auto part : {data_options(), model_options(), optim_options(), run_options(), checkpoint_options(),
                    fault_options(), parallel_options()}) {
    table.insert(table.end(), part.begin(), part.end());
  }
  return table;
}

}  // namespace

const OptionTable<TrainConfig>& train_option_table() {
  static const OptionTable<TrainConfig> table = build_table();
  return table;
}

const std::vector<std::pair<std::string, std::string>>& train_option_groups() {
  static const std::vector<std::pair<std::string, std::string>> groups = {
      {"data", "Data"},
      {"model", "Model"},
      {"optim", "Optimisation"},
      {"run", "Run"},
      {"checkpoints", "Checkpoints (HDF5, see docs/checkpoint-format.md)"},
      {"faults", "Fault tolerance (see also `adaspan launch --help`)"},
      {"parallel", "Parallelism (launch with mpirun -np N or srun)"},
  };
  return groups;
}

}  // namespace adaspan::trainer
