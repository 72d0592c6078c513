// Span-attention kernels side by side: the row kernels (kernels/span_rows/; CUDA threads on a
// GPU, a host loop on the CPU) against the ATen query-tile path, at spans from 64 to S.
//
//   adaspan_bench_attention [--device cpu|cuda] [--batch-size B] [--block-size M] [--head-dim d]
//                           [--attn-span S] [--spans 64,256,...] [--reps N] [--json FILE]
//
// Per span z (one head, B streams of M queries, a cache of S keys): forward+backward milliseconds
// of each implementation, useful GFLOP/s (docs/kernels.md §6: 4·n·s·d forward, 2.5x that backward,
// n = B·M queries, s = the keys each query reads = min(z + R, S)), their ratio, and each
// implementation's time at the smallest span relative to S (does the cost follow the span?).
// Then, for context parallelism, how much of the ATen tiles' forward can run before a halo comes.
#include "cluster/heap_policy.h"
#include "cluster/thread_config.h"
#include "kernels/span_attention.h"

#include <ATen/ATen.h>
#include <torch/version.h>
#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

namespace {

using namespace adaspan;
namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;

struct Config {
  std::string device = "cpu";
  int64_t batch = 4, block = 256, head_dim = 64, span = 2048, reps = 5;
  double ramp = 32;
  std::string spans = "64,256,1024,2048";
  int threads = 0;
};

void synchronize(const at::Tensor& t) { (void)t.sum().item<double>(); }

// Milliseconds of one forward+backward with `kernel` at span z, median of `reps`.
double attention_ms(const Config& c, double z, kernels::SpanKernel kernel) {
  at::manual_seed(3);
  const auto opt = at::TensorOptions(at::Device(c.device)).dtype(at::kFloat);
  at::Tensor q = at::randn({c.batch, c.block, c.head_dim}, opt).requires_grad_(true);
  at::Tensor k = at::randn({c.batch, c.span + c.block, c.head_dim}, opt).requires_grad_(true);
  at::Tensor v = at::randn({c.batch, c.span + c.block, c.head_dim}, opt).requires_grad_(true);
  at::Tensor key_pe = at::randn({c.head_dim, c.span}, opt).requires_grad_(true);
  at::Tensor span_z = at::full({}, z, opt).requires_grad_(true);
  kernels::SpanAttentionOptions o;
  o.max_span = c.span;
  o.ramp = c.ramp;
  o.window = kernels::effective_window(z, c.ramp, c.span);
  o.kernel = kernel;
  std::vector<double> times;
  for (int64_t r = 0; r < c.reps + 1; ++r) {  // the first is a warm-up
    synchronize(q);
    const auto start = Clock::now();
    kernels::span_attention(q, k, v, key_pe, span_z, o).sum().backward();
    synchronize(q.grad());
    if (r > 0) times.push_back(1000.0 * std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Context parallelism's overlap: a chunk of M queries whose cache (the halo, S keys) is still on
// its way. Forward milliseconds (medians) of the ATen tiles' early_span_scores (what needs no halo
// key), of the call given them, and of the call alone.
struct EarlySplit {
  double early = 0, rest = 0, whole = 0;
};

EarlySplit early_scores_ms(const Config& c, double z) {
  at::manual_seed(3);
  const auto opt = at::TensorOptions(at::Device(c.device)).dtype(at::kFloat);
  const at::Tensor q = at::randn({c.batch, c.block, c.head_dim}, opt).requires_grad_(true);
  const at::Tensor k = at::randn({c.batch, c.span + c.block, c.head_dim}, opt).requires_grad_(true);
  const at::Tensor v = at::randn({c.batch, c.span + c.block, c.head_dim}, opt).requires_grad_(true);
  const at::Tensor key_pe = at::randn({c.head_dim, c.span}, opt).requires_grad_(true);
  const at::Tensor span_z = at::full({}, z, opt).requires_grad_(true);
  kernels::SpanAttentionOptions o;
  o.max_span = c.span;
  o.ramp = c.ramp;
  o.window = kernels::effective_window(z, c.ramp, c.span);
  o.kernel = kernels::SpanKernel::aten_tiles;
  const at::Tensor own = k.narrow(1, c.span, c.block);
  std::vector<double> early, rest, whole;
  auto ms_since = [&](Clock::time_point start, const at::Tensor& t) {
    synchronize(t);
    return 1000.0 * std::chrono::duration<double>(Clock::now() - start).count();
  };
  for (int64_t r = 0; r < c.reps + 1; ++r) {  // the first is a warm-up
    synchronize(q);
    auto start = Clock::now();
    kernels::SpanAttentionOptions with = o;
    with.early = kernels::early_span_scores(q, own, key_pe, c.span, o);
    const double e = ms_since(start, with.early.scores);
    start = Clock::now();
    const double p = ms_since(start, kernels::span_attention(q, k, v, key_pe, span_z, with));
    start = Clock::now();
    const double w = ms_since(start, kernels::span_attention(q, k, v, key_pe, span_z, o));
    if (r > 0) early.push_back(e), rest.push_back(p), whole.push_back(w);
  }
  auto median = [](std::vector<double> x) {
    std::sort(x.begin(), x.end());
    return x[x.size() / 2];
  };
  return {median(early), median(rest), median(whole)};
}

// Context parallelism (docs/parallelism.md): the share of a head's forward done before its halo
// comes, when the halo is the whole cache (a head whose window covers its chunk).
void report_early_scores(const Config& c, const std::vector<double>& spans, nlohmann::json& out) {
  std::printf(
      "context parallelism, halo = the whole cache: ATen tiles forward ms before the halo / after / one call\n");
  for (double z : spans) {
    const EarlySplit e = early_scores_ms(c, z);
    std::printf("%8.0f %12.2f %12.2f %12.2f %14.1f%% before, %.2fx one call in all\n", z, e.early, e.rest, e.whole,
                100.0 * e.early / e.whole, (e.early + e.rest) / e.whole);
    out["early_scores"].push_back({{"span", z}, {"early_ms", e.early}, {"rest_ms", e.rest}, {"whole_ms", e.whole}});
  }
}

}  // namespace

int main(int argc, char** argv) {
  cluster::keep_large_blocks_in_heap();
  Config c;
  std::string json_path;
  po::options_description options("adaspan_bench_attention: span-attention kernels side by side\n\nOptions");
  // clang-format off: one flag per line, as --help lists them
  options.add_options()("help,h", "Show this help.")("device", po::value(&c.device)->default_value(c.device),
                                                     "cpu or cuda.")(
      "batch-size", po::value(&c.batch)->default_value(c.batch), "B: streams.")(
      "block-size", po::value(&c.block)->default_value(c.block), "M: queries per stream.")(
      "head-dim", po::value(&c.head_dim)->default_value(c.head_dim), "d: head dimension (8, 16, 32, 64, 96, 128).")(
      "attn-span", po::value(&c.span)->default_value(c.span), "S: the longest span; the cache holds S keys.")(
      "spans", po::value(&c.spans)->default_value(c.spans), "Comma-separated spans z (bytes) to measure.")(
      "reps", po::value(&c.reps)->default_value(c.reps), "Timed repetitions per figure (the median is kept).")(
      "threads", po::value(&c.threads)->default_value(c.threads), "ATen threads on the CPU (0 = all cores).")(
      "json", po::value(&json_path), "Also write the figures as JSON to this file.");
  // clang-format on
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, options), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "adaspan_bench_attention: error: " << e.what() << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << options << "\n";
    return 0;
  }
  if (c.reps < 1 || c.batch < 1 || c.block < 1 || c.span < 1) {
    std::cerr << "adaspan_bench_attention: error: --reps, --batch-size, --block-size and --attn-span must be >= 1\n";
    return 2;
  }
  std::vector<double> spans;
  std::stringstream list(c.spans);
  for (std::string item; std::getline(list, item, ',');) spans.push_back(std::stod(item));
  if (c.device != "cpu" && !at::hasCUDA()) {
    std::cerr << "adaspan_bench_attention: error: --device " << c.device << " but no CUDA device is visible\n";
    return 2;
  }
  const int threads = cluster::configure_threads(c.threads, 1);
  std::printf("device %s, torch %d.%d.%d, %d threads; B %lld M %lld d %lld S %lld R %.0f\n", c.device.c_str(),
              TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH, threads, static_cast<long long>(c.batch),
              static_cast<long long>(c.block), static_cast<long long>(c.head_dim), static_cast<long long>(c.span),
              c.ramp);
  std::printf("%8s %12s %12s %12s %12s %15s\n", "span", "rows ms", "aten ms", "rows GFLOP/s", "aten GFLOP/s",
              "rows/aten time");
  nlohmann::json out = {{"device", c.device},     {"batch", c.batch},    {"block", c.block},
                        {"head_dim", c.head_dim}, {"attn_span", c.span}, {"threads", threads}};
  double rows_full = 0, aten_full = 0, rows_small = 0, aten_small = 0;
  for (double z : spans) {
    const double keys = std::min(z + c.ramp, static_cast<double>(c.span));
    const double flops = 3.5 * 4.0 * static_cast<double>(c.batch * c.block) * keys * static_cast<double>(c.head_dim);
    const double rows = attention_ms(c, z, kernels::SpanKernel::rows);
    const double aten = attention_ms(c, z, kernels::SpanKernel::aten_tiles);
    std::printf("%8.0f %12.2f %12.2f %12.1f %12.1f %14.2fx\n", z, rows, aten, flops / rows / 1e6, flops / aten / 1e6,
                rows / aten);
    out["spans"].push_back({{"span", z},
                            {"rows_ms", rows},
                            {"aten_ms", aten},
                            {"rows_gflops", flops / rows / 1e6},
                            {"aten_gflops", flops / aten / 1e6}});
    if (z == spans.front()) rows_small = rows, aten_small = aten;
    if (z == spans.back()) rows_full = rows, aten_full = aten;
  }
  std::printf("time at span %.0f / time at span %.0f: rows %.3fx, aten %.3fx\n", spans.front(), spans.back(),
              rows_small / rows_full, aten_small / aten_full);
  out["smallest_over_largest"] = {{"rows", rows_small / rows_full}, {"aten", aten_small / aten_full}};
  report_early_scores(c, spans, out);
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  return 0;
}
