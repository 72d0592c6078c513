#include "model/tensor_parallel.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cstdint>

namespace adaspan::model {
namespace {

ProcessGroup* group_of(torch::autograd::AutogradContext* ctx) {
  return reinterpret_cast<ProcessGroup*>(static_cast<intptr_t>(ctx->saved_data["group"].toInt()));
}

at::Tensor summed(const at::Tensor& x, ProcessGroup& group) {
  at::Tensor out = x.contiguous().clone();
  group.all_reduce(out, ReduceOp::sum);
  return out;
}

class CopyToRegion : public torch::autograd::Function<CopyToRegion> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t group) {
    ctx->saved_data["group"] = group;
    return x.clone();  // a new tensor: autograd then owns its grad_fn plainly
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return {summed(grads[0], *group_of(ctx)), at::Tensor()};
  }
};

class ReduceFromRegion : public torch::autograd::Function<ReduceFromRegion> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t group) {
    ctx->saved_data["group"] = group;
    return summed(x, *reinterpret_cast<ProcessGroup*>(static_cast<intptr_t>(group)));
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list grads) {
    return {grads[0], at::Tensor()};
  }
};

int64_t handle(const TensorParallel& tp) { return static_cast<int64_t>(reinterpret_cast<intptr_t>(tp.group)); }

}  // namespace

at::Tensor copy_to_tp_region(const at::Tensor& x, const TensorParallel& tp) {
  return tp.active() ? CopyToRegion::apply(x, handle(tp)) : x;
}

at::Tensor reduce_from_tp_region(const at::Tensor& x, const TensorParallel& tp) {
  return tp.active() ? ReduceFromRegion::apply(x, handle(tp)) : x;
}

HeadSplit head_split_of(const std::string& name, int64_t head_dim) {
  for (const char* proj : {".attn.proj_query.weight", ".attn.proj_key.weight", ".attn.proj_val.weight"}) {
    if (name.find(proj) != std::string::npos) return {0, head_dim};
  }
  if (name.find(".attn.proj_out.weight") != std::string::npos) return {1, head_dim};
  // Per-head parameters, one row (or entry) per head: the span (current_val; dynamic_weight/bias)
  // and ASEntmax's beta/gamma (per head, or the rows of their projections from the hidden state).
  if (name.find(".attn.span.") != std::string::npos || name.find(".attn.asentmax.") != std::string::npos) {
    return {0, 1};
  }
  return {};
}

std::vector<std::vector<double>> gather_by_head(const std::vector<double>& triples, const TensorParallel& tp,
                                                size_t layers, int64_t heads) {
  at::Tensor all = at::tensor(triples, at::kDouble);
  if (tp.active()) {
    at::Tensor gathered = at::zeros({all.numel() * tp.size}, at::kDouble);
    tp.group->all_gather(all, gathered);
    all = gathered;
  }
  std::vector<std::vector<double>> out(layers, std::vector<double>(static_cast<size_t>(heads)));
  const double* v = all.data_ptr<double>();
  for (int64_t i = 0; i + 2 < all.numel(); i += 3)
    out[static_cast<size_t>(v[i])][static_cast<size_t>(v[i + 1])] = v[i + 2];
  return out;
}

std::vector<int64_t> contiguous_heads(int64_t heads, int rank, int size) {
  std::vector<int64_t> out;
  const int64_t per = heads / size;
  for (int64_t h = rank * per; h < (rank + 1) * per; ++h) out.push_back(h);
  return out;
}

}  // namespace adaspan::model
