#include "model/attention_normalizer.h"

#include "model/parameter_modules.h"

#include <ATen/ATen.h>

#include <utility>

namespace adaspan::model {
namespace {

// λ = 1 + β·(log n)^γ for the queries of a tile; β, γ as the subclass learns them.
class Asentmax : public AttentionNormalizer {
 public:
  Asentmax() : AttentionNormalizer(kernels::Normalizer::entmax15) {}

  kernels::QueryScale query_scale(const at::Tensor& h, int64_t head) const override {
    return [this, h, head](const kernels::QueryTile& tile) { return scale(h, head, tile); };
  }

 protected:
  // β and γ of `head` for the tile's queries: 0-dim each, or [B, count] each.
  virtual std::pair<at::Tensor, at::Tensor> beta_gamma(const at::Tensor& h, int64_t head,
                                                       const kernels::QueryTile& tile) const = 0;

 private:
  // [B, count]
  at::Tensor scale(const at::Tensor& h, int64_t head, const kernels::QueryTile& tile) const {
    // n = keys the query can see + 2 (the paper's position + 2 for a query at 0-based position
    // `position` seeing `position` earlier tokens), at most the window + 2.
    const at::Tensor seen = at::clamp_max(at::arange(tile.count, h.options()) + static_cast<double>(tile.keys_before),
                                          static_cast<double>(tile.window));
    const at::Tensor log_n = at::log(seen + 2).unsqueeze(0);  // [1, T]
    const auto [beta, gamma] = beta_gamma(h, head, tile);     // [] or [B, T]
    return (1 + beta * at::pow(log_n, gamma)).expand({h.size(0), tile.count});
  }
};

// The paper's 'learn' variant: β, γ per head.
class AsentmaxHeadScale final : public Asentmax {
 public:
  explicit AsentmaxHeadScale(int64_t heads) {
    beta_ = register_parameter("beta", at::rand({heads}) * 0.9 + 0.1);  // U(0.1, 1)
    gamma_ = register_parameter("gamma", at::randn({heads}) * 0.1);     // N(0, 0.1)
  }

  void shard(const at::Tensor& head_index) override {
    for (at::Tensor* p : {&beta_, &gamma_}) p->set_data(p->index_select(0, head_index));
  }

 protected:
  std::pair<at::Tensor, at::Tensor> beta_gamma(const at::Tensor& /*h*/, int64_t head,
                                               const kernels::QueryTile& /*tile*/) const override {
    return {beta_.select(0, head), gamma_.select(0, head)};
  }

 private:
  at::Tensor beta_, gamma_;  // [H] each
};

// 'adapt-softplus-tanh': β = softplus(W_b x), γ = 2 tanh(W_g x) from the query's input x.
class AsentmaxHiddenScale final : public Asentmax {
 public:
  AsentmaxHiddenScale(int64_t d_model, int64_t heads) {
    beta_proj_ = register_module("beta_proj", std::make_shared<LinearParams>(d_model, heads, true));
    gamma_proj_ = register_module("gamma_proj", std::make_shared<LinearParams>(d_model, heads, true));
  }

  void shard(const at::Tensor& head_index) override {
    for (auto* proj : {&beta_proj_, &gamma_proj_}) {
      (*proj)->weight.set_data((*proj)->weight.index_select(0, head_index));
      (*proj)->bias.set_data((*proj)->bias.index_select(0, head_index));
    }
  }

 protected:
  std::pair<at::Tensor, at::Tensor> beta_gamma(const at::Tensor& h, int64_t head,
                                               const kernels::QueryTile& tile) const override {
    const at::Tensor x = h.narrow(1, tile.first, tile.count);  // [B, T, d_model]
    const at::Tensor beta = at::softplus(at::linear(x, beta_proj_->weight.select(0, head).unsqueeze(0),
                                                    beta_proj_->bias.narrow(0, head, 1)))
                                .squeeze(-1);
    const at::Tensor gamma = 2 * at::tanh(at::linear(x, gamma_proj_->weight.select(0, head).unsqueeze(0),
                                                     gamma_proj_->bias.narrow(0, head, 1)))
                                     .squeeze(-1);
    return {beta, gamma};
  }

 private:
  std::shared_ptr<LinearParams> beta_proj_, gamma_proj_;  // d_model -> H
};

}  // namespace

std::shared_ptr<AttentionNormalizer> make_attention_normalizer(const ModelConfig& config) {
  switch (config.normalizer) {
    case NormalizerKind::softmax:
      return std::make_shared<AttentionNormalizer>(kernels::Normalizer::softmax);
    case NormalizerKind::entmax15:
      return std::make_shared<AttentionNormalizer>(kernels::Normalizer::entmax15);
    case NormalizerKind::asentmax:
      break;
  }
  if (config.asentmax_scale == AsentmaxScale::head) return std::make_shared<AsentmaxHeadScale>(config.heads);
  return std::make_shared<AsentmaxHiddenScale>(config.d_model, config.heads);
}

}  // namespace adaspan::model
