#pragma once
// Which tensor-parallel rank holds which attention head, chosen from the learned spans.
//
// A head's cost (KV-cache rows and attention work) grows with its window, and learned spans differ
// by 10-100x between heads, so a fixed split can leave one rank with most of the long heads. Every
// layer keeps H / ranks heads on every rank (parameter shapes stay the same); within that, the plan
// minimises the largest per-rank sum of costs over all layers: longest-processing-time first
// (heads by decreasing cost to the least loaded rank with room in that layer), then pairwise swaps
// within a layer while one lowers the maximum. Pure and deterministic: every rank computes the
// same plan from the same costs.
#include <cstdint>
#include <vector>

namespace adaspan::cluster {

// owner[layer][head] = rank.
using HeadPlacement = std::vector<std::vector<int>>;

// costs[layer][head] >= 0; heads per layer divisible by ranks.
HeadPlacement plan_head_placement(const std::vector<std::vector<double>>& costs, int ranks);

// The contiguous split (rank r: heads [r·H/ranks, (r+1)·H/ranks)), as training starts.
HeadPlacement contiguous_placement(int64_t layers, int64_t heads, int ranks);

// Sum of costs per rank, and its maximum.
std::vector<double> rank_loads(const std::vector<std::vector<double>>& costs, const HeadPlacement& owner, int ranks);
double max_load(const std::vector<std::vector<double>>& costs, const HeadPlacement& owner, int ranks);

}  // namespace adaspan::cluster
