#pragma once
// The two runners of the row programs (row_program.h): on the host (a parallel loop over rows,
// host_runner.cpp) and on a CUDA device (one thread per row, on the given stream, no
// synchronisation, cuda_runner.cu). Both take the head dimension at run time and dispatch to a
// compiled instantiation.
#include "kernels/span_rows/row_program.h"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

struct CUstream_st;  // cudaStream_t, without the CUDA headers

namespace adaspan::kernels {

// Calls f(std::integral_constant<int, D>{}) for the compiled head dimension D == dim.
template <class F>
void dispatch_head_dim(int64_t dim, F&& f) {
  switch (dim) {
    case 8:
      return f(std::integral_constant<int, 8>{});
    case 16:
      return f(std::integral_constant<int, 16>{});
    case 32:
      return f(std::integral_constant<int, 32>{});
    case 64:
      return f(std::integral_constant<int, 64>{});
    case 96:
      return f(std::integral_constant<int, 96>{});
    case 128:
      return f(std::integral_constant<int, 128>{});
    default:
      throw std::invalid_argument("span attention row kernels: head dimension " + std::to_string(dim) +
                                  " has no compiled instantiation (8, 16, 32, 64, 96, 128)");
  }
}

inline bool span_rows_support_head_dim(int64_t dim) {
  return dim == 8 || dim == 16 || dim == 32 || dim == 64 || dim == 96 || dim == 128;
}

// Forward: out and lse. Backward: dq, dqp, dz_rows (query programs), then dk, dv (key programs).
template <class T>
void span_rows_forward_host(const SpanRowsArgs<T>& args, int64_t head_dim);
template <class T>
void span_rows_backward_host(const SpanRowsArgs<T>& args, int64_t head_dim);

// Defined only where the CUDA kernels are built (ADASPAN_WITH_CUDA_KERNELS).
template <class T>
void span_rows_forward_cuda(const SpanRowsArgs<T>& args, int64_t head_dim, CUstream_st* stream);
template <class T>
void span_rows_backward_cuda(const SpanRowsArgs<T>& args, int64_t head_dim, CUstream_st* stream);

}  // namespace adaspan::kernels
