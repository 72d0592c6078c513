#include "trainer/zero_optimizer.h"

#include <ATen/ATen.h>

#include <cmath>
#include <map>
#include <stdexcept>

namespace adaspan::trainer {
namespace {

// Where the elements of one parameter fall inside this rank's chunk of a bucket.
struct Segment {
  size_t param;
  int64_t param_offset;  // into the flattened parameter
  int64_t chunk_offset;  // into the chunk
  int64_t length;
};

struct Shard {
  int64_t chunk = 0;  // elements per rank in this bucket
  std::vector<Segment> segments;
  std::vector<GradientReducer::Member> members;
  std::map<std::string, at::Tensor> state;  // slot -> [chunk]
};

class ZeroOptimizer final : public Optimizer {
 public:
  ZeroOptimizer(std::vector<at::Tensor> params, GradientReducer& reducer, const ZeroOptions& o)
      : params_(std::move(params)), reducer_(reducer), group_(reducer.group()), o_(o) {
    if (o_.optimizer != "adagrad" && o_.optimizer != "adam") throw std::invalid_argument("zero: unknown optimizer");
    const int rank = group_.rank(), ranks = group_.size();
    for (size_t b = 0; b < reducer_.bucket_count(); ++b) {
      Shard shard;
      shard.chunk = reducer_.bucket_size(b) / ranks;
      shard.members = reducer_.bucket_members(b);
      const int64_t begin = rank * shard.chunk, end = begin + shard.chunk;
      for (const auto& m : shard.members) {
        const int64_t lo = std::max(begin, m.offset), hi = std::min(end, m.offset + params_[m.param].numel());
        if (lo < hi) shard.segments.push_back({m.param, lo - m.offset, lo - begin, hi - lo});
      }
      for (const auto& slot : slots())
        shard.state[slot] = at::zeros({shard.chunk}, params_[0].options().requires_grad(false));
      shards_.push_back(std::move(shard));
    }
  }

  std::string name() const override { return o_.optimizer; }
  std::vector<std::string> slots() const override {
    return o_.optimizer == "adam" ? std::vector<std::string>{"exp_avg", "exp_avg_sq"} : std::vector<std::string>{"sum"};
  }
  int64_t steps_taken() const override { return t_; }
  void set_steps_taken(int64_t steps) override { t_ = steps; }

  int64_t state_bytes() const override {
    int64_t bytes = 0;
    for (const auto& shard : shards_) {
      for (const auto& [slot, t] : shard.state) bytes += t.numel() * static_cast<int64_t>(t.element_size());
    }
    return bytes;
  }

  void step(double lr) override {
    at::NoGradGuard no_grad;
    ++t_;
    // Squared gradient norms per parameter, summed over the shards.
    at::Tensor squares = at::zeros({static_cast<int64_t>(params_.size())}, at::kDouble);
    for (size_t b = 0; b < shards_.size(); ++b) {
      const at::Tensor& g = reducer_.owned_gradient(b);
      for (const auto& s : shards_[b].segments) {
        squares[static_cast<int64_t>(s.param)] +=
            g.narrow(0, s.chunk_offset, s.length).to(at::kDouble).pow(2).sum().cpu();
      }
    }
    group_.all_reduce(squares, model::ReduceOp::sum);
    if (o_.complete) {
      std::vector<double> values(squares.data_ptr<double>(), squares.data_ptr<double>() + squares.numel());
      o_.complete(values);
      squares = at::tensor(values, at::kDouble);
    }
    if (o_.optimizer == "adagrad") {
      adagrad_update(lr, squares);
    } else {
      adam_update(lr, squares);
    }
    all_gather_parameters();
  }

  std::vector<at::Tensor> export_slot(const std::string& name) override {
    std::vector<at::Tensor> whole;
    for (const auto& p : params_) whole.push_back(at::zeros_like(p));
    for (auto& shard : shards_) {
      at::Tensor full = at::empty({shard.chunk * group_.size()}, shard.state.at(name).options());
      group_.all_gather(shard.state.at(name), full);
      for (const auto& m : shard.members) {
        whole[m.param].view(-1).copy_(full.narrow(0, m.offset, params_[m.param].numel()));
      }
    }
    return whole;
  }

  void import_slot(const std::string& name, const std::vector<at::Tensor>& whole) override {
    at::NoGradGuard no_grad;
    if (whole.size() != params_.size()) throw std::invalid_argument("optimizer state: wrong number of tensors");
    for (auto& shard : shards_) {
      at::Tensor& state = shard.state.at(name);
      state.zero_();
      for (const auto& s : shard.segments) {
        state.narrow(0, s.chunk_offset, s.length)
            .copy_(whole[s.param].reshape({-1}).narrow(0, s.param_offset, s.length));
      }
    }
  }

 private:
  // This rank's elements of the current parameters (spans are clamped between steps, checkpoints
  // load whole tensors: the parameters are the truth, read afresh each step).
  at::Tensor owned_parameters(const Shard& shard) const {
    at::Tensor out = at::zeros({shard.chunk}, params_[0].options().requires_grad(false));
    for (const auto& s : shard.segments) {
      out.narrow(0, s.chunk_offset, s.length)
          .copy_(params_[s.param].detach().reshape({-1}).narrow(0, s.param_offset, s.length));
    }
    return out;
  }

  // A [chunk] tensor holding, for each element, its parameter's value in `per_param`.
  at::Tensor per_element(const Shard& shard, const std::vector<double>& per_param) const {
    at::Tensor out = at::zeros({shard.chunk}, params_[0].options().requires_grad(false));
    for (const auto& s : shard.segments) out.narrow(0, s.chunk_offset, s.length).fill_(per_param[s.param]);
    return out;
  }

  void adagrad_update(double lr, const at::Tensor& squares) {
    // The reference's per-tensor step clip: clr = lr * min(1, clip / (|g| + 1e-10)).
    std::vector<double> clr(params_.size(), lr);
    for (size_t i = 0; i < params_.size(); ++i) {
      const double norm = std::sqrt(squares[static_cast<int64_t>(i)].item<double>());
      if (o_.clip > 0 && norm > o_.clip) clr[i] = lr * o_.clip / (norm + 1e-10);
    }
    for (size_t b = 0; b < shards_.size(); ++b) {
      Shard& shard = shards_[b];
      const at::Tensor& g = reducer_.owned_gradient(b);
      at::Tensor& sum = shard.state.at("sum");
      sum.addcmul_(g, g);
      at::Tensor p = owned_parameters(shard);
      p.addcdiv_(g * per_element(shard, clr), sum.sqrt().add_(1e-10), -1.0);
      owned_[b] = p;
    }
  }

  void adam_update(double lr, const at::Tensor& squares) {
    double scale = 1.0;
    if (o_.clip > 0) {
      const double norm = std::sqrt(squares.sum().item<double>());
      if (norm > o_.clip) scale = o_.clip / (norm + 1e-6);
    }
    const double c1 = 1 - std::pow(o_.beta1, static_cast<double>(t_));
    const double c2 = 1 - std::pow(o_.beta2, static_cast<double>(t_));
    for (size_t b = 0; b < shards_.size(); ++b) {
      Shard& shard = shards_[b];
      const at::Tensor g = reducer_.owned_gradient(b) * scale;
      at::Tensor& m = shard.state.at("exp_avg");
      at::Tensor& v = shard.state.at("exp_avg_sq");
      m.mul_(o_.beta1).add_(g, 1 - o_.beta1);
      v.mul_(o_.beta2).addcmul_(g, g, 1 - o_.beta2);
      at::Tensor p = owned_parameters(shard);
      p.addcdiv_(m, (v / c2).sqrt_().add_(o_.eps), -lr / c1);
      owned_[b] = p;
    }
  }

  void all_gather_parameters() {
    for (size_t b = 0; b < shards_.size(); ++b) {
      const Shard& shard = shards_[b];
      at::Tensor full = at::empty({shard.chunk * group_.size()}, owned_[b].options());
      group_.all_gather(owned_[b], full);
      for (const auto& m : shard.members) {
        params_[m.param].detach().view(-1).copy_(full.narrow(0, m.offset, params_[m.param].numel()));
      }
    }
  }

  std::vector<at::Tensor> params_;
  GradientReducer& reducer_;
  model::ProcessGroup& group_;
  ZeroOptions o_;
  std::vector<Shard> shards_;
  std::map<size_t, at::Tensor> owned_;  // per bucket: this step's updated parameter chunk
  int64_t t_ = 0;
};

}  // namespace

std::unique_ptr<Optimizer> make_zero_optimizer(std::vector<at::Tensor> params, GradientReducer& reducer,
                                               const ZeroOptions& options) {
  return std::make_unique<ZeroOptimizer>(std::move(params), reducer, options);
}

}  // namespace adaspan::trainer
