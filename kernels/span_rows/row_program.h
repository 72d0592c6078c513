#pragma once
// Adaptive-span attention as row programs: one program computes one query row (forward, and dQ /
// d(q·pe) / dz in backward), another one key row (dK, dV). Each program reads only global memory
// and writes only its own row, so the same source runs as one CUDA thread per row
// (cuda_runner.cu) and as a loop on the host (host_runner.cpp), which is how the CPU tests hold
// this code, not a copy of it, to the float64 reference.
//
// Math (docs/kernels.md §1.2-1.3, §2), per batch row b and query i:
//   x_ij = i + Lc - 1 - j                  (distance - 1; key j < 0 is the zero cache: k = v = 0)
//   s_ij = scale·(q_i·k_j + qp_i[x_ij])    qp_i[x] = q_i·key_pe[:, S-1-x], one GEMM before the call
//   m_ij = clamp((R + z_i - x_ij)/R, 0, 1), z_i the head's span (or query i's own span)
//   LSE_i = log Σ_j m_ij e^{s_ij} over x < E_i = min(W, floor(z_i + R) + 1)
//   out_i = Σ_j m_ij e^{s_ij - LSE_i} ζ_ij v_j      (ζ: dropout keep-mask / (1 - p), Philox)
// Backward (FlashAttention-2 algebra with the mask as a factor), D_i = dO_i·out_i:
//   e_ij = e^{s_ij - LSE_i},  dP_ij = ζ_ij dO_i·v_j,  dm_ij = e_ij (dP_ij - D_i)
//   dS_ij = scale·m_ij dm_ij:  dq_i = Σ_j dS_ij k_j,  dk_j = Σ_i dS_ij q_i,  dqp_i[x_ij] = dS_ij
//   dv_j = Σ_i m_ij e_ij ζ_ij dO_i,  dz_i = (1/R) Σ_{j: z_i <= x_ij <= z_i + R} dm_ij
// The loop bound E_i is read from z on the device: keys past the span are never loaded and no
// host synchronisation is needed. Nothing is atomic, so results are bitwise reproducible.
#include "kernels/philox.h"

#include <cmath>
#include <cstdint>

namespace adaspan::kernels {

// Raw pointers and sizes of one call. Rows are contiguous: q, out, d_out, dq [B, M, D];
// k, v, dk, dv [B, Lc + M, D]; qp, dqp [B, M, W]; lse, delta, dz_rows [B, M].
template <class T>
struct SpanRowsArgs {
  const T* q = nullptr;
  const T* k = nullptr;
  const T* v = nullptr;
  const T* qp = nullptr;
  const T* z = nullptr;        // span in bytes of query (b, i): z[b·z_batch_stride + i·z_row_stride]
  int64_t z_batch_stride = 0;  // 0 and 0: one span for the head
  int64_t z_row_stride = 0;
  int64_t batch = 0, block = 0, cache_len = 0;  // B, M, Lc
  int64_t window = 0;                           // W: columns of qp; E_i <= W
  T ramp = 32, scale = 1;
  float dropout = 0;  // p; 0 = off
  uint64_t seed = 0;  // Philox seed of the keep-mask
  // forward outputs
  T* out = nullptr;
  T* lse = nullptr;
  // backward inputs and outputs
  const T* d_out = nullptr;
  const T* delta = nullptr;  // D_i = dO_i·out_i
  T* dq = nullptr;           // written (not accumulated); the caller adds dqp·pe
  T* dk = nullptr;
  T* dv = nullptr;
  T* dqp = nullptr;      // columns x >= E_i are left as they were (zero them first)
  T* dz_rows = nullptr;  // dL/dz_i per query row (sum them for a per-head span)
  // Key-range split (0: none): each row's keys in chunks of key_chunk distances, with partials
  // part_acc [B·M, chunks, D], part_max and part_total [B·M, chunks] (reused by backward for dq, dz).
  int64_t key_chunk = 0;
  T* part_acc = nullptr;
  T* part_max = nullptr;
  T* part_total = nullptr;
};

// Exact exp/log on both sides (not the device's fast intrinsics): correctness first.
ADASPAN_HOST_DEVICE float rows_exp(float a) { return ::expf(a); }
ADASPAN_HOST_DEVICE double rows_exp(double a) { return ::exp(a); }
ADASPAN_HOST_DEVICE float rows_log(float a) { return ::logf(a); }
ADASPAN_HOST_DEVICE double rows_log(double a) { return ::log(a); }
ADASPAN_HOST_DEVICE float rows_floor(float a) { return ::floorf(a); }
ADASPAN_HOST_DEVICE double rows_floor(double a) { return ::floor(a); }

// e^{s - LSE} <= 1/m for a key with m > 0, but the key at x = z + R (m = 0, kept for dz) is left
// out of the LSE and can overflow there with a huge score (then 0·inf = NaN in dq, dk). Its exponent
// is capped; keys with m > 0 never reach the cap (1/m < e^16 in float32, e^36 in float64).
constexpr double kRampEndExponentCap = 40;
template <class T>
ADASPAN_HOST_DEVICE T capped_exp(T a) {
  return rows_exp(a < T(kRampEndExponentCap) ? a : T(kRampEndExponentCap));
}

template <class T>
ADASPAN_HOST_DEVICE T row_span(const SpanRowsArgs<T>& a, int64_t b, int64_t i) {
  return a.z[b * a.z_batch_stride + i * a.z_row_stride];
}

// E_i = min(W, floor(z_i + R) + 1): the clamp's gradient is inclusive at m = 0 (x = z + R).
template <class T>
ADASPAN_HOST_DEVICE int64_t row_keys(const SpanRowsArgs<T>& a, T z) {
  const T zc = z < T(0) ? T(0) : z;
  const int64_t e = static_cast<int64_t>(rows_floor(zc + a.ramp)) + 1;
  return e < a.window ? e : a.window;
}

template <class T>
ADASPAN_HOST_DEVICE T span_mask_at(T z, T ramp, int64_t x) {
  const T m = (ramp + z - static_cast<T>(x)) / ramp;
  return m < T(0) ? T(0) : (m > T(1) ? T(1) : m);
}

// ζ for element (b, i, x): 0 or 1/(1 - p).
template <class T>
ADASPAN_HOST_DEVICE T keep_factor(const SpanRowsArgs<T>& a, int64_t b, int64_t i, int64_t x) {
  if (a.dropout <= 0.0f) return T(1);
  const float u = philox_uniform(a.seed, static_cast<uint64_t>(b * a.block + i), static_cast<uint64_t>(x));
  return u < a.dropout ? T(0) : T(1) / (T(1) - static_cast<T>(a.dropout));
}

template <int D, class T>
ADASPAN_HOST_DEVICE T dot_row(const T (&r)[D], const T* w) {
  T s = 0;
#pragma unroll
  for (int d = 0; d < D; ++d) s += r[d] * w[d];
  return s;
}

// Keys of row i are processed in ranges ("chunks") of key_chunk distances: x in
// [c·key_chunk, min((c+1)·key_chunk, E_i)). With one chunk a program writes its results directly;
// with several (a head at a long span would otherwise serialise the grid on few rows) each
// (row, chunk) program writes a partial and a merge program combines them in chunk order
// (flash-decoding: partial softmaxes rescaled to a common max; gradients summed).
template <class T>
ADASPAN_HOST_DEVICE int64_t row_chunks(const SpanRowsArgs<T>& a) {
  return a.key_chunk <= 0 ? 1 : (a.window + a.key_chunk - 1) / a.key_chunk;
}

template <class T>
ADASPAN_HOST_DEVICE void chunk_range(const SpanRowsArgs<T>& a, int64_t keys_of_row, int64_t chunk, int64_t* begin,
                                     int64_t* end) {
  if (a.key_chunk <= 0) {
    *begin = 0;
    *end = keys_of_row;
    return;
  }
  *begin = chunk * a.key_chunk;
  *end = *begin + a.key_chunk < keys_of_row ? *begin + a.key_chunk : keys_of_row;
}

// Forward over one row's keys x in [x_begin, x_end) by the online (running-max) softmax:
// acc = Σ m e^{s - run_max} ζ v, total = Σ m e^{s - run_max}. total = 0 if no key has m > 0.
template <int D, class T>
ADASPAN_HOST_DEVICE void forward_keys(const SpanRowsArgs<T>& a, int64_t b, int64_t i, int64_t x_begin, int64_t x_end,
                                      T (&acc)[D], T* run_max_out, T* total_out) {
  const int64_t keys = a.cache_len + a.block;
  const T* q = a.q + (b * a.block + i) * D;
  const T* qp = a.qp + (b * a.block + i) * a.window;
  T qr[D];
#pragma unroll
  for (int d = 0; d < D; ++d) {
    qr[d] = q[d];
    acc[d] = 0;
  }
  const T z = row_span(a, b, i);
  T run_max = 0, total = 0;
  bool seen = false;  // run_max is set by the first key with m > 0 (x = 0 whenever z >= 0)
  for (int64_t x = x_begin; x < x_end; ++x) {
    const T m = span_mask_at(z, a.ramp, x);
    if (m <= T(0)) continue;
    const int64_t j = i + a.cache_len - 1 - x;
    const T* kj = a.k + (b * keys + (j >= 0 ? j : 0)) * D;
    const T s = a.scale * (qp[x] + (j >= 0 ? dot_row<D>(qr, kj) : T(0)));
    const T new_max = (!seen || s > run_max) ? s : run_max;
    const T rescale = seen ? rows_exp(run_max - new_max) : T(0);
    seen = true;
    const T p = m * rows_exp(s - new_max);
    total = total * rescale + p;
    const T pv = j >= 0 ? p * keep_factor(a, b, i, x) : T(0);
    const T* vj = a.v + (b * keys + (j >= 0 ? j : 0)) * D;
#pragma unroll
    for (int d = 0; d < D; ++d) acc[d] = acc[d] * rescale + pv * vj[d];
    run_max = new_max;
  }
  *run_max_out = run_max;
  *total_out = total;
}

// Forward of query row i, key chunk `chunk`: out_i and LSE_i directly when there is one chunk,
// else the chunk's partial (acc, max, total) for span_rows_forward_merge.
template <int D, class T>
ADASPAN_HOST_DEVICE void span_rows_forward(const SpanRowsArgs<T>& a, int64_t b, int64_t i, int64_t chunk = 0) {
  const int64_t row = b * a.block + i;
  int64_t x_begin, x_end;
  chunk_range(a, row_keys(a, row_span(a, b, i)), chunk, &x_begin, &x_end);
  T acc[D], run_max, total;
  forward_keys<D>(a, b, i, x_begin, x_end, acc, &run_max, &total);
  if (row_chunks(a) == 1) {
#pragma unroll
    for (int d = 0; d < D; ++d) a.out[row * D + d] = acc[d] / total;
    a.lse[row] = run_max + rows_log(total);
    return;
  }
  const int64_t part = row * row_chunks(a) + chunk;
#pragma unroll
  for (int d = 0; d < D; ++d) a.part_acc[part * D + d] = acc[d];
  a.part_max[part] = run_max;
  a.part_total[part] = total;
}

// out_i = Σ_c e^{max_c - M} acc_c / Σ_c e^{max_c - M} total_c, M = max_c max_c over chunks with keys.
template <int D, class T>
ADASPAN_HOST_DEVICE void span_rows_forward_merge(const SpanRowsArgs<T>& a, int64_t b, int64_t i) {
  const int64_t row = b * a.block + i, chunks = row_chunks(a);
  T top = 0;
  bool seen = false;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t part = row * chunks + c;
    if (a.part_total[part] > T(0) && (!seen || a.part_max[part] > top)) top = a.part_max[part], seen = true;
  }
  T acc[D], total = 0;
#pragma unroll
  for (int d = 0; d < D; ++d) acc[d] = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t part = row * chunks + c;
    if (!(a.part_total[part] > T(0))) continue;
    const T w = rows_exp(a.part_max[part] - top);
    total += w * a.part_total[part];
#pragma unroll
    for (int d = 0; d < D; ++d) acc[d] += w * a.part_acc[part * D + d];
  }
#pragma unroll
  for (int d = 0; d < D; ++d) a.out[row * D + d] = acc[d] / total;
  a.lse[row] = top + rows_log(total);
}

// Backward of query row i, key chunk `chunk`: dqp_i over the chunk's x, and dq_i and dz_i (whole,
// or the chunk's partials for span_rows_backward_query_merge).
template <int D, class T>
ADASPAN_HOST_DEVICE void span_rows_backward_query(const SpanRowsArgs<T>& a, int64_t b, int64_t i, int64_t chunk = 0) {
  const int64_t keys = a.cache_len + a.block;
  const int64_t row = b * a.block + i;
  T qr[D], gr[D], dq[D];
#pragma unroll
  for (int d = 0; d < D; ++d) {
    qr[d] = a.q[row * D + d];
    gr[d] = a.d_out[row * D + d];
    dq[d] = 0;
  }
  const T* qp = a.qp + row * a.window;
  T* dqp = a.dqp + row * a.window;
  const T z = row_span(a, b, i), lse = a.lse[row], delta = a.delta[row];
  int64_t x_begin, x_end;
  chunk_range(a, row_keys(a, z), chunk, &x_begin, &x_end);
  T dz = 0;
  for (int64_t x = x_begin; x < x_end; ++x) {
    const int64_t j = i + a.cache_len - 1 - x;
    const T* kj = a.k + (b * keys + (j >= 0 ? j : 0)) * D;
    const T* vj = a.v + (b * keys + (j >= 0 ? j : 0)) * D;
    const T s = a.scale * (qp[x] + (j >= 0 ? dot_row<D>(qr, kj) : T(0)));
    const T ex = capped_exp(s - lse);
    const T dp = j >= 0 ? keep_factor(a, b, i, x) * dot_row<D>(gr, vj) : T(0);
    const T dm = ex * (dp - delta);
    const T ds = a.scale * span_mask_at(z, a.ramp, x) * dm;
    if (j >= 0) {
#pragma unroll
      for (int d = 0; d < D; ++d) dq[d] += ds * kj[d];
    }
    dqp[x] = ds;
    if (static_cast<T>(x) >= z && static_cast<T>(x) <= z + a.ramp) dz += dm;
  }
  if (row_chunks(a) == 1) {
#pragma unroll
    for (int d = 0; d < D; ++d) a.dq[row * D + d] = dq[d];
    a.dz_rows[row] = dz / a.ramp;
    return;
  }
  const int64_t part = row * row_chunks(a) + chunk;
#pragma unroll
  for (int d = 0; d < D; ++d) a.part_acc[part * D + d] = dq[d];
  a.part_total[part] = dz;
}

// dq_i and dz_i as the sums of the chunks' partials, in chunk order.
template <int D, class T>
ADASPAN_HOST_DEVICE void span_rows_backward_query_merge(const SpanRowsArgs<T>& a, int64_t b, int64_t i) {
  const int64_t row = b * a.block + i, chunks = row_chunks(a);
  T dq[D], dz = 0;
#pragma unroll
  for (int d = 0; d < D; ++d) dq[d] = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t part = row * chunks + c;
#pragma unroll
    for (int d = 0; d < D; ++d) dq[d] += a.part_acc[part * D + d];
    dz += a.part_total[part];
  }
#pragma unroll
  for (int d = 0; d < D; ++d) a.dq[row * D + d] = dq[d];
  a.dz_rows[row] = dz / a.ramp;
}

// One key row of the backward pass: dk_j and dv_j over the queries that see key j
// (x = i + Lc - 1 - j in [0, W), and x < E_i).
template <int D, class T>
ADASPAN_HOST_DEVICE void span_rows_backward_key(const SpanRowsArgs<T>& a, int64_t b, int64_t j) {
  const int64_t keys = a.cache_len + a.block;
  T kr[D], vr[D], dk[D], dv[D];
#pragma unroll
  for (int d = 0; d < D; ++d) {
    kr[d] = a.k[(b * keys + j) * D + d];
    vr[d] = a.v[(b * keys + j) * D + d];
    dk[d] = 0;
    dv[d] = 0;
  }
  const int64_t first = j - a.cache_len + 1 > 0 ? j - a.cache_len + 1 : 0;  // x = 0
  const int64_t end_w = j - a.cache_len + 1 + a.window;                     // x = W
  const int64_t end = end_w < a.block ? end_w : a.block;
  for (int64_t i = first; i < end; ++i) {
    const int64_t x = i + a.cache_len - 1 - j;
    const T z = row_span(a, b, i);
    if (x >= row_keys(a, z)) continue;
    const int64_t row = b * a.block + i;
    const T* qi = a.q + row * D;
    const T* gi = a.d_out + row * D;
    const T s = a.scale * (a.qp[row * a.window + x] + dot_row<D>(kr, qi));
    const T mp = span_mask_at(z, a.ramp, x) * capped_exp(s - a.lse[row]);  // P_ij
    const T keep = keep_factor(a, b, i, x);
    const T dp = keep * dot_row<D>(vr, gi);
    const T ds = a.scale * mp * (dp - a.delta[row]);
    const T pv = mp * keep;
#pragma unroll
    for (int d = 0; d < D; ++d) {
      dk[d] += ds * qi[d];
      dv[d] += pv * gi[d];
    }
  }
#pragma unroll
  for (int d = 0; d < D; ++d) {
    a.dk[(b * keys + j) * D + d] = dk[d];
    a.dv[(b * keys + j) * D + d] = dv[d];
  }
}

}  // namespace adaspan::kernels
