#include "trainer/head_rebalancer.h"

#include "kernels/span_attention.h"

#include <ATen/ATen.h>

#include <map>
#include <stdexcept>

namespace adaspan::trainer {
namespace {

std::vector<int64_t> heads_of(const cluster::HeadPlacement& owner, size_t layer, int rank) {
  std::vector<int64_t> out;
  for (size_t h = 0; h < owner[layer].size(); ++h) {
    if (owner[layer][h] == rank) out.push_back(static_cast<int64_t>(h));
  }
  return out;
}

// A tensor cut by heads along dim 0 ([H_local * per, ...]) from every rank, reassembled in
// canonical order and cut again for this rank's new heads.
at::Tensor regroup_rows(const at::Tensor& local, int64_t per, const model::TensorParallel& tp,
                        const std::vector<std::vector<int64_t>>& held_by_rank, const std::vector<int64_t>& mine) {
  const at::Tensor flat = local.contiguous().reshape({-1});
  at::Tensor all = at::empty({flat.numel() * tp.size}, flat.options());
  tp.group->all_gather(flat, all);
  const int64_t row = local.numel() / local.size(0);  // elements per row
  const at::Tensor gathered = all.view({tp.size, local.size(0), row});
  std::map<int64_t, at::Tensor> by_head;  // canonical head -> its [per, row] rows
  for (int r = 0; r < tp.size; ++r) {
    const auto& heads = held_by_rank[static_cast<size_t>(r)];
    for (size_t i = 0; i < heads.size(); ++i)
      by_head[heads[i]] = gathered[r].narrow(0, static_cast<int64_t>(i) * per, per);
  }
  std::vector<at::Tensor> pieces;
  for (int64_t h : mine) pieces.push_back(by_head.at(h));
  std::vector<int64_t> shape = local.sizes().vec();
  return at::cat(pieces, 0).reshape(shape).clone();
}

at::Tensor regroup(const at::Tensor& local, const model::HeadSplit& split, const model::TensorParallel& tp,
                   const std::vector<std::vector<int64_t>>& held_by_rank, const std::vector<int64_t>& mine) {
  if (split.dim == 0) return regroup_rows(local, split.per_head, tp, held_by_rank, mine);
  const at::Tensor moved = regroup_rows(local.transpose(0, 1).contiguous(), split.per_head, tp, held_by_rank, mine);
  return moved.transpose(0, 1).contiguous();
}

// Every rank's per-head cache tensors ([b, C_h, dh], C_h per head) to the heads' new owners.
std::vector<at::Tensor> regroup_cache(const std::vector<at::Tensor>& local, const model::TensorParallel& tp,
                                      const std::vector<std::vector<int64_t>>& held_by_rank,
                                      const std::vector<int64_t>& mine) {
  if (local.empty() || !local[0].defined()) return {};
  const int64_t b = local[0].size(0), dh = local[0].size(2), heads = static_cast<int64_t>(local.size());
  at::Tensor rows = at::zeros({heads}, at::kDouble);
  for (int64_t i = 0; i < heads; ++i) rows[i] = static_cast<double>(local[static_cast<size_t>(i)].size(1));
  at::Tensor longest = rows.max().reshape({1}).clone();
  tp.group->all_reduce(longest, model::ReduceOp::max);
  const int64_t c_max = static_cast<int64_t>(longest.item<double>());
  // Right-aligned in a [heads, b, c_max, dh] block: the newest rows last, as in the cache.
  at::Tensor block = at::zeros({heads, b, c_max, dh}, local[0].options());
  for (int64_t i = 0; i < heads; ++i) {
    const at::Tensor& t = local[static_cast<size_t>(i)];
    block[i].narrow(1, c_max - t.size(1), t.size(1)).copy_(t);
  }
  at::Tensor all = at::empty({block.numel() * tp.size}, block.options());
  tp.group->all_gather(block.reshape({-1}), all);
  at::Tensor all_rows = at::empty({heads * tp.size}, at::kDouble);
  tp.group->all_gather(rows, all_rows);
  const at::Tensor gathered = all.view({tp.size, heads, b, c_max, dh});
  std::map<int64_t, at::Tensor> by_head;
  for (int r = 0; r < tp.size; ++r) {
    const auto& held = held_by_rank[static_cast<size_t>(r)];
    for (size_t i = 0; i < held.size(); ++i) {
      const int64_t c = static_cast<int64_t>(all_rows[r * heads + static_cast<int64_t>(i)].item<double>());
      by_head[held[i]] = gathered[r][static_cast<int64_t>(i)].narrow(1, c_max - c, c).clone();
    }
  }
  std::vector<at::Tensor> out;
  for (int64_t h : mine) out.push_back(by_head.at(h));
  return out;
}

}  // namespace

std::vector<std::vector<double>> head_costs(const std::vector<std::vector<double>>& spans,
                                            const model::ModelConfig& c) {
  std::vector<std::vector<double>> costs;
  for (const auto& layer : spans) {
    std::vector<double> row;
    for (double z : layer) row.push_back(static_cast<double>(kernels::effective_window(z, c.span_ramp, c.attn_span)));
    costs.push_back(row);
  }
  return costs;
}

int64_t kv_cache_bytes(const std::vector<model::ModelCache>& caches) {
  int64_t bytes = 0;
  for (const auto& cache : caches) {
    for (const auto& layer : cache) {
      for (const auto* list : {&layer.keys, &layer.values}) {
        for (const auto& t : *list) {
          if (t.defined()) bytes += t.numel() * static_cast<int64_t>(t.element_size());
        }
      }
    }
  }
  return bytes;
}

void move_heads(model::AdaptiveSpanLM& model, Optimizer& optimizer, std::vector<model::ModelCache>& caches,
                const cluster::HeadPlacement& from, const cluster::HeadPlacement& to) {
  const model::TensorParallel& tp = model.tensor_parallel();
  if (!tp.active()) return;
  if (model.config().cache != model::CacheMode::kv) {
    throw std::invalid_argument("head rebalancing needs --cache kv (hidden caches are sized by each rank's own heads)");
  }
  const size_t layers = from.size();
  std::vector<std::vector<std::vector<int64_t>>> held(layers);  // [layer][rank] -> heads before the move
  std::vector<std::vector<int64_t>> mine(layers);               // [layer] -> this rank's heads after
  for (size_t l = 0; l < layers; ++l) {
    for (int r = 0; r < tp.size; ++r) held[l].push_back(heads_of(from, l, r));
    mine[l] = heads_of(to, l, tp.rank);
  }
  const int64_t dh = model.config().head_dim();
  at::NoGradGuard no_grad;

  // Optimizer state first (export_slot may be collective and reads the current layout).
  const auto named = model.named_parameters();
  for (const auto& slot : optimizer.slots()) {
    std::vector<at::Tensor> state = optimizer.export_slot(slot);
    for (size_t i = 0; i < named.size(); ++i) {
      const model::HeadSplit split = model::head_split_of(named[i].key(), dh);
      const int l = model::AdaptiveSpanLM::layer_of(named[i].key());
      if (split.dim >= 0 && l >= 0)
        state[i] = regroup(state[i], split, tp, held[static_cast<size_t>(l)], mine[static_cast<size_t>(l)]);
    }
    optimizer.import_slot(slot, state);
  }
  for (const auto& p : named) {
    const model::HeadSplit split = model::head_split_of(p.key(), dh);
    const int l = model::AdaptiveSpanLM::layer_of(p.key());
    if (split.dim < 0 || l < 0) continue;
    at::Tensor param = p.value();
    param.set_data(regroup(param.detach(), split, tp, held[static_cast<size_t>(l)], mine[static_cast<size_t>(l)]));
  }
  for (auto& cache : caches) {
    for (size_t l = 0; l < cache.size() && l < layers; ++l) {
      cache[l].keys = regroup_cache(cache[l].keys, tp, held[l], mine[l]);
      cache[l].values = regroup_cache(cache[l].values, tp, held[l], mine[l]);
    }
  }
  for (size_t l = 0; l < layers; ++l) model.set_heads(l, mine[l]);
}

}  // namespace adaspan::trainer
