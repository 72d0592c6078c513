#pragma once
// The argument checks of the kernels' public entry points. A bad call gets a one-line
// std::invalid_argument that names the shapes or values at fault, e.g.
//   span_attention: q is [4, 256, 64] but k is [4, 300, 32]; k must be [B, Lc + M, d] = [4, >= 256, 64]
// instead of an ATen check failing deep inside an op, with its stack trace.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace adaspan::kernels {

// "[4, 256, 64]"; "undefined" for an undefined tensor.
std::string shape_of(const at::Tensor& t);

// Throws std::invalid_argument("<entry>: <what>").
[[noreturn]] void throw_bad_argument(const char* entry, const std::string& what);

// The layout every attention entry shares: q: [B, M, d]; k, v: [B, Lc + M, d] (Lc >= 0);
// key_pe: [d, S] with S = max_span; 1 <= window <= S.
void check_attention_inputs(const char* entry, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& key_pe, int64_t max_span, int64_t window);

// span_z: one value (0-dim or [1], the head's span) or [B, M] (each query's own span).
// Returns whether it is one value per query.
bool check_span_z(const char* entry, const at::Tensor& q, const at::Tensor& span_z);

}  // namespace adaspan::kernels
