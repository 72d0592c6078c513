#pragma once
// bf16 mixed precision (Micikevicius et al. 2018, with bf16 instead of fp16: no loss scaling).
// The parameters and the optimizer state stay in their own dtype (fp32: the master copy); inside
// an AutocastScope ATen runs the ops of its lower-precision list (linear, matmul, ...) in bf16 and
// keeps its fp32 list (softmax, losses, reductions) in fp32. The attention kernels and the span
// computations run in the parameters' dtype (FullPrecisionRegion): a span in bf16 would be
// quantised to S/256 bytes, and the kernels' dz sums thousands of terms.
#include <ATen/core/Tensor.h>
#include <c10/core/DeviceType.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include <string>

namespace adaspan::model {

enum class Precision { fp32, bf16 };

Precision parse_precision(const std::string& name);  // "fp32" | "bf16"; throws std::invalid_argument
std::string to_string(Precision precision);

// bf16 autocast for `device` while alive (nothing for fp32); restores the previous state.
class AutocastScope {
 public:
  AutocastScope(Precision precision, c10::DeviceType device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType device_;
  bool was_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

// Autocast off while alive, inside an AutocastScope or not.
class FullPrecisionRegion {
 private:
  c10::impl::ExcludeDispatchKeyGuard no_autocast_{c10::autocast_dispatch_keyset};
};

// `t` in the dtype of `like` (the parameters' dtype): undoes autocast's bf16 on the way in.
at::Tensor in_dtype_of(const at::Tensor& t, const at::Tensor& like);

}  // namespace adaspan::model
