#include "kernels/span_attention_tiles.h"

#include "kernels/band_layout.h"
#include "kernels/shape_checks.h"
#include "kernels/span_mask.h"
#include "kernels/span_rows/row_program.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>

namespace adaspan::kernels {
namespace {

// Queries are processed in tiles of kQueryTile rows: a tile of T queries needs a window of
// W + T - 1 consecutive keys, so the work is M·(W + T) instead of the reference's M·(W + M).
constexpr int64_t kQueryTile = 64;

// The shapes one call works with. Queries are processed in tiles of T rows; tile t needs the
// band of keys [t·T + Lc - W, t·T + T - 2 + Lc] (W + T - 1 of them).
struct Geometry {
  int64_t batch, block, dim, span, window, tile, tiles, padded_block, band, cache_len, first_key, key_rows;

  // keys: Lc + M, the call's keys.
  Geometry(const at::Tensor& q, int64_t keys, int64_t max_span, int64_t window_)
      : batch(q.size(0)), block(q.size(1)), dim(q.size(2)), span(max_span), window(window_) {
    tile = std::min(kQueryTile, block);
    tiles = (block + tile - 1) / tile;
    padded_block = tiles * tile;
    band = window + tile - 1;
    cache_len = keys - block;
    first_key = cache_len - window;
    key_rows = window + padded_block - 1;
  }
  // Whether tile t's band of keys starts at or after key `late_keys` (the zero rows before the
  // first key count as late: such a band is never early).
  bool band_after(int64_t t, int64_t late_keys) const { return first_key + t * tile >= late_keys; }
};

// Gradient rows of the key window back onto the rows of k ([B, Lc + M, d]); rows of the window
// outside k were zero padding and get nothing.
at::Tensor unwindow_rows(const at::Tensor& window_grad, const at::Tensor& like, int64_t first) {
  at::Tensor out = at::zeros_like(like);
  const int64_t lo = std::max<int64_t>(first, 0);
  const int64_t hi = std::min<int64_t>(first + window_grad.size(1), like.size(1));
  if (hi > lo) out.narrow(1, lo, hi - lo).copy_(window_grad.narrow(1, lo - first, hi - lo));
  return out;
}

// Forward and backward written out (FlashAttention-2 algebra, docs/kernels.md §1.2)
// rather than left to autograd: autograd of the composed ops kept ~6 [B, M, W] tensors alive and
// spent most of its time copying them. Saved for backward: E = e^{s - LSE} ([B, M, W]); P = m·E.
class SpanAttentionFunction : public torch::autograd::Function<SpanAttentionFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, const at::Tensor& key_pe, const at::Tensor& span_z, int64_t max_span,
                            double ramp, int64_t window, double dropout, const std::optional<at::Tensor>& early,
                            int64_t late_keys) {
    const at::Tensor early_scores = early.value_or(at::Tensor());
    const Geometry g(q, k.size(1), max_span, window);
    const at::Tensor k_win = rows_zero_padded(k, g.first_key, g.key_rows);  // [B, W + Mp - 1, d]
    const at::Tensor v_win = rows_zero_padded(v, g.first_key, g.key_rows);
    const at::Tensor q_pad = rows_zero_padded(q, 0, g.padded_block).contiguous();  // [B, Mp, d]
    const at::Tensor pe_win = key_pe.narrow(1, g.span - g.window, g.window);       // [d, W]; column c: x = W-1-c
    const at::Tensor x = at::arange(g.window - 1, -1, -1, q.options());
    const at::Tensor mask = span_mask(x, span_z, ramp);  // [W]
    const at::Tensor masked_out = (mask == 0);
    // Keys past the ramp (x > z + R) get -inf: the 64-key rounding leaves some in the window, and a
    // large score there would overflow exp() and give inf·0. x = z + R itself (m = 0) stays: dz needs it.
    const at::Tensor beyond_ramp = x > (span_z.detach() + ramp);
    const double scale = 1.0 / std::sqrt(static_cast<double>(g.dim));

    // [B, Mp, W]: the position term (and the early keys' scores, if given), becomes E in place.
    at::Tensor probs_e = early_scores.defined() ? early_scores : at::matmul(q_pad, pe_win);
    at::Tensor keep;  // dropout keep-mask scaled by 1/(1-p), [B, Mp, W]
    if (dropout > 0) keep = at::bernoulli(at::empty_like(probs_e), 1.0 - dropout).div_(1.0 - dropout);
    at::Tensor out = at::empty({g.batch, g.padded_block, g.dim}, q.options());
    for (int64_t t = 0; t < g.tiles; ++t) {
      const at::Tensor qt = q_pad.narrow(1, t * g.tile, g.tile);  // [B, T, d]
      const at::Tensor kt = k_win.narrow(1, t * g.tile, g.band);  // [B, band, d]
      const at::Tensor vt = v_win.narrow(1, t * g.tile, g.band);
      at::Tensor st = probs_e.narrow(1, t * g.tile, g.tile);  // [B, T, W]
      // The keys' term, unless early_span_scores added it (a band with no late key).
      if (!early_scores.defined() || !g.band_after(t, late_keys)) {
        st.add_(unskew(at::bmm(qt, kt.transpose(1, 2)), g.window));
      }
      st.mul_(scale).masked_fill_(beyond_ramp, -INFINITY);
      // E = e^{s - LSE}, LSE = log sum_j m_j e^{s_j}; the max runs over unmasked keys (x = 0 has m = 1).
      const at::Tensor row_max = std::get<0>(st.masked_fill(masked_out, -INFINITY).max(-1, true));
      st.sub_(row_max).clamp_max_(kRampEndExponentCap).exp_();  // see capped_exp
      st.div_((st * mask).sum(-1, true));
      at::Tensor p = st * mask;
      if (keep.defined()) p.mul_(keep.narrow(1, t * g.tile, g.tile));
      out.narrow(1, t * g.tile, g.tile).copy_(at::bmm(skew(p), vt));
    }
    ctx->save_for_backward({q, k, v, key_pe, span_z, probs_e, keep});
    ctx->saved_data["max_span"] = max_span;
    ctx->saved_data["ramp"] = ramp;
    ctx->saved_data["window"] = window;
    return g.padded_block == g.block ? out : out.narrow(1, 0, g.block).contiguous();
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &key_pe = saved[3], &span_z = saved[4];
    const at::Tensor &probs_e = saved[5], &keep = saved[6];
    const double ramp = ctx->saved_data["ramp"].toDouble();
    const Geometry g(q, k.size(1), ctx->saved_data["max_span"].toInt(), ctx->saved_data["window"].toInt());

    const at::Tensor k_win = rows_zero_padded(k, g.first_key, g.key_rows);
    const at::Tensor v_win = rows_zero_padded(v, g.first_key, g.key_rows);
    const at::Tensor q_pad = rows_zero_padded(q, 0, g.padded_block).contiguous();
    const at::Tensor d_out = rows_zero_padded(grad_outputs[0], 0, g.padded_block).contiguous();
    const at::Tensor pe_win = key_pe.narrow(1, g.span - g.window, g.window);
    const at::Tensor x = at::arange(g.window - 1, -1, -1, q.options());
    const at::Tensor mask = span_mask(x, span_z, ramp);
    const double scale = 1.0 / std::sqrt(static_cast<double>(g.dim));

    at::Tensor dq_pad = at::zeros_like(q_pad);
    at::Tensor dk_win = at::zeros({g.batch, g.key_rows, g.dim}, q.options());
    at::Tensor dv_win = at::zeros_like(dk_win);
    at::Tensor d_scores = at::empty_like(probs_e);           // dL/ds · scale, [B, Mp, W]
    at::Tensor d_mask = at::zeros({g.window}, q.options());  // sum_{b,i} E (dP - D), per column
    for (int64_t t = 0; t < g.tiles; ++t) {
      const at::Tensor qt = q_pad.narrow(1, t * g.tile, g.tile);
      const at::Tensor kt = k_win.narrow(1, t * g.tile, g.band);
      const at::Tensor vt = v_win.narrow(1, t * g.tile, g.band);
      const at::Tensor dot = d_out.narrow(1, t * g.tile, g.tile);   // [B, T, d]
      const at::Tensor et = probs_e.narrow(1, t * g.tile, g.tile);  // [B, T, W]
      at::Tensor p = et * mask;
      at::Tensor dp = unskew(at::bmm(dot, vt.transpose(1, 2)), g.window);  // dO V^T: [B, T, W]
      at::Tensor p_used = p;                                               // the probabilities that multiplied V
      if (keep.defined()) {
        const at::Tensor kp = keep.narrow(1, t * g.tile, g.tile);
        p_used = p * kp;
        dp = dp * kp;
      }
      dv_win.narrow(1, t * g.tile, g.band).baddbmm_(skew(p_used).transpose(1, 2), dot);
      const at::Tensor dd = (p * dp).sum(-1, true);  // D_i = sum_j P_ij dP_ij
      const at::Tensor dm = et * (dp - dd);          // dL/dm_ij
      d_mask.add_(dm.sum(at::IntArrayRef{0, 1}));
      at::Tensor ds = d_scores.narrow(1, t * g.tile, g.tile);
      at::mul_out(ds, dm, mask).mul_(scale);  // dL/ds_ij = m E (dP - D), times 1/sqrt(d)
      const at::Tensor ds_band = skew(ds);    // [B, T, band]
      dq_pad.narrow(1, t * g.tile, g.tile).baddbmm_(ds_band, kt);
      dk_win.narrow(1, t * g.tile, g.band).baddbmm_(ds_band.transpose(1, 2), qt);
    }
    // The position term q·pe: dq += dS pe^T, dpe = q^T dS, summed over batch and queries.
    dq_pad.add_(at::matmul(d_scores, pe_win.t()));
    at::Tensor d_key_pe = at::zeros_like(key_pe);
    d_key_pe.narrow(1, g.span - g.window, g.window)
        .copy_(at::mm(q_pad.reshape({-1, g.dim}).t(), d_scores.reshape({-1, g.window})));
    // dm/dz = 1/R on z <= x <= z + R (inclusive, as ATen's clamp backward).
    const at::Tensor z = span_z.detach();
    const at::Tensor ramp_cols = ((x >= z) & (x <= z + ramp)).to(q.scalar_type()) / ramp;
    const at::Tensor d_z = (d_mask * ramp_cols).sum().reshape(span_z.sizes());

    return {dq_pad.narrow(1, 0, g.block),
            unwindow_rows(dk_win, k, g.first_key),
            unwindow_rows(dv_win, v, g.first_key),
            d_key_pe,
            d_z,
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

at::Tensor span_attention_tiles(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                                const at::Tensor& span_z, const SpanAttentionOptions& options) {
  const double dropout = options.training ? options.dropout : 0.0;
  const EarlyScores& early = options.early;
  if (early.scores.defined()) {
    const Geometry g(q, k.size(1), options.max_span, options.window);
    if (early.scores.sizes() != at::IntArrayRef{g.batch, g.padded_block, g.window} ||
        early.scores.scalar_type() != q.scalar_type() || early.scores.device() != q.device() ||
        early.keys != k.size(1)) {
      throw std::invalid_argument("span_attention: early scores " + shape_of(early.scores) + " for " +
                                  std::to_string(early.keys) + " keys do not fit q " + shape_of(q) + ", k " +
                                  shape_of(k) + " and window " + std::to_string(options.window));
    }
  }
  return SpanAttentionFunction::apply(q, k, v, key_pe, span_z, options.max_span, options.ramp, options.window, dropout,
                                      early.scores.defined() ? std::optional<at::Tensor>(early.scores) : std::nullopt,
                                      early.late_keys);
}

EarlyScores span_attention_tiles_early(const at::Tensor& q, const at::Tensor& k_present, const at::Tensor& key_pe,
                                       int64_t late_keys, const SpanAttentionOptions& options) {
  at::NoGradGuard no_grad;
  const int64_t keys = late_keys + k_present.size(1);
  const Geometry g(q, keys, options.max_span, options.window);
  // k_present's rows in the forward's key window; the late rows read as zero and are not used.
  const at::Tensor k_win = rows_zero_padded(k_present.detach(), g.first_key - late_keys, g.key_rows);
  const at::Tensor q_pad = rows_zero_padded(q.detach(), 0, g.padded_block).contiguous();
  const at::Tensor pe_win = key_pe.detach().narrow(1, g.span - g.window, g.window);
  EarlyScores early{at::matmul(q_pad, pe_win), late_keys, keys};  // as the forward computes it
  // The keys' term of the tiles whose whole band is there. Not of a band only partly there: its
  // product in two parts would not be the whole band's bit for bit (BLAS sums differently for
  // another shape), and zero rows in two whole-band products would double its cost.
  for (int64_t t = 0; t < g.tiles; ++t) {
    if (!g.band_after(t, late_keys)) continue;
    const at::Tensor qt = q_pad.narrow(1, t * g.tile, g.tile);
    const at::Tensor kt = k_win.narrow(1, t * g.tile, g.band);
    early.scores.narrow(1, t * g.tile, g.tile).add_(unskew(at::bmm(qt, kt.transpose(1, 2)), g.window));
  }
  return early;
}

}  // namespace adaspan::kernels
