#include "kernels/banded_attention.h"

#include "kernels/band_layout.h"
#include "kernels/entmax.h"
#include "kernels/shape_checks.h"

#include <ATen/ATen.h>

#include <cmath>
#include <string>
#include <vector>

namespace adaspan::kernels {
namespace {

void check_shapes(const char* entry, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& key_pe, const at::Tensor& mask, const at::Tensor& scale,
                  const BandedAttentionOptions& o) {
  check_attention_inputs(entry, q, k, v, key_pe, o.max_span, o.window);
  const int64_t batch = q.size(0), block = q.size(1);
  if (!mask.defined() || mask.dim() != 3 || mask.size(2) != o.window || (mask.size(0) != 1 && mask.size(0) != batch) ||
      (mask.size(1) != 1 && mask.size(1) != block)) {
    throw_bad_argument(entry, "mask is " + shape_of(mask) + " but must be [1 or B, 1 or M, W] = [1 or " +
                                  std::to_string(batch) + ", 1 or " + std::to_string(block) + ", " +
                                  std::to_string(o.window) + "]");
  }
  if (scale.defined() && scale.sizes() != at::IntArrayRef{batch, block}) {
    throw_bad_argument(entry, "scale is " + shape_of(scale) + " but must be [B, M] = [" + std::to_string(batch) + ", " +
                                  std::to_string(block) + "]");
  }
}

}  // namespace

at::Tensor banded_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                            const at::Tensor& mask, const at::Tensor& scale, const BandedAttentionOptions& options) {
  check_shapes("banded_attention", q, k, v, key_pe, mask, scale, options);
  const int64_t block = q.size(1), window = options.window;
  const int64_t first_key = k.size(1) - block - window;                          // band row 0: query 0's farthest key
  const at::Tensor k_band = rows_zero_padded(k, first_key, window + block - 1);  // [B, W + M - 1, d]
  const at::Tensor v_band = rows_zero_padded(v, first_key, window + block - 1);
  const at::Tensor pe_window = key_pe.narrow(1, options.max_span - window, window);  // [d, W]

  // s: [B, M, W]
  at::Tensor s = (unskew(at::bmm(q, k_band.transpose(1, 2)), window) + at::matmul(q, pe_window)) /
                 std::sqrt(static_cast<double>(q.size(2)));
  if (scale.defined()) s = s * scale.unsqueeze(-1);
  s = s.masked_fill(mask <= 0, -INFINITY);
  const at::Tensor a = options.normalizer == Normalizer::softmax ? at::softmax(s, -1) : entmax15(s);
  at::Tensor p = a * mask;
  p = p / p.sum(-1, true);
  if (options.training && options.dropout > 0) p = at::dropout(p, options.dropout, true);
  return at::bmm(skew(p), v_band);  // [B, M, W + M - 1] x [B, W + M - 1, d]
}

at::Tensor banded_attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& key_pe, const at::Tensor& mask, const at::Tensor& scale,
                                      const BandedAttentionOptions& options) {
  check_shapes("banded_attention_reference", q, k, v, key_pe, mask, scale, options);
  const int64_t batch = q.size(0), block = q.size(1), dim = q.size(2), window = options.window;
  const int64_t cache_len = k.size(1) - block;
  const at::Tensor weights = mask.expand({batch, block, window});
  const at::Tensor zero = at::zeros({dim}, q.options());
  std::vector<at::Tensor> outputs;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < block; ++i) {
      std::vector<at::Tensor> scores, masks, values;
      for (int64_t x = 0; x < window; ++x) {
        const at::Tensor m = weights[b][i][window - 1 - x];
        if (m.item<double>() <= 0) continue;
        const int64_t j = i + cache_len - 1 - x;
        const at::Tensor key = j >= 0 ? k[b][j] : zero;
        at::Tensor score = (q[b][i].dot(key) + q[b][i].dot(key_pe.select(1, options.max_span - 1 - x))) /
                           std::sqrt(static_cast<double>(dim));
        if (scale.defined()) score = score * scale[b][i];
        scores.push_back(score);
        masks.push_back(m);
        values.push_back(j >= 0 ? v[b][j] : zero);
      }
      const at::Tensor s = at::stack(scores);
      const at::Tensor a = options.normalizer == Normalizer::softmax ? at::softmax(s, 0) : entmax15_bisection(s);
      const at::Tensor p = a * at::stack(masks);
      outputs.push_back((p / p.sum()).unsqueeze(1).mul(at::stack(values)).sum(0));
    }
  }
  return at::stack(outputs).view({batch, block, dim});
}

}  // namespace adaspan::kernels
