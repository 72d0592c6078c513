#include "kernels/span_rows/span_attention_rows.h"

#include "kernels/shape_checks.h"
#include "kernels/span_rows/runners.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <limits>
#include <stdexcept>
#include <string>

#ifdef ADASPAN_WITH_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace adaspan::kernels {

bool span_rows_cuda_built() {
#ifdef ADASPAN_WITH_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}

namespace {

// key_pe's last W columns in distance order: column x is key_pe[:, S-1-x]. [d, W]
at::Tensor position_columns(const at::Tensor& key_pe, int64_t window) {
  return key_pe.narrow(1, key_pe.size(1) - window, window).flip({1});
}

template <class T>
SpanRowsArgs<T> base_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& qp,
                          const at::Tensor& z, double ramp, double dropout, uint64_t seed) {
  SpanRowsArgs<T> a;
  a.q = q.data_ptr<T>();
  a.k = k.data_ptr<T>();
  a.v = v.data_ptr<T>();
  a.qp = qp.data_ptr<T>();
  a.z = z.data_ptr<T>();
  a.z_batch_stride = z.dim() == 0 ? 0 : z.stride(0);
  a.z_row_stride = z.dim() == 0 ? 0 : z.stride(1);
  a.batch = q.size(0);
  a.block = q.size(1);
  a.cache_len = k.size(1) - q.size(1);
  a.window = qp.size(2);
  a.ramp = static_cast<T>(ramp);
  a.scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(q.size(2))));
  a.dropout = static_cast<float>(dropout);
  a.seed = seed;
  return a;
}

enum class Pass { forward, backward };

// The row programs of one pass: the CUDA kernels on the tensors' stream, or the host loop.
template <class T>
void launch(Pass pass, const SpanRowsArgs<T>& a, const at::Tensor& like) {
  const int64_t dim = like.size(2);
  if (like.is_cuda()) {
#ifdef ADASPAN_WITH_CUDA_KERNELS
    const c10::cuda::CUDAGuard guard(like.device());
    CUstream_st* stream = c10::cuda::getCurrentCUDAStream().stream();
    pass == Pass::forward ? span_rows_forward_cuda(a, dim, stream) : span_rows_backward_cuda(a, dim, stream);
    return;
#endif
  }
  pass == Pass::forward ? span_rows_forward_host(a, dim) : span_rows_backward_host(a, dim);
}

// The key-range split the row kernels run with (see SpanAttentionOptions::key_chunk).
int64_t resolved_key_chunk(int64_t requested, int64_t window, bool on_gpu) {
  if (requested >= 0) return requested;
  return on_gpu && window > kAutoKeyChunk ? kAutoKeyChunk : 0;
}

// Partial buffers for a split: [B·M, chunks, D] and 2 x [B·M, chunks]; undefined without one.
struct Partials {
  at::Tensor acc, max, total;

  Partials(const at::Tensor& q, int64_t window, int64_t key_chunk) {
    if (key_chunk <= 0 || window <= key_chunk) return;
    const int64_t chunks = (window + key_chunk - 1) / key_chunk, rows = q.size(0) * q.size(1);
    acc = at::empty({rows, chunks, q.size(2)}, q.options());
    max = at::empty({rows, chunks}, q.options());
    total = at::empty({rows, chunks}, q.options());
  }

  template <class T>
  void attach(SpanRowsArgs<T>& a, int64_t key_chunk) const {
    if (!acc.defined()) return;
    a.key_chunk = key_chunk;
    a.part_acc = acc.data_ptr<T>();
    a.part_max = max.data_ptr<T>();
    a.part_total = total.data_ptr<T>();
  }
};

// The position term q·pe is one GEMM before the row programs (docs/kernels.md §1.4, option E), and its
// gradient two GEMMs after: dq += dqp·pe^T, dpe = q^T·dqp. Saved for backward: LSE per row and out.
class SpanRowsFunction : public torch::autograd::Function<SpanRowsFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q_in, const at::Tensor& k_in,
                            const at::Tensor& v_in, const at::Tensor& key_pe, const at::Tensor& span_z, int64_t window,
                            double ramp, double dropout, int64_t key_chunk) {
    const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
    const at::Tensor z = span_z.detach().to(q.scalar_type()).contiguous();
    const at::Tensor qp = at::matmul(q, position_columns(key_pe, window)).contiguous();  // [B, M, W]
    // A fresh seed per call from ATen's CPU generator (at::manual_seed fixes it); backward reuses it.
    const uint64_t seed =
        dropout > 0
            ? static_cast<uint64_t>(at::randint(std::numeric_limits<int64_t>::max(), {1}, at::kLong).item<int64_t>())
            : 0;
    at::Tensor out = at::empty_like(q);
    at::Tensor lse = at::empty({q.size(0), q.size(1)}, q.options());
    const Partials parts(q, window, key_chunk);
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "span_rows_forward", [&] {
      SpanRowsArgs<scalar_t> a = base_args<scalar_t>(q, k, v, qp, z, ramp, dropout, seed);
      parts.attach(a, key_chunk);
      a.out = out.data_ptr<scalar_t>();
      a.lse = lse.data_ptr<scalar_t>();
      launch(Pass::forward, a, q);
    });
    ctx->save_for_backward({q, k, v, key_pe, span_z, qp, out, lse});
    ctx->saved_data["window"] = window;
    ctx->saved_data["ramp"] = ramp;
    ctx->saved_data["dropout"] = dropout;
    ctx->saved_data["seed"] = static_cast<int64_t>(seed);
    ctx->saved_data["key_chunk"] = key_chunk;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &key_pe = saved[3], &span_z = saved[4];
    const at::Tensor &qp = saved[5], &out = saved[6], &lse = saved[7];
    const int64_t window = ctx->saved_data["window"].toInt();
    const at::Tensor z = span_z.detach().to(q.scalar_type()).contiguous();
    const at::Tensor d_out = grad_outputs[0].contiguous();
    const at::Tensor delta = (d_out * out).sum(-1).contiguous();  // D_i = dO_i·out_i, [B, M]
    at::Tensor dq = at::empty_like(q), dk = at::empty_like(k), dv = at::empty_like(v);
    at::Tensor dqp = at::zeros_like(qp);
    at::Tensor dz_rows = at::empty_like(lse);
    const int64_t key_chunk = ctx->saved_data["key_chunk"].toInt();
    const Partials parts(q, window, key_chunk);
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "span_rows_backward", [&] {
      SpanRowsArgs<scalar_t> a =
          base_args<scalar_t>(q, k, v, qp, z, ctx->saved_data["ramp"].toDouble(), ctx->saved_data["dropout"].toDouble(),
                              static_cast<uint64_t>(ctx->saved_data["seed"].toInt()));
      a.lse = lse.data_ptr<scalar_t>();
      a.d_out = d_out.data_ptr<scalar_t>();
      a.delta = delta.data_ptr<scalar_t>();
      a.dq = dq.data_ptr<scalar_t>();
      a.dk = dk.data_ptr<scalar_t>();
      a.dv = dv.data_ptr<scalar_t>();
      a.dqp = dqp.data_ptr<scalar_t>();
      a.dz_rows = dz_rows.data_ptr<scalar_t>();
      parts.attach(a, key_chunk);
      launch(Pass::backward, a, q);
    });
    const at::Tensor pe_cols = position_columns(key_pe, window);  // [d, W]
    dq.add_(at::matmul(dqp, pe_cols.t()));
    at::Tensor d_key_pe = at::zeros_like(key_pe);
    d_key_pe.narrow(1, key_pe.size(1) - window, window)
        .copy_(at::mm(q.reshape({-1, q.size(2)}).t(), dqp.reshape({-1, window})).flip({1}));
    // A head's span gets the sum over its rows (a fixed-order reduction: deterministic).
    const at::Tensor d_z = (span_z.dim() == 0 ? dz_rows.sum() : dz_rows).to(span_z.scalar_type());
    return {dq, dk, dv, d_key_pe, d_z, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

std::string span_rows_refusal(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                              const at::Tensor& span_z) {
  for (const at::Tensor* t : {&k, &v, &key_pe, &span_z}) {
    if (t->device() != q.device()) return "q, k, v, key_pe and span_z must be on one device";
  }
  if (q.scalar_type() != at::kFloat && q.scalar_type() != at::kDouble) {
    return std::string("float32 or float64 tensors only, q is ") + c10::toString(q.scalar_type());
  }
  if (k.scalar_type() != q.scalar_type() || v.scalar_type() != q.scalar_type() ||
      key_pe.scalar_type() != q.scalar_type()) {
    return "q, k, v and key_pe must have one dtype";
  }
  if (!span_rows_support_head_dim(q.size(2))) {
    return "head dimension " + std::to_string(q.size(2)) + " not compiled (8, 16, 32, 64, 96, 128)";
  }
  if (q.is_cuda() && !span_rows_cuda_built()) return "CUDA tensor, but this build has no CUDA kernels";
  return "";
}

at::Tensor span_attention_rows(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                               const at::Tensor& span_z, const SpanAttentionOptions& options) {
  constexpr const char* kEntry = "span_attention_rows";
  check_attention_inputs(kEntry, q, k, v, key_pe, options.max_span, options.window);
  const bool per_query = check_span_z(kEntry, q, span_z);
  const std::string refusal = span_rows_refusal(q, k, v, key_pe, span_z);
  if (!refusal.empty()) throw_bad_argument(kEntry, refusal);
  if (options.normalizer != Normalizer::softmax || options.query_scale) {
    throw_bad_argument(kEntry, "softmax without query scales only (entmax15 and scales take the banded path)");
  }
  const double dropout = options.training ? options.dropout : 0.0;
  const at::Tensor z = per_query ? span_z : span_z.reshape({});  // a [1] span is the head's span
  return SpanRowsFunction::apply(q, k, v, key_pe, z, options.window, options.ramp, dropout,
                                 resolved_key_chunk(options.key_chunk, options.window, q.is_cuda()));
}

}  // namespace adaspan::kernels
