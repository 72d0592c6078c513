#include "cluster/mpi_process_group.h"

#include "cluster/mpi_communicator.h"

#include <ATen/ATen.h>

#include <limits>
#include <stdexcept>
#include <string>

namespace adaspan::cluster {
namespace {

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    throw std::runtime_error(std::string("MPI ") + what + " failed: " + std::string(text, static_cast<size_t>(len)));
  }
}

MPI_Datatype mpi_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return MPI_FLOAT;
    case at::kDouble:
      return MPI_DOUBLE;
    case at::kLong:
      return MPI_INT64_T;
    case at::kInt:
      return MPI_INT32_T;
    case at::kByte:
      return MPI_UINT8_T;
    default:
      throw std::invalid_argument("MPI collectives: unsupported dtype");
  }
}

MPI_Op mpi_op(model::ReduceOp op) {
  switch (op) {
    case model::ReduceOp::sum:
      return MPI_SUM;
    case model::ReduceOp::max:
      return MPI_MAX;
    case model::ReduceOp::min:
      return MPI_MIN;
  }
  return MPI_SUM;
}

// A non-blocking MPI_Iallreduce on host memory; for CUDA tensors, the host copy is copied back.
class MpiWork final : public model::CollectiveWork {
 public:
  // `input`: a host buffer MPI reads until completion (kept alive here).
  MpiWork(at::Tensor target, at::Tensor host, MPI_Request request, at::Tensor input = {})
      : target_(std::move(target)), host_(std::move(host)), input_(std::move(input)), request_(request) {}
  // MPI may still write into host_: never free it under a pending request.
  ~MpiWork() override {
    if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
  }
  void wait() override {
    if (request_ == MPI_REQUEST_NULL) return;
    check(MPI_Wait(&request_, MPI_STATUS_IGNORE), "wait");
    if (!target_.is_same(host_)) target_.copy_(host_);
  }
  void poll() override {
    int done = 0;
    if (request_ != MPI_REQUEST_NULL) MPI_Test(&request_, &done, MPI_STATUS_IGNORE);
    if (done && !target_.is_same(host_)) target_.copy_(host_);
  }

 private:
  at::Tensor target_, host_, input_;
  MPI_Request request_;
};

at::Tensor host_view(const at::Tensor& t) {
  if (!t.is_contiguous()) throw std::invalid_argument("MPI collectives need contiguous tensors");
  return t.is_cpu() ? t : t.cpu();
}

}  // namespace

static int count_of(const at::Tensor& t) {
  if (t.numel() > std::numeric_limits<int>::max())
    throw std::invalid_argument("MPI collectives: tensor over 2^31 elements");
  return static_cast<int>(t.numel());
}

MpiProcessGroup::MpiProcessGroup(const Communicator& comm) : comm_(comm) {
  rank_ = comm_.rank();
  size_ = comm_.size();
}

std::unique_ptr<model::CollectiveWork> MpiProcessGroup::all_reduce_async(at::Tensor& tensor, model::ReduceOp op) {
  at::Tensor host = host_view(tensor);
  MPI_Request request;
  check(MPI_Iallreduce(MPI_IN_PLACE, host.data_ptr(), count_of(host), mpi_type(host), mpi_op(op), to_mpi(comm_),
                       &request),
        "all-reduce");
  return std::make_unique<MpiWork>(tensor, host, request);
}

std::unique_ptr<model::CollectiveWork> MpiProcessGroup::reduce_scatter_async(const at::Tensor& in, at::Tensor& out) {
  if (in.numel() != out.numel() * size_) throw std::invalid_argument("reduce-scatter: input is not size * output");
  const at::Tensor host_in = host_view(in);
  at::Tensor host_out = host_view(out);
  MPI_Request request;
  check(MPI_Ireduce_scatter_block(host_in.data_ptr(), host_out.data_ptr(), count_of(host_out), mpi_type(host_out),
                                  MPI_SUM, to_mpi(comm_), &request),
        "reduce-scatter");
  return std::make_unique<MpiWork>(out, host_out, request, host_in);
}

void MpiProcessGroup::all_gather(const at::Tensor& in, at::Tensor& out) {
  const at::Tensor host_in = host_view(in);
  at::Tensor host_out = host_view(out);
  check(MPI_Allgather(host_in.data_ptr(), count_of(host_in), mpi_type(host_in), host_out.data_ptr(), count_of(host_in),
                      mpi_type(host_out), to_mpi(comm_)),
        "all-gather");
  if (!out.is_same(host_out)) out.copy_(host_out);
}

void MpiProcessGroup::broadcast(at::Tensor& tensor, int root) {
  at::Tensor host = host_view(tensor);
  check(MPI_Bcast(host.data_ptr(), count_of(host), mpi_type(host), root, to_mpi(comm_)), "broadcast");
  if (!tensor.is_same(host)) tensor.copy_(host);
}

// One tag for every point-to-point message: MPI keeps messages between two ranks on one
// communicator in order, and the model posts them in the same order on both sides.
constexpr int kPointToPointTag = 7;

std::unique_ptr<model::CollectiveWork> MpiProcessGroup::send_async(const at::Tensor& tensor, int peer) {
  const at::Tensor host = host_view(tensor);
  MPI_Request request;
  check(MPI_Isend(host.data_ptr(), count_of(host), mpi_type(host), peer, kPointToPointTag, to_mpi(comm_), &request),
        "send");
  return std::make_unique<MpiWork>(host, host, request);
}

std::unique_ptr<model::CollectiveWork> MpiProcessGroup::recv_async(at::Tensor& tensor, int peer) {
  at::Tensor host = host_view(tensor);
  MPI_Request request;
  check(MPI_Irecv(host.data_ptr(), count_of(host), mpi_type(host), peer, kPointToPointTag, to_mpi(comm_), &request),
        "receive");
  return std::make_unique<MpiWork>(tensor, host, request);
}

void MpiProcessGroup::barrier() { check(MPI_Barrier(to_mpi(comm_)), "barrier"); }

}  // namespace adaspan::cluster
