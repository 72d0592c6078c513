#include "kernels/span_attention.h"

#include "kernels/shape_checks.h"
#include "kernels/span_attention_banded.h"
#include "kernels/span_attention_tiles.h"
#include "kernels/span_rows/span_attention_rows.h"

#include <ATen/ATen.h>

#include <string>

namespace adaspan::kernels {
namespace {

enum class Path { rows, tiles, banded };

// The one place that decides which implementation runs (see SpanKernel).
Path choose_path(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                 const at::Tensor& span_z, bool per_query, const SpanAttentionOptions& options) {
  const bool plain_softmax = options.normalizer == Normalizer::softmax && !options.query_scale;
  if (options.kernel == SpanKernel::rows) return Path::rows;  // it refuses what it cannot run
  if (!plain_softmax) return Path::banded;
  // On a GPU, the CUDA row kernels where this build has them and they take these tensors.
  if (options.kernel == SpanKernel::automatic && q.is_cuda() && span_rows_refusal(q, k, v, key_pe, span_z).empty()) {
    return Path::rows;
  }
  return per_query ? Path::banded : Path::tiles;
}

}  // namespace

at::Tensor span_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                          const at::Tensor& span_z, const SpanAttentionOptions& options) {
  check_attention_inputs("span_attention", q, k, v, key_pe, options.max_span, options.window);
  const bool per_query = check_span_z("span_attention", q, span_z);
  const Path path = choose_path(q, k, v, key_pe, span_z, per_query, options);
  if (options.early.scores.defined() && path != Path::tiles) {
    throw_bad_argument("span_attention", "early scores are for the aten tiles path (one span per head, softmax)");
  }
  switch (path) {
    case Path::rows:
      return span_attention_rows(q, k, v, key_pe, span_z, options);
    case Path::tiles:
      return span_attention_tiles(q, k, v, key_pe, span_z, options);
    case Path::banded:
      break;
  }
  return span_attention_banded(q, k, v, key_pe, span_z, per_query, options);
}

bool takes_early_scores(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                        const SpanAttentionOptions& options) {
  if (q.dim() != 3) throw_bad_argument("takes_early_scores", "q is " + shape_of(q) + " but must be [B, M, d]");
  const at::Tensor one_span = at::zeros({}, q.options());
  return choose_path(q, k, v, key_pe, one_span, false, options) == Path::tiles;
}

EarlyScores early_span_scores(const at::Tensor& q, const at::Tensor& k_present, const at::Tensor& key_pe,
                              int64_t late_keys, const SpanAttentionOptions& options) {
  if (late_keys < 0 || late_keys + k_present.size(1) < q.size(1)) {
    throw_bad_argument("early_span_scores", "k_present " + shape_of(k_present) + " and " + std::to_string(late_keys) +
                                                " late keys are fewer keys than the " + std::to_string(q.size(1)) +
                                                " queries");
  }
  return span_attention_tiles_early(q, k_present, key_pe, late_keys, options);
}

}  // namespace adaspan::kernels
