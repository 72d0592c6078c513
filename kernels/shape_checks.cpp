#include "kernels/shape_checks.h"

#include <sstream>
#include <stdexcept>

namespace adaspan::kernels {

std::string shape_of(const at::Tensor& t) {
  if (!t.defined()) return "undefined";
  std::ostringstream out;
  out << '[';
  for (int64_t i = 0; i < t.dim(); ++i) out << (i > 0 ? ", " : "") << t.size(i);
  out << ']';
  return out.str();
}

void throw_bad_argument(const char* entry, const std::string& what) {
  throw std::invalid_argument(std::string(entry) + ": " + what);
}

void check_attention_inputs(const char* entry, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& key_pe, int64_t max_span, int64_t window) {
  if (!q.defined() || q.dim() != 3) throw_bad_argument(entry, "q is " + shape_of(q) + " but must be [B, M, d]");
  const int64_t batch = q.size(0), block = q.size(1), dim = q.size(2);
  const std::string qkv =
      "[" + std::to_string(batch) + ", >= " + std::to_string(block) + ", " + std::to_string(dim) + "]";
  if (!k.defined() || k.dim() != 3 || k.size(0) != batch || k.size(1) < block || k.size(2) != dim) {
    throw_bad_argument(entry,
                       "q is " + shape_of(q) + " but k is " + shape_of(k) + "; k must be [B, Lc + M, d] = " + qkv);
  }
  if (!v.defined() || v.sizes() != k.sizes()) {
    throw_bad_argument(entry, "k is " + shape_of(k) + " but v is " + shape_of(v) + "; v must have k's shape");
  }
  if (!key_pe.defined() || key_pe.dim() != 2 || key_pe.size(0) != dim || key_pe.size(1) != max_span) {
    throw_bad_argument(entry, "key_pe is " + shape_of(key_pe) + " but must be [d, S] = [" + std::to_string(dim) + ", " +
                                  std::to_string(max_span) + "]");
  }
  if (window < 1 || window > max_span) {
    throw_bad_argument(
        entry, "window " + std::to_string(window) + " is outside [1, S] = [1, " + std::to_string(max_span) + "]");
  }
}

bool check_span_z(const char* entry, const at::Tensor& q, const at::Tensor& span_z) {
  if (span_z.defined() && span_z.numel() == 1 && span_z.dim() <= 1) return false;
  if (span_z.defined() && span_z.dim() == 2 && span_z.size(0) == q.size(0) && span_z.size(1) == q.size(1)) return true;
  throw_bad_argument(entry, "span_z is " + shape_of(span_z) + " but must be one value or [B, M] = [" +
                                std::to_string(q.size(0)) + ", " + std::to_string(q.size(1)) + "]");
}

}  // namespace adaspan::kernels
