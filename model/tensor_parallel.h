#pragma once
// Tensor parallelism inside a group of ranks (Megatron-LM, Shoeybi et al. 2019): each rank of the
// group holds H/TP heads of every attention layer and ff/TP units of every feed-forward layer.
//
//   attention:    q, k, v = copy_to_tp_region(h) W_{q,k,v}[my heads]^T   (column parallel)
//                 out     = reduce_from_tp_region(concat_my_heads(...) W_o[:, my heads]^T)   (row parallel)
//   feed-forward: y = reduce_from_tp_region(relu(x W_1[my units]^T + b_1[my units]) W_2[:, my units]^T) + b_2
//   key_pe:       copy_to_tp_region(key_pe): each rank's heads use it; its gradient is summed.
// Everything else (embeddings, LayerNorms, the output layer) is replicated and computed the same
// on every rank of the group, so its gradient is the same there without communication.
// The two mappings are named by their forward / backward collective pair, as in Megatron's
// tensor_parallel/mappings.py.
#include "model/process_group.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace adaspan::model {

struct TensorParallel {
  ProcessGroup* group = nullptr;  // nullptr: no tensor parallelism
  int rank = 0, size = 1;
  bool active() const { return group != nullptr && size > 1; }
};

// Forward identity, backward all-reduce (sum) of the gradient over the group.
at::Tensor copy_to_tp_region(const at::Tensor& x, const TensorParallel& tp);
// Forward all-reduce (sum) over the group, backward identity.
at::Tensor reduce_from_tp_region(const at::Tensor& x, const TensorParallel& tp);

// The canonical heads rank `rank` of `size` holds: a contiguous range of heads / size.
std::vector<int64_t> contiguous_heads(int64_t heads, int rank, int size);

// (layer, head, value) triples from every rank of the group (this rank's in `triples`), as
// [layer][head] -> value; collective when tensor parallelism is active.
std::vector<std::vector<double>> gather_by_head(const std::vector<double>& triples, const TensorParallel& tp,
                                                size_t layers, int64_t heads);

// How a parameter (by name) is cut by heads: along `dim`, `per_head` consecutive entries per head
// in canonical head order; dim < 0 when it is not (feed-forward slices, replicated parameters).
struct HeadSplit {
  int dim = -1;
  int64_t per_head = 0;
};
HeadSplit head_split_of(const std::string& name, int64_t head_dim);

}  // namespace adaspan::model
