#pragma once
// Caches under context parallelism, to and from their logical form. A rank's cache holds, per
// head, its own chunks of the last n blocks ([b, n·m, dh], oldest first: model/context_parallel.h);
// a checkpoint holds the logical cache, the positions before the next block in order
// ([b, L, dh], as one rank would keep it), so any --cp resumes any checkpoint.
#include "model/context_parallel.h"
#include "model/layer_cache.h"

#include <vector>

namespace adaspan::trainer {

// Collective over cp.group: every rank gets the whole logical cache of its streams (the last
// min(S, n·M) positions of each head). `chunk` = m.
std::vector<model::ModelCache> logical_caches(const std::vector<model::ModelCache>& chunk_caches,
                                              const model::ContextParallel& cp, int64_t chunk, int64_t max_span);

// This rank's chunks of a logical cache (no communication): the last ceil(L / M) blocks, at most
// those a window of S reaches; positions the logical cache lacks are zero.
std::vector<model::ModelCache> chunk_caches(const std::vector<model::ModelCache>& logical,
                                            const model::ContextParallel& cp, int64_t chunk, int64_t max_span);

}  // namespace adaspan::trainer
