#include "trainer/gradient_reducer.h"

#include <ATen/ATen.h>

#include <chrono>
#include <stdexcept>

namespace adaspan::trainer {

GradientReducer::GradientReducer(std::vector<at::Tensor> params, model::ProcessGroup& group, int64_t bucket_bytes,
                                 bool overlap, Reduction reduction)
    : params_(std::move(params)), group_(group), overlap_(overlap), reduction_(reduction) {
  slices_.resize(params_.size());
  bucket_of_.resize(params_.size());
  filled_.assign(params_.size(), 0);
  // Reverse registration order approximates the order in which backward produces gradients.
  std::vector<std::vector<size_t>> groups(1);
  int64_t bytes = 0;
  for (size_t i = params_.size(); i-- > 0;) {
    const int64_t size = params_[i].numel() * static_cast<int64_t>(params_[i].element_size());
    if (!groups.back().empty() && bytes + size > bucket_bytes) {
      groups.emplace_back();
      bytes = 0;
    }
    groups.back().push_back(i);
    bytes += size;
  }
  for (const auto& members : groups) {
    Bucket bucket;
    bucket.params = members;
    int64_t numel = 0;
    for (size_t i : members) numel += params_[i].numel();
    if (reduction_ == Reduction::scatter) {
      const int64_t ranks = group_.size();
      numel = (numel + ranks - 1) / ranks * ranks;  // equal chunks; the padding stays zero
    }
    const at::TensorOptions options = params_[members.front()].options().requires_grad(false);
    bucket.flat = at::zeros({numel}, options);
    if (reduction_ == Reduction::scatter) bucket.owned = at::zeros({numel / group_.size()}, options);
    int64_t offset = 0;
    for (size_t i : members) {
      bucket.members.push_back({i, offset});
      slices_[i] = bucket.flat.narrow(0, offset, params_[i].numel()).view(params_[i].sizes());
      bucket_of_[i] = buckets_.size();
      offset += params_[i].numel();
    }
    buckets_.push_back(std::move(bucket));
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    hooks_.push_back(params_[i].register_hook([this, i](const at::Tensor& grad) { on_gradient(i, grad); }));
  }
}

GradientReducer::~GradientReducer() {
  for (size_t i = 0; i < params_.size(); ++i) params_[i].remove_hook(hooks_[i]);
}

void GradientReducer::prepare(int64_t micro_batches) {
  micro_batches_ = micro_batches;
  // Gradients are views into the buckets (set by finish()); drop them so that backward hands
  // each parameter a fresh gradient instead of accumulating into the bucket.
  for (auto& p : params_) p.mutable_grad() = at::Tensor();
  for (auto& bucket : buckets_) {
    bucket.pending = static_cast<int64_t>(bucket.params.size());
    bucket.work.reset();
  }
  filled_.assign(params_.size(), 0);
  next_launch_ = 0;
  active_ = true;
}

void GradientReducer::on_gradient(size_t param, const at::Tensor& grad) {
  // More gradients than micro-batches would race with a running all-reduce.
  if (!active_ || filled_[param] >= micro_batches_) {
    throw std::logic_error("GradientReducer: a gradient outside prepare()/finish() or more than one per micro-batch");
  }
  if (filled_[param] == 0) {
    slices_[param].copy_(grad);
  } else {
    slices_[param].add_(grad);
  }
  if (++filled_[param] < micro_batches_) return;
  --buckets_[bucket_of_[param]].pending;
  if (!overlap_) return;
  launch_ready();
  for (size_t b = 0; b < next_launch_; ++b) buckets_[b].work->poll();
}

void GradientReducer::launch(Bucket& bucket) {
  bucket.work = reduction_ == Reduction::scatter ? group_.reduce_scatter_async(bucket.flat, bucket.owned)
                                                 : group_.all_reduce_async(bucket.flat, model::ReduceOp::sum);
}

void GradientReducer::launch_ready() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) launch(buckets_[next_launch_++]);
}

void GradientReducer::finish() {
  // Parameters that got no gradient this step contribute zeros.
  for (size_t i = 0; i < params_.size(); ++i) {
    if (filled_[i] == 0) slices_[i].zero_();
    if (filled_[i] < micro_batches_) {
      filled_[i] = micro_batches_;
      --buckets_[bucket_of_[i]].pending;
    }
  }
  launch_ready();
  const auto start = std::chrono::steady_clock::now();
  for (auto& bucket : buckets_) bucket.work->wait();
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  at::NoGradGuard no_grad;
  if (reduction_ == Reduction::scatter) {
    for (auto& bucket : buckets_) bucket.owned.mul_(1.0 / static_cast<double>(group_.size()));
    active_ = false;
    return;
  }
  // The averages stay in the buckets: each .grad() becomes a view of its slice (no copy back).
  for (auto& bucket : buckets_) bucket.flat.mul_(1.0 / static_cast<double>(group_.size()));
  for (size_t i = 0; i < params_.size(); ++i) params_[i].mutable_grad() = slices_[i];
  active_ = false;
}

double GradientReducer::take_wait_seconds() {
  const double s = wait_seconds_;
  wait_seconds_ = 0;
  return s;
}

}  // namespace adaspan::trainer
