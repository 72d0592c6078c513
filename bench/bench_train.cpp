// Training throughput and cost-follows-span, printed as figures and ratios in one run.
//
//   adaspan_bench [--steps N] [--warmup N] [--threads T] [--layers L --d-model D --heads H
//                  --ff-size F --attn-span S --block-size M --batch-size B] [--json FILE]
//
// 1. Training tokens/s of the full step (forward, backward, Adagrad, clamp) for --cache kv and
//    --cache hidden, spans at init (as a run starts) and at 50% of S (a trained model).
// 2. One head's span_attention forward+backward at spans of 10%, 50% and 100% of S, and at 10%
//    computed over the full S window (no trimming): the cost should follow the span.
#include "cluster/heap_policy.h"
#include "cluster/mpi_process_group.h"
#include "cluster/nccl_process_group.h"
#include "cluster/thread_config.h"
#include "cluster/world.h"
#include "kernels/span_attention.h"
#include "model/adaptive_span_lm.h"
#include "trainer/gradient_reducer.h"
#include "trainer/optimizer.h"
#include "trainer/train_step.h"

#include <ATen/ATen.h>
#include <torch/version.h>
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

namespace {

using namespace adaspan;
namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;

struct BenchConfig {
  model::ModelConfig model;
  int64_t batch = 16, block = 256, steps = 10, warmup = 3;
  int threads = 0;
  std::string device = "cpu";
  std::string precision = "fp32";
};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Tokens/s of `steps` timed training steps after `warmup` untimed ones.
double training_tokens_per_s(const BenchConfig& c, model::CacheMode mode, double span_fraction,
                             model::ProcessGroup* dp_group = nullptr) {
  model::ModelConfig mc = c.model;
  mc.cache = mode;
  mc.span_init = span_fraction;
  mc.span_loss_coeff = 0;  // keep the spans where they were put
  at::manual_seed(1);
  model::AdaptiveSpanLM lm(mc);
  const at::Device device(c.device);
  lm.to(device);
  lm.set_precision(model::parse_precision(c.precision));
  lm.train();
  auto optimizer = trainer::make_adagrad(lm.parameters(), 0.03);
  std::unique_ptr<trainer::GradientReducer> reducer;
  if (dp_group) reducer = std::make_unique<trainer::GradientReducer>(lm.parameters(), *dp_group, 25 << 20, true);
  model::ModelCache cache;
  const double lr = 1e-6;  // tiny: the spans stay at the fraction being measured
  Clock::time_point start;
  for (int64_t s = 0; s < c.warmup + c.steps; ++s) {
    if (s == c.warmup) start = Clock::now();
    const at::Tensor bytes = at::randint(0, 256, {c.batch, c.block + 1}, at::TensorOptions(device).dtype(at::kLong));
    trainer::train_step(lm, *optimizer, bytes.narrow(1, 0, c.block), bytes.narrow(1, 1, c.block), cache, lr,
                        reducer.get());
  }
  (void)lm.parameter_norm();  // waits for the device to finish
  return static_cast<double>(c.batch * c.block * c.steps) / seconds_since(start);
}

// Milliseconds of one head's attention forward+backward over B streams.
double attention_ms(const BenchConfig& c, double span_fraction, bool full_window) {
  const int64_t S = c.model.attn_span, d = c.model.head_dim();
  at::manual_seed(2);
  const auto opt = at::TensorOptions(at::Device(c.device));
  at::Tensor q = at::randn({c.batch, c.block, d}, opt).requires_grad_(true);
  at::Tensor k = at::randn({c.batch, S + c.block, d}, opt).requires_grad_(true);
  at::Tensor v = at::randn({c.batch, S + c.block, d}, opt).requires_grad_(true);
  at::Tensor key_pe = at::randn({d, S}, opt).requires_grad_(true);
  at::Tensor z = at::full({}, span_fraction * static_cast<double>(S), opt).requires_grad_(true);
  kernels::SpanAttentionOptions o;
  o.max_span = S;
  o.ramp = c.model.span_ramp;
  o.window = full_window ? S : kernels::effective_window(span_fraction * static_cast<double>(S), o.ramp, S);
  Clock::time_point start;
  const int64_t reps = 5;
  for (int64_t r = 0; r < 2 + reps; ++r) {
    if (r == 2) start = Clock::now();
    kernels::span_attention(q, k, v, key_pe, z, o).sum().backward();
  }
  (void)q.grad().sum().item<double>();  // waits for the device to finish
  return 1000.0 * seconds_since(start) / static_cast<double>(reps);
}

// Training tokens/s with either cache at two span fractions, and one head's attention time at
// three spans (and untrimmed), into `out`.
void measure_training_and_attention(const BenchConfig& c, nlohmann::json& out) {
  std::printf("\ntraining tokens/s (steps %lld after %lld warm-up)\n", static_cast<long long>(c.steps),
              static_cast<long long>(c.warmup));
  for (double fraction : {0.0, 0.5}) {
    const double kv = training_tokens_per_s(c, model::CacheMode::kv, fraction);
    const double hidden = training_tokens_per_s(c, model::CacheMode::hidden, fraction);
    std::printf("  spans at %3.0f%% of S: cache kv %8.0f  cache hidden %8.0f  kv/hidden %.2fx\n", 100 * fraction, kv,
                hidden, kv / hidden);
    const std::string key = "train_tokens_per_s_span" + std::to_string(static_cast<int>(100 * fraction));
    out[key] = {{"kv", kv}, {"hidden", hidden}};
  }

  std::printf("\none head's attention forward+backward (B %lld, M %lld, d %lld)\n", static_cast<long long>(c.batch),
              static_cast<long long>(c.block), static_cast<long long>(c.model.head_dim()));
  const double full = attention_ms(c, 1.0, true);
  for (double fraction : {0.1, 0.5, 1.0}) {
    const double ms = attention_ms(c, fraction, false);
    std::printf("  span %3.0f%% of S: %8.2f ms  (%.2fx of the 100%% cost)\n", 100 * fraction, ms, ms / full);
    out["attention_ms"][std::to_string(static_cast<int>(100 * fraction)) + "%"] = ms;
  }
  const double untrimmed = attention_ms(c, 0.1, true);
  std::printf("  span  10%% of S, full-S window (no trimming): %8.2f ms\n", untrimmed);
  out["attention_ms"]["10%_untrimmed"] = untrimmed;
}

// The whole data-parallel path (hooks, buckets, all-reduce, averaging) on a one-rank group,
// against no data parallelism: what DP costs before any other rank is involved.
void measure_dp_overhead(const BenchConfig& c, int& argc, char**& argv, nlohmann::json& out) {
  cluster::World world(&argc, &argv);
  cluster::MpiProcessGroup mpi(cluster::Communicator::world());
  std::unique_ptr<model::ProcessGroup> nccl;
  model::ProcessGroup* group = &mpi;
  if (c.device != "cpu" && cluster::nccl_available()) {
    nccl = cluster::make_nccl_process_group(cluster::Communicator::world(),
                                            at::Device(c.device).index() < 0 ? 0 : at::Device(c.device).index());
    group = nccl.get();
  }
  const double plain = training_tokens_per_s(c, model::CacheMode::kv, 0.0);
  const double with_dp = training_tokens_per_s(c, model::CacheMode::kv, 0.0, group);
  std::printf("\ndata-parallel path on one rank (%s): %.0f tokens/s vs %.0f without: overhead %.2f%%\n",
              nccl ? "nccl" : "mpi", with_dp, plain, 100.0 * (plain - with_dp) / plain);
  out["dp_overhead_percent"] = 100.0 * (plain - with_dp) / plain;
  if (nccl) {
    at::Tensor buffer = at::ones({64 << 20}, at::TensorOptions(at::Device(c.device)));  // 256 MiB fp32
    for (int i = 0; i < 3; ++i) nccl->all_reduce(buffer);
    (void)buffer.sum().item<double>();
    const auto start = Clock::now();
    const int reps = 20;
    for (int i = 0; i < reps; ++i) nccl->all_reduce(buffer);
    (void)buffer.sum().item<double>();
    // One rank moves no data: this is the cost of a call, not a bandwidth.
    const double us = 1e6 * seconds_since(start) / reps;
    std::printf("NCCL all-reduce of 256 MiB on one rank: %.1f us per call (no data moves with one rank)\n", us);
    out["nccl_one_rank_allreduce_us"] = us;
  }
}

}  // namespace

int main(int argc, char** argv) {
  cluster::keep_large_blocks_in_heap();
  BenchConfig c;
  c.model.layers = 4;
  c.model.d_model = 256;
  c.model.heads = 4;
  c.model.ff_size = 1024;
  c.model.attn_span = 1024;
  std::string json_path;
  po::options_description options("adaspan_bench: training tokens/s and attention cost vs span\n\nOptions");
  // clang-format off: one flag per line, as --help lists them
  options.add_options()("help,h", "Show this help.")("steps", po::value(&c.steps)->default_value(c.steps),
                                                     "Timed training steps per measurement.")(
      "warmup", po::value(&c.warmup)->default_value(c.warmup), "Untimed steps before timing.")(
      "threads", po::value(&c.threads)->default_value(c.threads), "ATen threads (0 = all cores).")(
      "layers", po::value(&c.model.layers)->default_value(c.model.layers), "Layers.")(
      "d-model", po::value(&c.model.d_model)->default_value(c.model.d_model), "Hidden size.")(
      "heads", po::value(&c.model.heads)->default_value(c.model.heads), "Heads.")(
      "ff-size", po::value(&c.model.ff_size)->default_value(c.model.ff_size), "Feed-forward size.")(
      "attn-span", po::value(&c.model.attn_span)->default_value(c.model.attn_span), "S.")(
      "block-size", po::value(&c.block)->default_value(c.block), "M.")(
      "batch-size", po::value(&c.batch)->default_value(c.batch), "B.")(
      "device", po::value(&c.device)->default_value(c.device), "cpu or cuda.")(
      "precision", po::value(&c.precision)->default_value(c.precision),
      "Training precision: fp32, or bf16 (autocast; see adaspan train --help).")(
      "dp-overhead", "Also measure the data-parallel path on one rank against none (and NCCL bandwidth on CUDA).")(
      "json", po::value(&json_path), "Also write the figures as JSON to this file.");
  // clang-format on
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, options), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "adaspan_bench: error: %s\n", e.what());
    return 2;
  }
  if (vm.count("help")) {
    std::cout << options << "\n";
    return 0;
  }
  try {
    model::parse_precision(c.precision);
  } catch (const std::exception& e) {
    std::cerr << "adaspan_bench: error: " << e.what() << "\n";
    return 2;
  }
  const int threads = cluster::configure_threads(c.threads, 1);
  std::printf(
      "config: layers %lld d_model %lld heads %lld ff %lld S %lld M %lld B %lld, %d threads, %s %s, torch %d.%d.%d\n",
      static_cast<long long>(c.model.layers), static_cast<long long>(c.model.d_model),
      static_cast<long long>(c.model.heads), static_cast<long long>(c.model.ff_size),
      static_cast<long long>(c.model.attn_span), static_cast<long long>(c.block), static_cast<long long>(c.batch),
      threads, c.device.c_str(), c.precision.c_str(), TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH);

  nlohmann::json out = {{"threads", threads}};
  measure_training_and_attention(c, out);
  if (vm.count("dp-overhead")) measure_dp_overhead(c, argc, argv, out);
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  return 0;
}
