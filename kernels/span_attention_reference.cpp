#include "kernels/span_attention_reference.h"

#include "kernels/shape_checks.h"
#include "kernels/span_mask.h"

#include <ATen/ATen.h>

#include <cmath>

namespace adaspan::kernels {

at::Tensor span_attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& key_pe, const at::Tensor& span_z, int64_t max_span, double ramp) {
  constexpr const char* kEntry = "span_attention_reference";
  check_attention_inputs(kEntry, q, k, v, key_pe, max_span, max_span);
  if (check_span_z(kEntry, q, span_z))
    throw_bad_argument(kEntry, "span_z is " + shape_of(span_z) + " but must be one value");
  const int64_t block = q.size(1), dim = q.size(2);
  const int64_t S = max_span;
  // Prepend S zero keys so every x in [0, S) has a key: [B, S + Lc + M, d].
  at::Tensor keys = at::constant_pad_nd(k, {0, 0, S, 0});
  at::Tensor values = at::constant_pad_nd(v, {0, 0, S, 0});
  const int64_t n_keys = keys.size(1);
  const int64_t cache_len = k.size(1) - block + S;

  // distance[i][j] = x_ij + 1 for keys in the window, 0 (meaning "not visible") elsewhere.
  at::Tensor in_window = at::zeros({block, n_keys}, q.options().dtype(at::kBool));
  at::Tensor x_of = at::zeros({block, n_keys}, q.options());
  at::Tensor pe_index = at::zeros({block, n_keys}, q.options().dtype(at::kLong));
  auto win = in_window.accessor<bool, 2>();
  auto xa = x_of.accessor<double, 2>();
  auto pa = pe_index.accessor<int64_t, 2>();
  for (int64_t i = 0; i < block; ++i) {
    for (int64_t j = 0; j < n_keys; ++j) {
      const int64_t x = i + cache_len - 1 - j;
      if (x >= 0 && x < S) {
        win[i][j] = true;
        xa[i][j] = static_cast<double>(x);
        pa[i][j] = S - 1 - x;
      }
    }
  }
  const at::Tensor mask_matrix = span_mask(x_of, span_z, ramp) * in_window.to(q.scalar_type());

  at::Tensor content = at::matmul(q, keys.transpose(1, 2));  // [B, M, n_keys]
  at::Tensor q_pe = at::matmul(q, key_pe);                   // [B, M, S]
  at::Tensor position = at::gather(q_pe, 2, pe_index.unsqueeze(0).expand({q.size(0), block, n_keys}));
  at::Tensor scores = (content + position) / std::sqrt(static_cast<double>(dim));
  scores = scores.masked_fill(in_window.logical_not(), -INFINITY);
  at::Tensor weights = at::exp(scores - std::get<0>(scores.max(-1, true)).detach()) * mask_matrix;
  return at::matmul(weights / weights.sum(-1, true), values);
}

}  // namespace adaspan::kernels
