#pragma once
// ProcessGroup over an MPI communicator. CPU tensors go straight to MPI; CUDA tensors are staged
// through host memory (slower than NCCL, but works with several ranks on one GPU, which NCCL
// refuses).
#include "cluster/communicator.h"
#include "model/process_group.h"

namespace adaspan::cluster {

class MpiProcessGroup final : public model::ProcessGroup {
 public:
  explicit MpiProcessGroup(const Communicator& comm);  // borrows comm
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::unique_ptr<model::CollectiveWork> all_reduce_async(at::Tensor& tensor, model::ReduceOp op) override;
  std::unique_ptr<model::CollectiveWork> reduce_scatter_async(const at::Tensor& in, at::Tensor& out) override;
  void all_gather(const at::Tensor& in, at::Tensor& out) override;
  void broadcast(at::Tensor& tensor, int root) override;
  std::unique_ptr<model::CollectiveWork> send_async(const at::Tensor& tensor, int peer) override;
  std::unique_ptr<model::CollectiveWork> recv_async(at::Tensor& tensor, int peer) override;
  void barrier() override;

 private:
  Communicator comm_;
  int rank_ = 0, size_ = 1;
};

}  // namespace adaspan::cluster
