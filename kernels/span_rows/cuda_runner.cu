// The row programs of row_program.h as CUDA kernels: one thread per (query row, key chunk)
// (forward, backward dq/dqp/dz; then a merge per row when keys are split) or per key row (backward
// dk/dv). No shared memory, no atomics: a first, correctness-first version (see docs/kernels.md §1.3 for
// the tiled design).
#include "kernels/span_rows/runners.h"

#include <cuda_runtime.h>

namespace adaspan::kernels {
namespace {

constexpr int kThreads = 128;

// Grid: x = row tiles of kThreads, y = key chunks, z = batch rows.
// This thread's row (query or key) within its batch row.
__device__ __forceinline__ int64_t thread_row() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }

template <int D, class T>
__global__ void forward_kernel(const SpanRowsArgs<T> a) {
  const int64_t i = thread_row();
  if (i < a.block) span_rows_forward<D>(a, blockIdx.z, i, blockIdx.y);
}

template <int D, class T>
__global__ void forward_merge_kernel(const SpanRowsArgs<T> a) {
  const int64_t i = thread_row();
  if (i < a.block) span_rows_forward_merge<D>(a, blockIdx.z, i);
}

template <int D, class T>
__global__ void backward_query_kernel(const SpanRowsArgs<T> a) {
  const int64_t i = thread_row();
  if (i < a.block) span_rows_backward_query<D>(a, blockIdx.z, i, blockIdx.y);
}

template <int D, class T>
__global__ void backward_query_merge_kernel(const SpanRowsArgs<T> a) {
  const int64_t i = thread_row();
  if (i < a.block) span_rows_backward_query_merge<D>(a, blockIdx.z, i);
}

template <int D, class T>
__global__ void backward_key_kernel(const SpanRowsArgs<T> a) {
  const int64_t j = thread_row();
  if (j < a.cache_len + a.block) span_rows_backward_key<D>(a, blockIdx.z, j);
}

dim3 grid_for(int64_t rows, int64_t chunks, int64_t batch) {
  if (batch > 65535 || chunks > 65535)
    throw std::invalid_argument("span attention CUDA kernels: batch or chunks over 65535");
  return dim3(static_cast<unsigned>((rows + kThreads - 1) / kThreads), static_cast<unsigned>(chunks),
              static_cast<unsigned>(batch));
}

void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

}  // namespace

template <class T>
void span_rows_forward_cuda(const SpanRowsArgs<T>& a, int64_t head_dim, CUstream_st* stream) {
  if (a.batch == 0 || a.block == 0) return;
  const int64_t chunks = row_chunks(a);
  dispatch_head_dim(head_dim, [&](auto dim) {
    forward_kernel<dim(), T><<<grid_for(a.block, chunks, a.batch), kThreads, 0, stream>>>(a);
    if (chunks > 1) forward_merge_kernel<dim(), T><<<grid_for(a.block, 1, a.batch), kThreads, 0, stream>>>(a);
  });
  check_launch("span attention forward kernels");
}

template <class T>
void span_rows_backward_cuda(const SpanRowsArgs<T>& a, int64_t head_dim, CUstream_st* stream) {
  if (a.batch == 0) return;
  const int64_t chunks = row_chunks(a);
  dispatch_head_dim(head_dim, [&](auto dim) {
    if (a.block == 0) {  // no queries: the cached keys still get their (zero) gradients
      if (a.cache_len > 0) backward_key_kernel<dim(), T><<<grid_for(a.cache_len, 1, a.batch), kThreads, 0, stream>>>(a);
      return;
    }
    backward_query_kernel<dim(), T><<<grid_for(a.block, chunks, a.batch), kThreads, 0, stream>>>(a);
    if (chunks > 1) {
      backward_query_merge_kernel<dim(), T><<<grid_for(a.block, 1, a.batch), kThreads, 0, stream>>>(a);
    }
    backward_key_kernel<dim(), T><<<grid_for(a.cache_len + a.block, 1, a.batch), kThreads, 0, stream>>>(a);
  });
  check_launch("span attention backward kernels");
}

template void span_rows_forward_cuda<float>(const SpanRowsArgs<float>&, int64_t, CUstream_st*);
template void span_rows_forward_cuda<double>(const SpanRowsArgs<double>&, int64_t, CUstream_st*);
template void span_rows_backward_cuda<float>(const SpanRowsArgs<float>&, int64_t, CUstream_st*);
template void span_rows_backward_cuda<double>(const SpanRowsArgs<double>&, int64_t, CUstream_st*);

}  // namespace adaspan::kernels
