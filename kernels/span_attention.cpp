#include "kernels/span_attention.h"

#include "kernels/span_mask.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace adaspan::kernels {
namespace {

// Queries are processed in tiles of kQueryTile rows: a tile of T queries needs a window of
// W + T - 1 consecutive keys, so the work is M·(W + T) instead of the reference's M·(W + M).
constexpr int64_t kQueryTile = 64;

// [.., T, W + T - 1] -> [.., T, W]: out[r, c] = in[r, r + c]. The reference's _unskew, per tile.
at::Tensor unskew(const at::Tensor& band, int64_t window) {
  const auto sizes = band.sizes();
  const int64_t tile = sizes[sizes.size() - 2];
  const int64_t width = sizes.back();  // window + tile - 1
  std::vector<int64_t> flat(sizes.begin(), sizes.end() - 2);
  flat.push_back(tile * width);
  at::Tensor x = at::constant_pad_nd(band.reshape(flat), {0, tile});
  std::vector<int64_t> rows(sizes.begin(), sizes.end() - 2);
  rows.push_back(tile);
  rows.push_back(width + 1);
  return x.view(rows).narrow(-1, 0, window);
}

// [.., T, W] -> [.., T, W + T - 1]: out[r, r + c] = in[r, c], zero elsewhere. Inverse of unskew.
at::Tensor skew(const at::Tensor& probs) {
  const auto sizes = probs.sizes();
  const int64_t tile = sizes[sizes.size() - 2];
  const int64_t window = sizes.back();
  at::Tensor x = at::constant_pad_nd(probs, {0, tile});  // [.., T, W + T]
  std::vector<int64_t> flat(sizes.begin(), sizes.end() - 2);
  flat.push_back(tile * (window + tile));
  x = x.reshape(flat).narrow(-1, 0, tile * (window + tile - 1));
  std::vector<int64_t> rows(sizes.begin(), sizes.end() - 2);
  rows.push_back(tile);
  rows.push_back(window + tile - 1);
  return x.view(rows);
}

// Rows [first, first + count) of t along dim 1, zero rows where that range leaves [0, size).
at::Tensor rows_zero_padded(const at::Tensor& t, int64_t first, int64_t count) {
  const int64_t size = t.size(1);
  const int64_t lo = std::max<int64_t>(first, 0);
  const int64_t hi = std::min<int64_t>(first + count, size);
  at::Tensor inside = t.narrow(1, lo, std::max<int64_t>(hi - lo, 0));
  const int64_t pad_before = lo - first;
  const int64_t pad_after = count - pad_before - inside.size(1);
  if (pad_before == 0 && pad_after == 0) return inside;
  return at::constant_pad_nd(inside, {0, 0, pad_before, pad_after});
}

}  // namespace

int64_t effective_window(double z, double ramp, int64_t max_span, int64_t granule) {
  const int64_t needed = static_cast<int64_t>(std::floor(z + ramp)) + 1;
  const int64_t rounded = (std::max<int64_t>(needed, 1) + granule - 1) / granule * granule;
  return std::min(rounded, max_span);
}

at::Tensor span_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& key_pe, const at::Tensor& span_z,
                          const SpanAttentionOptions& options) {
  const int64_t batch = q.size(0), block = q.size(1), dim = q.size(2);
  const int64_t span = options.max_span, window = options.window;
  if (window < 1 || window > span || key_pe.size(1) != span || k.size(1) < block ||
      v.sizes() != k.sizes() || key_pe.size(0) != dim) {
    throw std::invalid_argument("span_attention: inconsistent shapes or window");
  }
  const int64_t cache_len = k.size(1) - block;
  const int64_t tile = std::min(kQueryTile, block);
  const int64_t tiles = (block + tile - 1) / tile;
  const int64_t padded_block = tiles * tile;
  const int64_t band = window + tile - 1;

  // Query i's window is keys [i + Lc - W, i + Lc - 1]; tile t covers [t·T + Lc - W, t·T + T - 2 + Lc].
  const int64_t first_key = cache_len - window;
  const int64_t key_rows = window + padded_block - 1;
  at::Tensor k_win = rows_zero_padded(k, first_key, key_rows);  // [B, W + Mp - 1, d]
  at::Tensor v_win = rows_zero_padded(v, first_key, key_rows);
  at::Tensor k_tiles = k_win.unfold(1, band, tile);             // [B, tiles, d, band]
  at::Tensor v_tiles = v_win.unfold(1, band, tile).transpose(-1, -2);  // [B, tiles, band, d]

  at::Tensor q_pad = rows_zero_padded(q, 0, padded_block);
  at::Tensor q_tiles = q_pad.reshape({batch, tiles, tile, dim});    // [B, tiles, T, d]

  // Column c of the window is x = W - 1 - c, i.e. key_pe column S - W + c.
  at::Tensor content = unskew(at::matmul(q_tiles, k_tiles), window);   // [B, tiles, T, W]
  at::Tensor position = at::matmul(q_tiles, key_pe.narrow(1, span - window, window));
  at::Tensor scores = (content + position) * (1.0 / std::sqrt(static_cast<double>(dim)));

  at::Tensor x = at::arange(window - 1, -1, -1, q.options());   // [W]
  at::Tensor mask = span_mask(x, span_z, options.ramp);

  // Exact masked softmax: m·e^{s - max} / sum. The max runs over unmasked keys only (x = 0
  // always has m = 1), so a large masked score cannot underflow the row.
  at::Tensor row_max =
      std::get<0>(scores.detach().masked_fill(mask.detach() == 0, -INFINITY).max(-1, true));
  at::Tensor weights = at::exp(scores - row_max) * mask;
  at::Tensor probs = weights / weights.sum(-1, true);
  if (options.dropout > 0 && options.training) probs = at::dropout(probs, options.dropout, true);

  at::Tensor out = at::matmul(skew(probs), v_tiles);             // [B, tiles, T, d]
  return out.reshape({batch, padded_block, dim}).narrow(1, 0, block);
}

}  // namespace adaspan::kernels
