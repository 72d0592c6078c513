#pragma once
// What turns a query's scores into attention weights: softmax, or 1.5-entmax (entmax.h), a
// probability vector with exact zeros for low scores (--normalizer entmax15 / asentmax).
namespace adaspan::kernels {

enum class Normalizer { softmax, entmax15 };

}  // namespace adaspan::kernels
