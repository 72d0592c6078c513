// The span-aware head placement planner on hand-made span vectors.
#include "cluster/head_placement.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace adaspan {
namespace {

using cluster::plan_head_placement;

// Every layer keeps heads / ranks heads on every rank.
void expect_equal_counts(const cluster::HeadPlacement& owner, int ranks) {
  for (const auto& layer : owner) {
    for (int r = 0; r < ranks; ++r) {
      EXPECT_EQ(std::count(layer.begin(), layer.end(), r), static_cast<long>(layer.size() / ranks)) << "rank " << r;
    }
  }
}

TEST(HeadPlacement, SpreadsLongHeadsOverRanks) {
  // Two layers of 4 heads; the contiguous split puts both long heads of each layer on rank 0.
  const std::vector<std::vector<double>> costs{{1024, 1024, 32, 32}, {512, 600, 40, 40}};
  const auto contiguous = cluster::contiguous_placement(2, 4, 2);
  EXPECT_DOUBLE_EQ(cluster::max_load(costs, contiguous, 2), 1024 + 1024 + 512 + 600);
  const auto owner = plan_head_placement(costs, 2);
  expect_equal_counts(owner, 2);
  EXPECT_NE(owner[0][0], owner[0][1]);  // the two 1024s apart
  // Best possible: {1024, 32} + {600, 40} vs {1024, 32} + {512, 40} -> 1696.
  EXPECT_DOUBLE_EQ(cluster::max_load(costs, owner, 2), 1024 + 32 + 600 + 40);
}

TEST(HeadPlacement, OneHeadAtFullSpanAndTheRestSmall) {
  const std::vector<std::vector<double>> costs{{32, 32, 32, 32, 32, 32, 32, 4096}};
  const auto owner = plan_head_placement(costs, 4);
  expect_equal_counts(owner, 4);
  // The long head's rank gets the one other head it must take; nothing beats 4096 + 32.
  EXPECT_DOUBLE_EQ(cluster::max_load(costs, owner, 4), 4096 + 32);
}

TEST(HeadPlacement, TiesAndEqualCostsAreDeterministic) {
  const std::vector<std::vector<double>> costs{{64, 64, 64, 64}, {64, 64, 64, 64}};
  const auto a = plan_head_placement(costs, 2), b = plan_head_placement(costs, 2);
  EXPECT_EQ(a, b);
  expect_equal_counts(a, 2);
  EXPECT_DOUBLE_EQ(cluster::max_load(costs, a, 2), 256);
}

TEST(HeadPlacement, AsManyRanksAsHeadsBalancesAcrossLayers) {
  // H = ranks: one head per rank per layer; only the pairing across layers can be chosen.
  const std::vector<std::vector<double>> costs{{1000, 10}, {900, 20}};
  const auto owner = plan_head_placement(costs, 2);
  expect_equal_counts(owner, 2);
  EXPECT_NE(owner[0][0], owner[1][0]);  // the two long heads on different ranks
  EXPECT_DOUBLE_EQ(cluster::max_load(costs, owner, 2), 1020);
}

TEST(HeadPlacement, RejectsHeadsThatDoNotDivide) {
  EXPECT_THROW(plan_head_placement({{1, 2, 3}}, 2), std::invalid_argument);
}

}  // namespace
}  // namespace adaspan
