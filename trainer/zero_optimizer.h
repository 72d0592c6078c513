#pragma once
// ZeRO stage 1 (Rajbhandari et al. 2020): the optimizer state is sharded over the data-parallel
// ranks. The GradientReducer (Reduction::scatter) reduce-scatters each gradient bucket, padded to
// a multiple of the rank count (unlike llm.c, any parameter count works), so rank r holds the
// averaged gradient of chunk r of every bucket; it updates those elements with its share of the
// state, then every bucket's parameters are all-gathered. The update is the one of
// make_adagrad / make_adam: per-tensor (Adagrad) or global (Adam) gradient norms are summed over
// the shards with one small all-reduce. State memory per rank: 1 / ranks of the unsharded one.
// Checkpoints stay logical: export_slot all-gathers whole tensors, import_slot keeps the shard.
#include "trainer/gradient_reducer.h"
#include "trainer/optimizer.h"

#include <memory>

namespace adaspan::trainer {

struct ZeroOptions {
  std::string optimizer = "adagrad";  // adagrad | adam
  double clip = 0.03;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  CompleteSquares complete;  // tensor parallelism (see optimizer.h)
};

// `reducer` must use Reduction::scatter over the same parameters (in the same order).
std::unique_ptr<Optimizer> make_zero_optimizer(std::vector<at::Tensor> params, GradientReducer& reducer,
                                               const ZeroOptions& options);

}  // namespace adaspan::trainer
