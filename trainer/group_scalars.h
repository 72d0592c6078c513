#pragma once
// Host scalars and short strings across a group of ranks (identity on one rank): metrics
// reductions and agreement, so that one rank's failure is every rank's decision, never a hang.
#include "model/process_group.h"

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace adaspan::trainer {

class GroupScalars {
 public:
  explicit GroupScalars(model::ProcessGroup* group) : group_(group) {}

  double reduce(double value, model::ReduceOp op) const {
    if (!group_) return value;
    at::Tensor t = at::full({1}, value, at::kDouble);
    group_->all_reduce(t, op);
    return t.item<double>();
  }
  std::vector<double> reduce(const std::vector<double>& values, model::ReduceOp op) const {
    if (!group_) return values;
    at::Tensor t = at::tensor(values, at::kDouble);
    group_->all_reduce(t, op);
    return {t.data_ptr<double>(), t.data_ptr<double>() + t.numel()};
  }
  std::vector<double> gather(double value) const {
    if (!group_) return {value};
    at::Tensor out = at::zeros({group_->size()}, at::kDouble);
    group_->all_gather(at::full({1}, value, at::kDouble), out);
    return {out.data_ptr<double>(), out.data_ptr<double>() + out.numel()};
  }
  // Every rank learns whether all ranks succeeded.
  bool all_ok(bool ok) const { return reduce(ok ? 1.0 : 0.0, model::ReduceOp::min) > 0; }
  // Rank 0's `text` on every rank.
  std::string broadcast(const std::string& text) const {
    if (!group_) return text;
    at::Tensor size = at::full({1}, static_cast<int64_t>(text.size()), at::kLong);
    group_->broadcast(size, 0);
    at::Tensor chars = at::zeros({size.item<int64_t>()}, at::kLong);
    if (group_->rank() == 0) {
      for (size_t i = 0; i < text.size(); ++i) chars[static_cast<int64_t>(i)] = static_cast<unsigned char>(text[i]);
    }
    if (chars.numel() > 0) group_->broadcast(chars, 0);
    std::string out(static_cast<size_t>(chars.numel()), '\0');
    for (int64_t i = 0; i < chars.numel(); ++i)
      out[static_cast<size_t>(i)] = static_cast<char>(chars[i].item<int64_t>());
    return out;
  }

 private:
  model::ProcessGroup* group_;
};

}  // namespace adaspan::trainer
