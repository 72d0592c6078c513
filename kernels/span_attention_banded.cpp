#include "kernels/span_attention_banded.h"

#include "kernels/attention_masks.h"
#include "kernels/banded_attention.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <vector>

namespace adaspan::kernels {
namespace {

constexpr int64_t kTokenTile = 64;      // queries per tile with per-query spans
constexpr int64_t kWindowGranule = 64;  // their windows change in steps of 64 keys

BandedAttentionOptions banded_options(const SpanAttentionOptions& o, int64_t window) {
  BandedAttentionOptions banded;
  banded.max_span = o.max_span;
  banded.window = window;
  banded.normalizer = o.normalizer;
  banded.dropout = o.dropout;
  banded.training = o.training;
  return banded;
}

// λ of a tile's queries, [B, count]; undefined (λ = 1) without query scales.
at::Tensor scale_of(const SpanAttentionOptions& o, const QueryTile& tile) {
  return o.query_scale ? o.query_scale(tile) : at::Tensor();
}

}  // namespace

at::Tensor span_attention_banded(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& key_pe, const at::Tensor& span_z, bool per_query,
                                 const SpanAttentionOptions& options) {
  // q: [B, M, d]; k, v: [B, Lc + M, d]
  const int64_t block = q.size(1), cache_len = k.size(1) - block;
  const double ramp = options.ramp;
  if (!per_query) {
    const at::Tensor mask = static_span_window(span_z, ramp, options.window);  // [1, 1, W]
    const at::Tensor scale = scale_of(options, {0, block, cache_len, options.window});
    return banded_attention(q, k, v, key_pe, mask, scale, banded_options(options, options.window));
  }
  std::vector<at::Tensor> tiles;
  for (int64_t first = 0; first < block; first += kTokenTile) {
    const int64_t count = std::min(kTokenTile, block - first);
    const at::Tensor z = span_z.narrow(1, first, count);  // [B, T]
    const int64_t window = effective_window(z.detach().max().item<double>(), ramp, options.max_span, kWindowGranule);
    const at::Tensor scale = scale_of(options, {first, count, cache_len + first, window});
    tiles.push_back(banded_attention(q.narrow(1, first, count), k.narrow(1, 0, cache_len + first + count),
                                     v.narrow(1, 0, cache_len + first + count), key_pe,
                                     dynamic_span_window(z, ramp, window), scale, banded_options(options, window)));
  }
  return at::cat(tiles, 1);
}

}  // namespace adaspan::kernels
