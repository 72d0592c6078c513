#pragma once
// What one layer carries from one block to the next (see CacheMode). Detached from autograd.
#include <ATen/core/Tensor.h>

#include <vector>

namespace adaspan::model {

struct LayerCache {
  at::Tensor hidden;               // hidden mode: [B, C, d_model] layer inputs; undefined = empty
  std::vector<at::Tensor> keys;    // kv mode: per head [B, C_h, d_head]; empty = all zero
  std::vector<at::Tensor> values;  // kv mode: per head [B, C_h, d_head]
  // Bytes of each stream before the block this cache precedes: places --attention sparse-fixed's
  // strided positions (training's blocks keep it a multiple of the stride; generation's do not).
  int64_t stream_position = 0;
};

using ModelCache = std::vector<LayerCache>;  // one per layer

}  // namespace adaspan::model
