#pragma once
// Caches by rows (streams): gradient accumulation keeps one cache per micro-batch of streams,
// checkpoints store one per rank; these convert between the two. Undefined or empty entries
// (no cache yet) stay empty.
#include "model/layer_cache.h"

#include <vector>

namespace adaspan::model {

// The rows of `parts` caches (each [b_k, ...] per tensor) stacked in order: [sum b_k, ...].
ModelCache concat_rows(const std::vector<ModelCache>& parts);
// `cache` cut into `parts` equal row ranges (rows must divide by parts).
std::vector<ModelCache> split_rows(const ModelCache& cache, int64_t parts);

}  // namespace adaspan::model
