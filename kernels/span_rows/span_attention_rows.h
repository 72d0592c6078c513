#pragma once
// Adaptive-span attention through the row programs (row_program.h): the CUDA kernels
// (cuda_runner.cu) on a GPU tensor when this build has them, the same programs looped on the host
// otherwise (host_runner.cpp). Same semantics as span_attention (span_attention.h) for softmax
// without query scales, with one span per head or per query; span_attention runs it on the GPU
// tensors it takes. Tests and benchmarks call it directly to hold the row programs to references.
#include "kernels/span_attention.h"

#include <ATen/core/Tensor.h>

#include <string>

namespace adaspan::kernels {

// q: [B, M, d]; k, v: [B, Lc + M, d]; key_pe: [d, S]; span_z: 0-dim or [1] (the head's span,
// bytes) or [B, M] (each query's own span). options.window bounds the keys any query reads
// (x < window). Differentiable in q, k, v, key_pe and span_z. d must be one of 8, 16, 32, 64, 96,
// 128. Bad arguments: std::invalid_argument naming them.
at::Tensor span_attention_rows(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                               const at::Tensor& span_z, const SpanAttentionOptions& options);

// Why the row programs cannot run these (well-shaped) tensors where they are, "" when they can:
// tensors on several devices, a dtype other than float32/float64 or mixed dtypes, a head
// dimension without an instantiation, a CUDA tensor in a build without the CUDA kernels.
std::string span_rows_refusal(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                              const at::Tensor& span_z);

// Whether this build has the CUDA kernels (otherwise CUDA tensors are refused).
bool span_rows_cuda_built();

}  // namespace adaspan::kernels
