#pragma once
// Data-parallel gradient averaging, bucketed and overlapped with the backward pass (the scheme of
// PyTorch DDP and llm.c): parameters are grouped, in reverse order of use, into buckets of about
// `bucket_bytes` with one flat buffer each; a hook on every parameter copies its gradient into
// its bucket, and a full bucket is all-reduced at once (non-blocking) while backward goes on.
// Buckets are launched in index order on every rank, so all ranks issue the same collectives in
// the same order. finish() waits; each parameter's .grad() is then a view of the averaged bucket.
#include "model/process_group.h"

#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

namespace adaspan::trainer {

// With Reduction::scatter (ZeRO-1) each bucket is padded to a multiple of the group size and
// reduce-scattered instead: rank r receives the average of chunk r of every bucket (its
// owned_gradient), the optimizer updates those elements and all-gathers them; .grad() keeps this
// rank's own, unreduced gradient.
enum class Reduction { all_reduce, scatter };

class GradientReducer {
 public:
  // overlap = false: every bucket is reduced in finish(), after backward (for measurements).
  GradientReducer(std::vector<at::Tensor> params, model::ProcessGroup& group, int64_t bucket_bytes, bool overlap,
                  Reduction reduction = Reduction::all_reduce);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Before the step's first backward (clears the .grad() views). With `micro_batches` K > 1 the
  // gradients of K backward passes are summed into the buckets, and a bucket is reduced once its
  // parameters have all K: during the last backward, which the communication overlaps.
  void prepare(int64_t micro_batches = 1);
  void finish();  // after the last backward: every .grad() holds the DP average

  // Seconds finish() spent blocked on communication since the last call of this function.
  double take_wait_seconds();

  // Bucket layout (for the sharded optimizer): parameters (index, offset in the bucket's flat
  // buffer) and the padded size of each bucket.
  struct Member {
    size_t param;
    int64_t offset;
  };
  size_t bucket_count() const { return buckets_.size(); }
  const std::vector<Member>& bucket_members(size_t bucket) const { return buckets_[bucket].members; }
  int64_t bucket_size(size_t bucket) const { return buckets_[bucket].flat.numel(); }
  // Reduction::scatter, after finish(): the averaged gradient of this rank's chunk of `bucket`.
  const at::Tensor& owned_gradient(size_t bucket) const { return buckets_[bucket].owned; }
  model::ProcessGroup& group() { return group_; }

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    std::vector<Member> members;
    at::Tensor flat;
    at::Tensor owned;  // scatter: this rank's chunk of the reduced flat
    int64_t pending = 0;
    std::unique_ptr<model::CollectiveWork> work;
  };
  void on_gradient(size_t param, const at::Tensor& grad);
  void launch_ready();
  void launch(Bucket& bucket);

  std::vector<at::Tensor> params_;
  std::vector<unsigned> hooks_;     // per parameter, removed with the reducer
  bool active_ = false;             // between prepare() and finish()
  std::vector<at::Tensor> slices_;  // per parameter: its view in its bucket's flat buffer
  std::vector<size_t> bucket_of_;   // per parameter
  std::vector<int64_t> filled_;     // per parameter: gradients received this step
  int64_t micro_batches_ = 1;
  std::vector<Bucket> buckets_;
  size_t next_launch_ = 0;
  model::ProcessGroup& group_;
  bool overlap_;
  Reduction reduction_;
  double wait_seconds_ = 0;
};

}  // namespace adaspan::trainer
