#include "cluster/nccl_process_group.h"

#include "cluster/mpi_communicator.h"

#include <atomic>
#include <stdexcept>
#include <string>

#ifdef ADASPAN_WITH_NCCL
#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace adaspan::cluster {

#ifdef ADASPAN_WITH_NCCL
namespace {

#define NCCL_CHECK(call)                                                                       \
  do {                                                                                         \
    const ncclResult_t rc = (call);                                                            \
    if (rc != ncclSuccess) {                                                                   \
      throw std::runtime_error(std::string("NCCL ") + #call + " failed at " + __FILE__ + ":" + \
                               std::to_string(__LINE__) + ": " + ncclGetErrorString(rc));      \
    }                                                                                          \
  } while (0)

#define CUDA_CHECK(call)                                                                             \
  do {                                                                                               \
    const cudaError_t rc = (call);                                                                   \
    if (rc != cudaSuccess) {                                                                         \
      throw std::runtime_error(std::string("CUDA ") + #call + " failed: " + cudaGetErrorString(rc)); \
    }                                                                                                \
  } while (0)

ncclDataType_t nccl_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return ncclFloat32;
    case at::kDouble:
      return ncclFloat64;
    case at::kHalf:
      return ncclFloat16;
    case at::kBFloat16:
      return ncclBfloat16;
    case at::kLong:
      return ncclInt64;
    case at::kInt:
      return ncclInt32;
    case at::kByte:
      return ncclUint8;
    default:
      throw std::invalid_argument("NCCL collectives: unsupported dtype");
  }
}

ncclRedOp_t nccl_op(model::ReduceOp op) {
  switch (op) {
    case model::ReduceOp::sum:
      return ncclSum;
    case model::ReduceOp::max:
      return ncclMax;
    case model::ReduceOp::min:
      return ncclMin;
  }
  return ncclSum;
}

void require_cuda(const at::Tensor& t) {
  if (!t.is_cuda() || !t.is_contiguous()) throw std::invalid_argument("NCCL collectives need contiguous CUDA tensors");
}

class NcclWork final : public model::CollectiveWork {
 public:
  NcclWork(cudaEvent_t done, int device) : done_(done), device_(device) {}
  ~NcclWork() override { cudaEventDestroy(done_); }
  // The stream that will use the result (current where wait() is called) waits; the host does not.
  void wait() override { CUDA_CHECK(cudaStreamWaitEvent(c10::cuda::getCurrentCUDAStream(device_).stream(), done_, 0)); }

 private:
  cudaEvent_t done_;
  int device_;
};

class NcclProcessGroup final : public model::ProcessGroup {
 public:
  NcclProcessGroup(MPI_Comm comm, int device) : device_(device), side_(c10::cuda::getStreamFromPool(true, device)) {
    MPI_Comm_rank(comm, &rank_);
    MPI_Comm_size(comm, &size_);
    ncclUniqueId id;
    if (rank_ == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, comm);
    c10::cuda::CUDAGuard guard(device_);
    NCCL_CHECK(ncclCommInitRank(&comm_, size_, id, rank_));
  }
  ~NcclProcessGroup() override {
    if (!aborted_) ncclCommDestroy(comm_);
  }
  void abort_in_flight() override {
    aborted_ = true;
    ncclCommAbort(comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  std::unique_ptr<model::CollectiveWork> all_reduce_async(at::Tensor& t, model::ReduceOp op) override {
    require_cuda(t);
    return on_side_stream([&](cudaStream_t side) {
      NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t), nccl_op(op),
                               comm_, side));
    });
  }

  std::unique_ptr<model::CollectiveWork> reduce_scatter_async(const at::Tensor& in, at::Tensor& out) override {
    require_cuda(in);
    require_cuda(out);
    return on_side_stream([&](cudaStream_t side) {
      NCCL_CHECK(ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()), nccl_type(out),
                                   ncclSum, comm_, side));
    });
  }

  void all_gather(const at::Tensor& in, at::Tensor& out) override {
    require_cuda(in);
    require_cuda(out);
    c10::cuda::CUDAGuard guard(device_);
    NCCL_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()), nccl_type(in), comm_,
                             c10::cuda::getCurrentCUDAStream(device_).stream()));
  }

  void broadcast(at::Tensor& t, int root) override {
    require_cuda(t);
    c10::cuda::CUDAGuard guard(device_);
    NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t), root, comm_,
                             c10::cuda::getCurrentCUDAStream(device_).stream()));
  }

  std::unique_ptr<model::CollectiveWork> send_async(const at::Tensor& t, int peer) override {
    std::vector<model::PeerMessage> one{{t, peer, true}};
    return exchange_async(one);
  }

  std::unique_ptr<model::CollectiveWork> recv_async(at::Tensor& t, int peer) override {
    std::vector<model::PeerMessage> one{{t, peer, false}};
    return exchange_async(one);
  }

  // One NCCL group: every send and receive of the exchange is posted before any must complete.
  // The buffers are marked in use on the side stream, so that the caching allocator does not hand
  // their memory out again before NCCL is done with them, even if the caller frees them without
  // waiting (an exception between posting and wait()).
  std::unique_ptr<model::CollectiveWork> exchange_async(std::vector<model::PeerMessage>& messages) override {
    for (const auto& m : messages) {
      require_cuda(m.tensor);
      c10::cuda::CUDACachingAllocator::recordStream(m.tensor.storage().data_ptr(), side_);
    }
    return on_side_stream([&](cudaStream_t side) {
      NCCL_CHECK(ncclGroupStart());
      for (const auto& m : messages) {
        const size_t count = static_cast<size_t>(m.tensor.numel());
        if (m.send) {
          NCCL_CHECK(ncclSend(m.tensor.data_ptr(), count, nccl_type(m.tensor), m.peer, comm_, side));
        } else {
          NCCL_CHECK(ncclRecv(m.tensor.data_ptr(), count, nccl_type(m.tensor), m.peer, comm_, side));
        }
      }
      NCCL_CHECK(ncclGroupEnd());
    });
  }

  void barrier() override {
    at::Tensor one = at::ones({1}, at::TensorOptions().device(at::kCUDA, device_));
    all_reduce(one);
    CUDA_CHECK(cudaStreamSynchronize(c10::cuda::getCurrentCUDAStream(device_).stream()));
  }

 private:
  // Runs `enqueue(side stream)` after the work queued so far on the compute stream, without a host
  // sync; the returned work makes its waiter's stream wait for it.
  template <typename Enqueue>
  std::unique_ptr<model::CollectiveWork> on_side_stream(Enqueue&& enqueue) {
    c10::cuda::CUDAGuard guard(device_);
    const cudaStream_t compute = c10::cuda::getCurrentCUDAStream(device_).stream();
    cudaEvent_t ready, done;
    CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(ready, compute));
    CUDA_CHECK(cudaStreamWaitEvent(side_.stream(), ready, 0));
    cudaEventDestroy(ready);
    enqueue(side_.stream());
    CUDA_CHECK(cudaEventRecord(done, side_.stream()));
    return std::make_unique<NcclWork>(done, device_);
  }

  int device_, rank_ = 0, size_ = 1;
  c10::cuda::CUDAStream side_;
  ncclComm_t comm_ = nullptr;
  std::atomic<bool> aborted_{false};
};

}  // namespace

bool nccl_available() { return true; }

std::unique_ptr<model::ProcessGroup> make_nccl_process_group(const Communicator& comm, int device) {
  return std::make_unique<NcclProcessGroup>(to_mpi(comm), device);
}

#else

bool nccl_available() { return false; }

std::unique_ptr<model::ProcessGroup> make_nccl_process_group(const Communicator&, int) {
  throw std::runtime_error("this build has no NCCL backend (LibTorch without CUDA, or nccl.h not found)");
}

#endif

}  // namespace adaspan::cluster
