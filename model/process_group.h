#pragma once
// The collectives the model and trainer need, on tensors, over a group of ranks. model/ only
// knows this interface; cluster/ implements it (MPI for CPU tensors and host-staged CUDA tensors,
// NCCL for CUDA tensors). Every rank of the group must make the same calls in the same order.
#include <ATen/core/Tensor.h>

#include <memory>
#include <stdexcept>
#include <vector>

namespace adaspan::model {

enum class ReduceOp { sum, max, min };

// A collective in flight. wait() returns when its result is in the tensor it was given.
class CollectiveWork {
 public:
  virtual ~CollectiveWork() = default;
  virtual void wait() = 0;
  // Lets the backend make progress without blocking (MPI progresses only inside MPI calls).
  virtual void poll() {}
};

// One point-to-point message of a batch (ProcessGroup::exchange_async).
struct PeerMessage {
  at::Tensor tensor;  // contiguous; sent, or received into
  int peer = 0;       // group rank
  bool send = false;
};

// Several works as one.
class WorkList final : public CollectiveWork {
 public:
  void add(std::unique_ptr<CollectiveWork> work) { works_.push_back(std::move(work)); }
  void wait() override {
    for (auto& w : works_) w->wait();
  }
  void poll() override {
    for (auto& w : works_) w->poll();
  }

 private:
  std::vector<std::unique_ptr<CollectiveWork>> works_;
};

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // In place; `tensor` must be contiguous and stay alive until wait() returns.
  virtual std::unique_ptr<CollectiveWork> all_reduce_async(at::Tensor& tensor, ReduceOp op) = 0;
  void all_reduce(at::Tensor& tensor, ReduceOp op = ReduceOp::sum) { all_reduce_async(tensor, op)->wait(); }
  // in: [size * n]; out: [n], this rank's slice (rank r: elements [r*n, (r+1)*n)) of the sum over
  // ranks of `in`. Both contiguous and alive until wait() returns.
  virtual std::unique_ptr<CollectiveWork> reduce_scatter_async(const at::Tensor& in, at::Tensor& out) = 0;
  // out: [size * n] from each rank's `in` ([n]), in rank order.
  virtual void all_gather(const at::Tensor& in, at::Tensor& out) = 0;
  virtual void broadcast(at::Tensor& tensor, int root) = 0;
  // Point to point (context parallelism's halos): `tensor` (contiguous) to / from group rank
  // `peer`. Messages between two ranks arrive in the order they were sent.
  virtual std::unique_ptr<CollectiveWork> send_async(const at::Tensor& /*tensor*/, int /*peer*/) {
    throw std::logic_error("this process group has no point-to-point messages");
  }
  virtual std::unique_ptr<CollectiveWork> recv_async(at::Tensor& /*tensor*/, int /*peer*/) {
    throw std::logic_error("this process group has no point-to-point messages");
  }
  // The sends and receives of one exchange, all in flight together: NCCL groups them (one by one,
  // two ranks that each receive before they send would wait for each other forever); MPI posts
  // each. The tensors must stay alive until wait() returns.
  virtual std::unique_ptr<CollectiveWork> exchange_async(std::vector<PeerMessage>& messages) {
    auto all = std::make_unique<WorkList>();
    for (PeerMessage& m : messages) all->add(m.send ? send_async(m.tensor, m.peer) : recv_async(m.tensor, m.peer));
    return all;
  }
  virtual void barrier() = 0;
  // Unblocks collectives that will never complete (a peer died or hung) before the process
  // exits; the group is unusable afterwards. Called from another thread by the watchdog.
  virtual void abort_in_flight() {}
};

}  // namespace adaspan::model
