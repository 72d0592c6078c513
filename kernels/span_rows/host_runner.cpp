#include "kernels/span_rows/runners.h"

#include <ATen/Parallel.h>

namespace adaspan::kernels {
namespace {

// Rows per parallel task: one row of work is W·D multiply-adds, small next to a task's overhead.
constexpr int64_t kRowsPerTask = 16;

template <class Row>
void for_each_row(int64_t rows, Row&& row) {
  at::parallel_for(0, rows, kRowsPerTask, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) row(r);
  });
}

}  // namespace

template <class T>
void span_rows_forward_host(const SpanRowsArgs<T>& a, int64_t head_dim) {
  const int64_t rows = a.batch * a.block, chunks = row_chunks(a);
  dispatch_head_dim(head_dim, [&](auto dim) {
    for_each_row(rows * chunks, [&](int64_t r) {
      const int64_t row = r / chunks;
      span_rows_forward<dim()>(a, row / a.block, row % a.block, r % chunks);
    });
    if (chunks > 1) {
      for_each_row(rows, [&](int64_t r) { span_rows_forward_merge<dim()>(a, r / a.block, r % a.block); });
    }
  });
}

template <class T>
void span_rows_backward_host(const SpanRowsArgs<T>& a, int64_t head_dim) {
  const int64_t keys = a.cache_len + a.block, rows = a.batch * a.block, chunks = row_chunks(a);
  dispatch_head_dim(head_dim, [&](auto dim) {
    for_each_row(rows * chunks, [&](int64_t r) {
      const int64_t row = r / chunks;
      span_rows_backward_query<dim()>(a, row / a.block, row % a.block, r % chunks);
    });
    if (chunks > 1) {
      for_each_row(rows, [&](int64_t r) { span_rows_backward_query_merge<dim()>(a, r / a.block, r % a.block); });
    }
    for_each_row(a.batch * keys, [&](int64_t r) { span_rows_backward_key<dim()>(a, r / keys, r % keys); });
  });
}

template void span_rows_forward_host<float>(const SpanRowsArgs<float>&, int64_t);
template void span_rows_forward_host<double>(const SpanRowsArgs<double>&, int64_t);
template void span_rows_backward_host<float>(const SpanRowsArgs<float>&, int64_t);
template void span_rows_backward_host<double>(const SpanRowsArgs<double>&, int64_t);

}  // namespace adaspan::kernels
