#include "cluster/head_placement.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace adaspan::cluster {

HeadPlacement contiguous_placement(int64_t layers, int64_t heads, int ranks) {
  HeadPlacement owner(static_cast<size_t>(layers), std::vector<int>(static_cast<size_t>(heads)));
  for (auto& layer : owner) {
    for (int64_t h = 0; h < heads; ++h) layer[static_cast<size_t>(h)] = static_cast<int>(h / (heads / ranks));
  }
  return owner;
}

std::vector<double> rank_loads(const std::vector<std::vector<double>>& costs, const HeadPlacement& owner, int ranks) {
  std::vector<double> load(static_cast<size_t>(ranks), 0.0);
  for (size_t l = 0; l < costs.size(); ++l) {
    for (size_t h = 0; h < costs[l].size(); ++h) load[static_cast<size_t>(owner[l][h])] += costs[l][h];
  }
  return load;
}

double max_load(const std::vector<std::vector<double>>& costs, const HeadPlacement& owner, int ranks) {
  const std::vector<double> load = rank_loads(costs, owner, ranks);
  return *std::max_element(load.begin(), load.end());
}

HeadPlacement plan_head_placement(const std::vector<std::vector<double>>& costs, int ranks) {
  if (ranks <= 0) throw std::invalid_argument("plan_head_placement: ranks must be positive");
  HeadPlacement owner(costs.size());
  std::vector<double> load(static_cast<size_t>(ranks), 0.0);
  // Layers with the costliest heads first: their placement matters most.
  std::vector<size_t> layers(costs.size());
  std::iota(layers.begin(), layers.end(), 0);
  const auto top = [&](size_t l) {
    return costs[l].empty() ? 0.0 : *std::max_element(costs[l].begin(), costs[l].end());
  };
  std::stable_sort(layers.begin(), layers.end(), [&](size_t a, size_t b) { return top(a) > top(b); });

  for (size_t l : layers) {
    const size_t heads = costs[l].size();
    if (heads % static_cast<size_t>(ranks) != 0)
      throw std::invalid_argument("plan_head_placement: heads not divisible by ranks");
    const size_t room_per_rank = heads / static_cast<size_t>(ranks);
    owner[l].assign(heads, 0);
    std::vector<size_t> order(heads), room(static_cast<size_t>(ranks), room_per_rank);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return costs[l][a] > costs[l][b]; });
    for (size_t h : order) {
      int best = -1;
      for (int r = 0; r < ranks; ++r) {
        if (room[static_cast<size_t>(r)] > 0 &&
            (best < 0 || load[static_cast<size_t>(r)] < load[static_cast<size_t>(best)]))
          best = r;
      }
      owner[l][h] = best;
      --room[static_cast<size_t>(best)];
      load[static_cast<size_t>(best)] += costs[l][h];
    }
  }

  // Swaps of two heads of one layer between the most loaded rank and another, best first.
  for (int round = 0; round < 1000; ++round) {
    const int worst = static_cast<int>(std::max_element(load.begin(), load.end()) - load.begin());
    double best_max = load[static_cast<size_t>(worst)];
    size_t best_l = 0, best_a = 0, best_b = 0;
    bool found = false;
    for (size_t l = 0; l < costs.size(); ++l) {
      for (size_t a = 0; a < costs[l].size(); ++a) {
        if (owner[l][a] != worst) continue;
        for (size_t b = 0; b < costs[l].size(); ++b) {
          const int other = owner[l][b];
          const double delta = costs[l][a] - costs[l][b];
          if (other == worst || delta <= 0) continue;
          std::vector<double> after = load;
          after[static_cast<size_t>(worst)] -= delta;
          after[static_cast<size_t>(other)] += delta;
          const double m = *std::max_element(after.begin(), after.end());
          if (m < best_max - 1e-12) {
            best_max = m;
            best_l = l, best_a = a, best_b = b;
            found = true;
          }
        }
      }
    }
    if (!found) break;
    const double delta = costs[best_l][best_a] - costs[best_l][best_b];
    const int other = owner[best_l][best_b];
    load[static_cast<size_t>(worst)] -= delta;
    load[static_cast<size_t>(other)] += delta;
    std::swap(owner[best_l][best_a], owner[best_l][best_b]);
  }
  return owner;
}

}  // namespace adaspan::cluster
