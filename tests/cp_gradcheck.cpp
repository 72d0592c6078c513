// Finite differences in double of context-parallel attention: run with `mpirun -np 2` (chunks of
// 128: halos of one and two hops, short windows splitting their queries around the exchange) and
// `-np 4` (chunks of 64: halos of one to four hops, middle ranks both sending and receiving halo
// gradients). Each rank holds one chunk of a block whose heads reach back into the previous block. The loss
// is sum over ranks of <out_chunk, G_chunk>; its analytic gradient (each rank's parameter
// gradients summed over the group, including the dK/dV the halo sends back to the owners) must
// equal central differences of that loss for the parameters that make q (W_q), k (W_k), v (W_v),
// key_pe and z (the spans: current_val, or with --span-mode dynamic its projection), and the
// chunked outputs must equal one rank's whole-block forward (exactly: the work done before the
// halo, kernels::EarlyScores included, is the one-rank call's, bit for bit). Prints one line per check; exit 0
// when all hold.
#include "cluster/communicator.h"
#include "cluster/grid.h"
#include "cluster/world.h"
#include "model/span_attention_layer.h"

#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using adaspan::model::ContextParallel;
using adaspan::model::LayerCache;
using adaspan::model::ModelConfig;
using adaspan::model::SpanAttentionLayer;

constexpr int64_t kBatch = 2, kBlock = 256, kDModel = 16;

ModelConfig config(bool dynamic) {
  ModelConfig c;
  c.d_model = kDModel;
  c.heads = 4;
  c.attn_span = 256;
  c.span_ramp = 16;
  // Windows of 64, 64, 192 and 256 keys. Over chunks of 128 (2 ranks): two heads compute the
  // queries past their window while the halo travels, two need halos of two hops, into the last
  // block; over chunks of 64 (4 ranks): halos of one to four hops.
  // Not whole bytes: the mask has kinks at x = z and x = z + R, where differences are one-sided.
  c.span_init_heads = {10.3, 20.6, 150.2, 230.7};
  c.dropout = 0;
  if (dynamic) c.span_mode = adaspan::model::SpanMode::dynamic;
  return c;
}

struct Setup {
  std::shared_ptr<SpanAttentionLayer> layer;
  at::Tensor key_pe, first_block, block, weights;  // the whole blocks (every rank draws the same)
};

Setup make(bool dynamic) {
  torch::manual_seed(3);  // the same parameters and inputs on every rank
  Setup s;
  s.layer = std::make_shared<SpanAttentionLayer>(config(dynamic));
  s.layer->to(at::kDouble);
  s.key_pe = (0.5 * at::randn({kDModel / 4, 256}, at::kDouble)).requires_grad_();
  s.first_block = at::randn({kBatch, kBlock, kDModel}, at::kDouble);
  s.block = at::randn({kBatch, kBlock, kDModel}, at::kDouble);
  s.weights = at::randn({kBatch, kBlock, kDModel}, at::kDouble);
  return s;
}

at::Tensor chunk_of(const at::Tensor& block, const ContextParallel& cp) {
  const int64_t m = block.size(1) / cp.size;
  return block.narrow(1, cp.rank * m, m);
}

// The loss summed over the group, for the current parameters; the cache (from the first block)
// is held fixed, as one step sees it.
double group_loss(Setup& s, const LayerCache& cache, const ContextParallel& cp, bool backward) {
  at::Tensor out = s.layer->forward(chunk_of(s.block, cp), cache, s.key_pe).out;
  at::Tensor loss = (out * chunk_of(s.weights, cp)).sum();
  if (backward) loss.backward();
  at::Tensor total = loss.detach().reshape({1}).clone();
  if (cp.enabled()) cp.group->all_reduce(total, adaspan::model::ReduceOp::sum);
  return total.item<double>();
}

void sum_over_group(at::Tensor& t, const ContextParallel& cp) {
  if (cp.enabled()) cp.group->all_reduce(t, adaspan::model::ReduceOp::sum);
}

// The chunked forward: outputs == one rank's `whole` exactly, and the work done before the halo
// came. Returns the failures.
int check_forward(Setup& s, const at::Tensor& whole, const LayerCache& cache, const ContextParallel& cp, bool dynamic,
                  int rank) {
  const int64_t overlapped = s.layer->queries_before_halo(), begun = s.layer->scores_begun_before_halo();
  const at::Tensor out = s.layer->forward(chunk_of(s.block, cp), cache, s.key_pe).out.detach();
  at::Tensor diff = (out - chunk_of(whole, cp)).abs().max().reshape({1}).clone();
  if (cp.enabled()) cp.group->all_reduce(diff, adaspan::model::ReduceOp::max);
  int failures = 0;
  const char* mode = dynamic ? "dynamic" : "static";
  const bool outputs_ok = diff.item<double>() == 0.0;
  failures += !outputs_ok;
  // Both split the queries of the heads whose window is shorter than the chunk (heads 0 and 1 at
  // chunks of 128: 64 queries each) around the exchange (the dynamic heads' windows are their
  // widest token's: the planted spans, as v = 0).
  const int64_t chunk = kBlock / cp.size;
  // The other queries (all of a head whose window covers the chunk) begin their scores, the
  // position terms, before the halo comes (one span per head: the ATen tiles' EarlyScores).
  int64_t expected = 0, expected_begun = 0;
  for (int64_t window : {64, 64, 192, 256}) {
    expected += window < chunk ? chunk - window : 0;
    expected_begun += dynamic ? 0 : std::min(window, chunk);
  }
  const int64_t split = s.layer->queries_before_halo() - overlapped;
  const int64_t started = s.layer->scores_begun_before_halo() - begun;
  const bool split_ok = split == expected && started == expected_begun;
  failures += !split_ok;
  if (rank == 0) {
    std::printf("%s %s spans: chunked outputs == one rank's block, max |diff| %.2e\n", outputs_ok ? "ok  " : "FAIL",
                mode, diff.item<double>());
    std::printf("%s %s spans: %ld queries computed while the halo travelled (expected %ld), %ld begun (expected %ld)\n",
                split_ok ? "ok  " : "FAIL", mode, static_cast<long>(split), static_cast<long>(expected),
                static_cast<long>(started), static_cast<long>(expected_begun));
  }
  return failures;
}

int check_layer(bool dynamic, const ContextParallel& cp, int rank) {
  Setup s = make(dynamic);
  // One rank's whole-block forward: the reference for the chunks' outputs.
  s.layer->set_context_parallel(ContextParallel{});
  const LayerCache whole_cache = s.layer->forward(s.first_block, LayerCache{}, s.key_pe).next_cache;
  const at::Tensor whole = s.layer->forward(s.block, whole_cache, s.key_pe).out.detach();

  s.layer->set_context_parallel(cp);
  const LayerCache cache = s.layer->forward(chunk_of(s.first_block, cp), LayerCache{}, s.key_pe).next_cache;
  int failures = check_forward(s, whole, cache, cp, dynamic, rank);
  const char* mode = dynamic ? "dynamic" : "static";

  for (auto& p : s.layer->parameters()) p.mutable_grad() = at::Tensor();
  group_loss(s, cache, cp, true);
  std::vector<std::pair<std::string, at::Tensor>> checked;
  for (const auto& p : s.layer->named_parameters()) {
    const std::string& name = p.key();
    if (name.find("proj_query") != std::string::npos || name.find("proj_key") != std::string::npos ||
        name.find("proj_val") != std::string::npos || name.find("span.") != std::string::npos) {
      checked.emplace_back(name, p.value());
    }
  }
  checked.emplace_back("key_pe", s.key_pe);
  const double eps = 1e-6;
  for (auto& [name, param] : checked) {
    at::Tensor grad = param.grad().defined() ? param.grad().clone() : at::zeros_like(param);
    sum_over_group(grad, cp);
    const at::Tensor flat = param.detach().view({-1});
    const at::Tensor g = grad.view({-1});
    // 8 entries spread over the tensor.
    double worst = 0, scale = 0;
    const int64_t n = flat.numel();
    for (int64_t i = 0; i < 8; ++i) {
      const int64_t at_index = (i * 7919 + 13) % n;
      const double saved = flat[at_index].item<double>();
      at::NoGradGuard no_grad;
      flat[at_index] = saved + eps;
      const double plus = group_loss(s, cache, cp, false);
      flat[at_index] = saved - eps;
      const double minus = group_loss(s, cache, cp, false);
      flat[at_index] = saved;
      const double numeric = (plus - minus) / (2 * eps);
      worst = std::max(worst, std::abs(numeric - g[at_index].item<double>()));
      scale = std::max(scale, std::abs(numeric));
    }
    const double relative = worst / std::max(scale, 1e-3);
    const bool ok = relative < 1e-6;
    failures += !ok;
    if (rank == 0) {
      std::printf(
          "%s %s spans: d loss / d %s == finite differences (8 entries), max rel err %.2e (|grad| up to %.2e)\n",
          ok ? "ok  " : "FAIL", mode, name.c_str(), relative, scale);
    }
  }
  return failures;
}

}  // namespace

int main(int argc, char** argv) {
  adaspan::cluster::World world(&argc, &argv);
  at::set_num_threads(1);
  if (world.size() != 2 && world.size() != 4) {
    if (world.is_root()) std::fprintf(stderr, "cp_gradcheck: run with mpirun -np 2 or 4 (got %d)\n", world.size());
    return 2;
  }
  adaspan::cluster::Grid grid(adaspan::cluster::Communicator::world(), 1, world.size());
  ContextParallel cp;
  cp.group = &grid.cp_group();
  cp.rank = grid.cp_rank();
  cp.size = world.size();
  int failures = check_layer(false, cp, world.rank()) + check_layer(true, cp, world.rank());
  if (world.is_root()) std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}
