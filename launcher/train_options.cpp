#include "launcher/train_options.h"

#include <boost/program_options.hpp>

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace adaspan::launcher {

namespace po = boost::program_options;

ParsedTrain parse_train_options(const std::vector<std::string>& args) {
  ParsedTrain parsed;
  trainer::TrainConfig& c = parsed.config;
  std::string cache_mode = model::to_string(c.model.cache);
  std::string attention = model::to_string(c.model.attention), span_mode = model::to_string(c.model.span_mode);
  std::string normalizer = model::to_string(c.model.normalizer);
  std::string asentmax_scale = model::to_string(c.model.asentmax_scale);
  std::string span_init_heads;
  std::string config_file;

  po::options_description general("General");
  general.add_options()
      ("help,h", "Show this help and exit.")
      ("config", po::value(&config_file), "File of `key = value` lines with any of the flags below "
                                          "(command-line flags win).");

  po::options_description data("Data");
  data.add_options()
      ("data", po::value(&c.data.train_files)->multitoken(),
       "Training corpus: one or more files, read as raw bytes and concatenated (memory-mapped, never "
       "loaded whole). Default: the built-in synthetic corpus (4 MiB, planted 200-900 byte dependencies).")
      ("valid-data", po::value(&c.data.valid_files)->multitoken(),
       "Validation corpus files. Default: the built-in validation corpus when training on the built-in one, "
       "else no validation.")
      ("batch-size", po::value(&c.data.batch_size)->default_value(c.data.batch_size),
       "B: global number of parallel byte streams; stream k starts at byte k*N/B.")
      ("block-size", po::value(&c.data.block_size)->default_value(c.data.block_size),
       "M: bytes per stream per step (queries per block).");

  po::options_description model("Model");
  model.add_options()
      ("layers", po::value(&c.model.layers)->default_value(c.model.layers), "Transformer layers.")
      ("d-model", po::value(&c.model.d_model)->default_value(c.model.d_model), "Hidden size; divisible by --heads.")
      ("heads", po::value(&c.model.heads)->default_value(c.model.heads), "Attention heads per layer, each with its own span.")
      ("ff-size", po::value(&c.model.ff_size)->default_value(c.model.ff_size), "Inner size of the feed-forward (ReLU) sublayer.")
      ("attn-span", po::value(&c.model.attn_span)->default_value(c.model.attn_span),
       "S: the largest span (bytes) a head can learn; size of key_pe.")
      ("span-ramp", po::value(&c.model.span_ramp)->default_value(c.model.span_ramp),
       "R: length (bytes) of the soft mask's linear ramp.")
      ("span-init", po::value(&c.model.span_init)->default_value(c.model.span_init),
       "Initial span as a fraction of S, in [0, 1].")
      ("span-init-heads", po::value(&span_init_heads),
       "Initial span of each head in bytes, comma-separated (one value per head, the same for every layer); "
       "overrides --span-init. For experiments and benchmarks with a planted span distribution.")
      ("span-loss-coeff", po::value(&c.model.span_loss_coeff)->default_value(c.model.span_loss_coeff, "2e-6"),
       "lambda of the L1 span penalty lambda*S*mean(span/S) per layer.")
      ("dropout", po::value(&c.model.dropout)->default_value(c.model.dropout),
       "Dropout on attention probabilities and the feed-forward hidden layer, in [0, 1).")
      ("cache", po::value(&cache_mode)->default_value(cache_mode),
       "What layers keep between blocks: kv (each head's keys/values, trimmed to its span; memory follows "
       "spans, cached K/V are one step stale) or hidden (the reference's layer inputs, re-projected each step).")
      ("attention", po::value(&attention)->default_value(attention),
       "Which keys a head sees: adaptive (a learned span per head, or per token with --span-mode dynamic), "
       "fixed or full (the last --attn-span keys, nothing learned: the sliding-window and full-attention "
       "baselines, the same computation at the same S), sparse-fixed (the Sparse Transformer's fixed "
       "pattern within --attn-span: the --sparse-stride nearest keys plus every --sparse-stride-th position).")
      ("span-mode", po::value(&span_mode)->default_value(span_mode),
       "static (one span per head, as the reference) or dynamic (a span per token and head, "
       "z_t = S*sigmoid(v_h.x_t/sqrt(d_model) + b_h) from the layer input, starting at --span-init; L1 penalty "
       "on the mean z_t; cost follows the largest span of each 64-query tile; the kv cache keeps the widest "
       "window of the last block + 64). Needs --attention adaptive.")
      ("normalizer", po::value(&normalizer)->default_value(normalizer),
       "softmax, entmax15 (exact sort-based 1.5-entmax: exact zeros) or asentmax (1.5-entmax of scores "
       "scaled per query by 1 + beta*(log n)^gamma (delta = 1), n = keys the query sees + 2, at most the "
       "window + 2; Vasylenko et al. 2025). The span "
       "mask applies as with softmax: mask, then renormalise.")
      ("asentmax-scale", po::value(&asentmax_scale)->default_value(asentmax_scale),
       "With --normalizer asentmax, its beta and gamma: head (learned per head: beta ~ U(0.1,1), gamma ~ N(0,0.1)) or hidden "
       "(beta = softplus(W_b x), gamma = 2 tanh(W_g x) from the query's layer input).")
      ("sparse-stride", po::value(&c.model.sparse_stride)->default_value(c.model.sparse_stride),
       "c of --attention sparse-fixed: local keys and the stride of the summary positions (stream positions "
       "p with p mod c = c - 1); --block-size must be a multiple of it (so resumed caches keep the pattern).");

  po::options_description optim("Optimisation");
  optim.add_options()
      ("optimizer", po::value(&c.optim.optimizer)->default_value(c.optim.optimizer),
       "adagrad (the reference's Adagrad, step clipped per tensor by --grad-clip) or adam (global-norm clip).")
      ("lr", po::value(&c.optim.lr)->default_value(c.optim.lr, "0.07"), "Peak learning rate.")
      ("warmup-steps", po::value(&c.optim.warmup_steps)->default_value(c.optim.warmup_steps),
       "Linear warmup: step n uses lr*min(1, n/warmup). 0 = none.")
      ("grad-clip", po::value(&c.optim.grad_clip)->default_value(c.optim.grad_clip, "0.03"),
       "Gradient clipping threshold (L2); 0 = off.")
      ("grad-accum", po::value(&c.optim.grad_accum)->default_value(c.optim.grad_accum),
       "K: each step accumulates K micro-batches of (--batch-size / ranks) / K streams (each with its own "
       "cache) before one update, which equals the update of the whole batch; activation memory / K. "
       "The reference's --batch-split.");

  po::options_description run("Run");
  run.add_options()
      ("steps", po::value(&c.run.steps)->default_value(c.run.steps), "Optimizer steps.")
      ("seed", po::value(&c.run.seed)->default_value(c.run.seed), "Seed of parameter init and dropout.")
      ("threads", po::value(&c.run.threads)->default_value(c.run.threads),
       "CPU threads for ATen (OpenBLAS is pinned to 1). 0 = the cores of the node divided by its ranks.")
      ("device", po::value(&c.run.device)->default_value(c.run.device),
       "Where the model runs: cpu, or cuda / cuda:N when LibTorch has CUDA and a GPU is present.")
      ("precision", po::value(&c.run.precision)->default_value(c.run.precision),
       "fp32, or bf16: the forward pass under bf16 autocast (matrix products in bf16, softmax and losses in fp32), "
       "attention kernels and spans in fp32; parameters, gradients and optimizer state stay fp32.")
      ("run-dir", po::value(&c.run.run_dir)->default_value(c.run.run_dir),
       "Directory for metrics.jsonl and checkpoints (created).")
      ("log-every", po::value(&c.run.log_every)->default_value(c.run.log_every),
       "Steps between metrics records (bpc averaged over them).")
      ("eval-every", po::value(&c.run.eval_every)->default_value(c.run.eval_every),
       "Steps between validation passes; 0 = never.")
      ("eval-steps", po::value(&c.run.eval_steps)->default_value(c.run.eval_steps),
       "Blocks per validation pass, from the validation streams' starts with an empty cache.");

  po::options_description ckpt("Checkpoints (HDF5, see docs/checkpoint-format.md)");
  ckpt.add_options()
      ("checkpoint-every", po::value(&c.run.checkpoint_every)->default_value(c.run.checkpoint_every),
       "Steps between checkpoints RUN_DIR/ckpt-STEP.h5 (one more at the last step); 0 = none. Written "
       "collectively by all ranks, atomically (a .tmp file renamed when complete; RUN_DIR/latest names the newest).")
      ("keep-checkpoints", po::value(&c.run.keep_checkpoints)->default_value(c.run.keep_checkpoints),
       "Newest checkpoints kept in RUN_DIR; older ones are deleted. 0 = keep all.")
      ("async-checkpoint", po::bool_switch(&c.run.async_checkpoint),
       "Copy the state to host memory at the step boundary and write the checkpoint in a background thread while "
       "training goes on; it is committed (renamed, `latest`) once complete on every rank. The last step's "
       "checkpoint and one written on a stop signal are synchronous. Needs MPI_THREAD_MULTIPLE (else synchronous).")
      ("resume", po::value(&c.run.resume),
       "Continue a run: `auto` (the newest valid checkpoint in --run-dir, skipping damaged ones with a warning; "
       "a fresh start when there is none) or a checkpoint path. Model shape, the attention variant (--attention, "
       "--span-mode, --normalizer, and --asentmax-scale / --sparse-stride where used), --batch-size, --optimizer "
       "and --cache must match the checkpoint; --steps is the step to stop at. Any number of ranks may resume any checkpoint.");

  po::options_description faults("Fault tolerance (see also `adaspan launch --help`)");
  faults.add_options()
      ("step-timeout", po::value(&c.run.step_timeout)->default_value(c.run.step_timeout),
       "Seconds a training step, validation pass or checkpoint may take before this rank's watchdog aborts "
       "the job (exit 86) with the rank and the operation named, so that a supervisor restarts it. 0 = off.")
      ("max-bad-steps", po::value(&c.run.max_bad_steps)->default_value(c.run.max_bad_steps),
       "Steps with a non-finite loss or gradient are skipped (counted in metrics); more than this many in "
       "a row roll back to the newest checkpoint and halve the learning rate for max(--checkpoint-every, 100) steps.")
      ("fail-at-step", po::value(&c.fault.at_step)->default_value(c.fault.at_step),
       "Testing: plant a failure at this step (0 = none), on the first attempt only (ADASPAN_ATTEMPT <= 1).")
      ("fail-rank", po::value(&c.fault.rank)->default_value(c.fault.rank), "Testing: the rank that fails.")
      ("fail-mode", po::value(&c.fault.mode)->default_value(c.fault.mode),
       "Testing: crash (the rank exits), hang (stops; the watchdog's case), nan (NaN loss), signal (SIGUSR1), "
       "checkpoint (the job dies between writing a checkpoint and committing it).")
      ("fail-count", po::value(&c.fault.count)->default_value(c.fault.count),
       "Testing: with --fail-mode nan, the number of consecutive NaN steps.");

  bool no_overlap = false;
  po::options_description parallel("Parallelism (launch with mpirun -np N or srun)");
  parallel.add_options()
      ("tp", po::value(&c.run.tp)->default_value(c.run.tp),
       "Tensor-parallel ranks per model replica (consecutive ranks): each holds --heads / tp heads and "
       "--ff-size / tp feed-forward units of every layer (Megatron-style); data parallelism uses world size / tp. "
       "Checkpoints are logical: any tp resumes any checkpoint.")
      ("rebalance-every", po::value(&c.run.rebalance_every)->default_value(c.run.rebalance_every),
       "With --tp > 1: every N steps, plan a head-to-rank placement from the learned spans (equal heads per "
       "rank, smallest largest per-rank sum of span windows) and move the heads (weights, spans, optimizer state, "
       "KV caches) when it helps by more than --rebalance-threshold. Needs --cache kv. 0 = never.")
      ("rebalance-threshold", po::value(&c.run.rebalance_threshold)->default_value(c.run.rebalance_threshold, "0.1"),
       "Relative drop of the largest rank's load that makes a rebalance worth its exchange.")
      ("dp-backend", po::value(&c.run.dp_backend)->default_value(c.run.dp_backend),
       "Gradient averaging: mpi (CPU tensors, or CUDA tensors staged through the host; works with "
       "several ranks on one GPU), nccl (CUDA tensors), or auto (nccl for --device cuda when built "
       "with NCCL, else mpi).")
      ("bucket-mb", po::value(&c.run.bucket_mb)->default_value(c.run.bucket_mb),
       "Size (MiB) of the gradient buckets all-reduced as one message.")
      ("zero", po::value(&c.run.zero)->default_value(c.run.zero),
       "1: ZeRO stage 1, the optimizer state sharded over the data-parallel ranks (gradients reduce-scattered, "
       "each rank updates its shard, parameters all-gathered): optimizer memory / ranks. 0: replicated. "
       "Checkpoints are the same either way, so a run may resume with the other setting.")
      ("no-overlap", po::bool_switch(&no_overlap),
       "Reduce gradients after the backward pass instead of during it (for measurements).");

  po::options_description all("adaspan train: train an adaptive-span byte-level transformer\n\nOptions");
  all.add(general).add(data).add(model).add(optim).add(run).add(ckpt).add(faults).add(parallel);

  std::ostringstream help;
  help << all;
  parsed.help_text = help.str();

  try {
    po::variables_map vm;
    po::store(po::command_line_parser(args).options(all).run(), vm);
    if (vm.count("help")) {
      parsed.help = true;
      return parsed;
    }
    if (vm.count("config")) {
      const std::string file = vm["config"].as<std::string>();
      std::ifstream in(file);
      if (!in) throw std::invalid_argument("--config: cannot read '" + file + "'");
      po::store(po::parse_config_file(in, all), vm);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw std::invalid_argument(e.what());
  }
  c.model.cache = model::parse_cache_mode(cache_mode);
  c.model.attention = model::parse_attention_kind(attention);
  c.model.span_mode = model::parse_span_mode(span_mode);
  c.model.normalizer = model::parse_normalizer(normalizer);
  c.model.asentmax_scale = model::parse_asentmax_scale(asentmax_scale);
  if (!span_init_heads.empty()) {
    std::stringstream list(span_init_heads);
    for (std::string item; std::getline(list, item, ',');) {
      try {
        c.model.span_init_heads.push_back(std::stod(item));
      } catch (const std::exception&) {
        throw std::invalid_argument("--span-init-heads: '" + item + "' is not a number");
      }
    }
  }
  c.run.overlap = !no_overlap;
  return parsed;
}

}  // namespace adaspan::launcher
