#pragma once
// Span-aware head rebalancing across the tensor-parallel ranks of a replica: moves heads (their
// rows of W_q/W_k/W_v, columns of W_o, span parameters, optimizer state and KV caches) to the
// placement cluster::plan_head_placement computes from the learned spans. The function the model
// computes does not change, only which rank computes which head. Collective over the TP group;
// every data-parallel replica makes the same move.
#include "cluster/head_placement.h"
#include "model/adaptive_span_lm.h"
#include "trainer/optimizer.h"

#include <vector>

namespace adaspan::trainer {

// Each head's cost: the keys its window covers (kernels::effective_window of its span).
std::vector<std::vector<double>> head_costs(const std::vector<std::vector<double>>& spans,
                                            const model::ModelConfig& config);

// Moves every layer's heads from `from` to `to` (owner[layer][head] = TP rank).
void move_heads(model::AdaptiveSpanLM& model, Optimizer& optimizer, std::vector<model::ModelCache>& caches,
                const cluster::HeadPlacement& from, const cluster::HeadPlacement& to);

// Bytes of this rank's KV caches.
int64_t kv_cache_bytes(const std::vector<model::ModelCache>& caches);

}  // namespace adaspan::trainer
