#include "trainer/context_caches.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace adaspan::trainer {
namespace {

// [b, n·m, dh] of every rank of the group -> the positions of the last n blocks in order.
at::Tensor gathered(const at::Tensor& history, const model::ContextParallel& cp, int64_t chunk) {
  const int64_t b = history.size(0), n = history.size(1) / chunk, dh = history.size(2);
  const at::Tensor in = history.contiguous().view({-1});
  at::Tensor out = at::empty({cp.size * in.numel()}, in.options());
  cp.group->all_gather(in, out);
  // Rank r's history row j is position (j / m - n)·M + r·m + j % m of the blocks before.
  return out.view({cp.size, b, n, chunk, dh}).permute({1, 2, 0, 3, 4}).reshape({b, n * cp.size * chunk, dh});
}

// A logical cache [b, L, dh] -> this rank's chunks of the last n blocks, [b, n·m, dh].
at::Tensor own_chunks(const at::Tensor& logical, const model::ContextParallel& cp, int64_t chunk, int64_t blocks) {
  const int64_t b = logical.size(0), dh = logical.size(2), span = blocks * cp.size * chunk;
  at::Tensor full = at::zeros({b, span, dh}, logical.options());
  const int64_t rows = std::min(span, logical.size(1));
  full.narrow(1, span - rows, rows).copy_(logical.narrow(1, logical.size(1) - rows, rows));
  return full.view({b, blocks, cp.size, chunk, dh}).select(2, cp.rank).reshape({b, blocks * chunk, dh}).contiguous();
}

}  // namespace

std::vector<model::ModelCache> logical_caches(const std::vector<model::ModelCache>& chunk_caches,
                                              const model::ContextParallel& cp, int64_t chunk, int64_t max_span) {
  std::vector<model::ModelCache> out;
  for (const model::ModelCache& cache : chunk_caches) {
    model::ModelCache logical(cache.size());
    for (size_t l = 0; l < cache.size(); ++l) {
      logical[l].stream_position = cache[l].stream_position;
      for (size_t h = 0; h < cache[l].keys.size(); ++h) {
        for (auto [from, to] : {std::pair{&cache[l].keys, &logical[l].keys}, {&cache[l].values, &logical[l].values}}) {
          const at::Tensor all = gathered((*from)[h], cp, chunk);
          to->push_back(all.narrow(1, all.size(1) - std::min(max_span, all.size(1)), std::min(max_span, all.size(1))));
        }
      }
    }
    out.push_back(std::move(logical));
  }
  return out;
}

std::vector<model::ModelCache> chunk_caches(const std::vector<model::ModelCache>& logical,
                                            const model::ContextParallel& cp, int64_t chunk, int64_t max_span) {
  const int64_t block = chunk * cp.size, reach = (max_span + block - 1) / block;
  std::vector<model::ModelCache> out;
  for (const model::ModelCache& cache : logical) {
    model::ModelCache mine(cache.size());
    for (size_t l = 0; l < cache.size(); ++l) {
      mine[l].stream_position = cache[l].stream_position;
      int64_t longest = 0;
      for (const auto& k : cache[l].keys) longest = std::max(longest, k.size(1));
      const int64_t blocks = std::min(reach, (longest + block - 1) / block);  // the same for every head
      if (blocks == 0) continue;
      for (size_t h = 0; h < cache[l].keys.size(); ++h) {
        mine[l].keys.push_back(own_chunks(cache[l].keys[h], cp, chunk, blocks));
        mine[l].values.push_back(own_chunks(cache[l].values[h], cp, chunk, blocks));
      }
    }
    out.push_back(std::move(mine));
  }
  return out;
}

}  // namespace adaspan::trainer
