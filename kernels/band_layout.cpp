#include "kernels/band_layout.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace adaspan::kernels {

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

}  // namespace adaspan::kernels
