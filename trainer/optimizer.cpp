#include "trainer/optimizer.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace adaspan::trainer {
namespace {

void copy_into(std::vector<at::Tensor>& state, const std::vector<at::Tensor>& whole) {
  if (whole.size() != state.size()) throw std::invalid_argument("optimizer state: wrong number of tensors");
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < state.size(); ++i) state[i].copy_(whole[i]);
}

int64_t bytes_of(const std::vector<at::Tensor>& tensors) {
  int64_t bytes = 0;
  for (const auto& t : tensors) bytes += t.numel() * static_cast<int64_t>(t.element_size());
  return bytes;
}

class Adagrad final : public Optimizer {
 public:
  Adagrad(std::vector<at::Tensor> params, double clip, CompleteSquares complete)
      : params_(std::move(params)), clip_(clip), complete_(std::move(complete)) {
    for (const auto& p : params_) sums_.push_back(at::zeros_like(p));
  }

  void step(double lr) override {
    at::NoGradGuard no_grad;
    ++t_;
    std::vector<double> norms(params_.size(), 0.0);
    if (clip_ > 0) {
      for (size_t i = 0; i < params_.size(); ++i) {
        if (params_[i].grad().defined()) norms[i] = params_[i].grad().norm().item<double>();
      }
      if (complete_) {
        std::vector<double> squares(norms.size());
        for (size_t i = 0; i < norms.size(); ++i) squares[i] = norms[i] * norms[i];
        complete_(squares);
        for (size_t i = 0; i < norms.size(); ++i) norms[i] = std::sqrt(squares[i]);
      }
    }
    for (size_t i = 0; i < params_.size(); ++i) {
      const at::Tensor& g = params_[i].grad();
      if (!g.defined()) continue;
      sums_[i].addcmul_(g, g);
      double clr = lr;
      if (clip_ > 0 && norms[i] > clip_) clr *= clip_ / (norms[i] + 1e-10);
      params_[i].addcdiv_(g, sums_[i].sqrt().add_(1e-10), -clr);
    }
  }

  std::string name() const override { return "adagrad"; }
  std::vector<std::string> slots() const override { return {"sum"}; }
  std::vector<at::Tensor> export_slot(const std::string& name) override { return slot(name); }
  void import_slot(const std::string& name, const std::vector<at::Tensor>& whole) override {
    copy_into(slot(name), whole);
  }
  int64_t state_bytes() const override { return bytes_of(sums_); }
  int64_t steps_taken() const override { return t_; }
  void set_steps_taken(int64_t steps) override { t_ = steps; }

 private:
  std::vector<at::Tensor>& slot(const std::string& name) {
    if (name != "sum") throw std::invalid_argument("adagrad has no state '" + name + "'");
    return sums_;
  }
  std::vector<at::Tensor> params_, sums_;
  double clip_;
  CompleteSquares complete_;
  int64_t t_ = 0;
};

class Adam final : public Optimizer {
 public:
  Adam(std::vector<at::Tensor> params, double clip, double beta1, double beta2, double eps, CompleteSquares complete)
      : params_(std::move(params)),
        clip_(clip),
        beta1_(beta1),
        beta2_(beta2),
        eps_(eps),
        complete_(std::move(complete)) {
    for (const auto& p : params_) {
      m_.push_back(at::zeros_like(p));
      v_.push_back(at::zeros_like(p));
    }
  }

  void step(double lr) override {
    at::NoGradGuard no_grad;
    ++t_;
    double scale = 1.0;
    if (clip_ > 0) {
      std::vector<double> squares;
      for (const auto& p : params_) {
        squares.push_back(p.grad().defined() ? p.grad().to(at::kDouble).pow(2).sum().item<double>() : 0.0);
      }
      if (complete_) complete_(squares);
      double sq = 0;
      for (double s : squares) sq += s;
      const double norm = std::sqrt(sq);
      if (norm > clip_) scale = clip_ / (norm + 1e-6);
    }
    const double c1 = 1 - std::pow(beta1_, static_cast<double>(t_));
    const double c2 = 1 - std::pow(beta2_, static_cast<double>(t_));
    for (size_t i = 0; i < params_.size(); ++i) {
      if (!params_[i].grad().defined()) continue;
      const at::Tensor g = params_[i].grad() * scale;
      m_[i].mul_(beta1_).add_(g, 1 - beta1_);
      v_[i].mul_(beta2_).addcmul_(g, g, 1 - beta2_);
      const at::Tensor denom = (v_[i] / c2).sqrt_().add_(eps_);
      params_[i].addcdiv_(m_[i], denom, -lr / c1);
    }
  }

  std::string name() const override { return "adam"; }
  std::vector<std::string> slots() const override { return {"exp_avg", "exp_avg_sq"}; }
  std::vector<at::Tensor> export_slot(const std::string& name) override { return slot(name); }
  void import_slot(const std::string& name, const std::vector<at::Tensor>& whole) override {
    copy_into(slot(name), whole);
  }
  int64_t state_bytes() const override { return bytes_of(m_) + bytes_of(v_); }
  int64_t steps_taken() const override { return t_; }
  void set_steps_taken(int64_t steps) override { t_ = steps; }

 private:
  std::vector<at::Tensor>& slot(const std::string& name) {
    if (name == "exp_avg") return m_;
    if (name == "exp_avg_sq") return v_;
    throw std::invalid_argument("adam has no state '" + name + "'");
  }
  std::vector<at::Tensor> params_, m_, v_;
  double clip_, beta1_, beta2_, eps_;
  CompleteSquares complete_;
  int64_t t_ = 0;
};

}  // namespace

std::unique_ptr<Optimizer> make_adagrad(std::vector<at::Tensor> params, double clip, CompleteSquares complete) {
  return std::make_unique<Adagrad>(std::move(params), clip, std::move(complete));
}

std::unique_ptr<Optimizer> make_adam(std::vector<at::Tensor> params, double clip, double beta1, double beta2,
                                     double eps, CompleteSquares complete) {
  return std::make_unique<Adam>(std::move(params), clip, beta1, beta2, eps, std::move(complete));
}

double warmup_lr(double lr, int64_t step, int64_t warmup_steps) {
  if (warmup_steps <= 0) return lr;
  return lr * std::min(1.0, static_cast<double>(step) / static_cast<double>(warmup_steps));
}

}  // namespace adaspan::trainer
