#pragma once
// 1.5-entmax (Peters, Niculae & Martins 2019, "Sparse Sequence-to-Sequence Models", §3):
//   entmax15(x)_i = [x_i/2 - tau]_+^2,  tau such that sum_i entmax15(x)_i = 1.
// Like softmax a probability vector, but with exact zeros for low scores. Exact, sort-based
// threshold (the paper's Algorithm 2); backward dx = g·(dy - sum(g·dy)/sum(g)), g = sqrt(p).
// The normalizer of --normalizer entmax15 / asentmax. Entries of -inf get exactly 0 (each row needs
// at least one finite entry).
#include <ATen/core/Tensor.h>

namespace adaspan::kernels {

// Along the last dimension. Differentiable.
at::Tensor entmax15(const at::Tensor& x);

// Slow reference: tau by bisection (100 halvings in double), then [x/2 - tau]_+^2.
at::Tensor entmax15_bisection(const at::Tensor& x);

}  // namespace adaspan::kernels
