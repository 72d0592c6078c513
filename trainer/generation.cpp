#include "trainer/generation.h"

#include <ATen/ATen.h>

#include <ATen/CPUGeneratorImpl.h>

#include <limits>
#include <stdexcept>

namespace adaspan::trainer {
namespace {

// One byte from log-probabilities [vocab].
int64_t draw(const at::Tensor& log_probs, const SamplingOptions& o, at::Generator& gen) {
  if (o.temperature <= 0) return log_probs.argmax().item<int64_t>();
  at::Tensor logits = log_probs.to(at::kCPU, at::kDouble) / o.temperature;
  if (o.top_k > 0 && o.top_k < logits.numel()) {
    const double kth = std::get<0>(logits.topk(o.top_k)).min().item<double>();
    logits = logits.masked_fill(logits < kth, -std::numeric_limits<double>::infinity());
  }
  return at::multinomial(at::softmax(logits, 0), 1, false, gen).item<int64_t>();
}

}  // namespace

int64_t cache_bytes(const model::ModelCache& cache) {
  int64_t total = 0;
  const auto add = [&](const at::Tensor& t) {
    if (t.defined()) total += t.numel() * static_cast<int64_t>(t.element_size());
  };
  for (const auto& layer : cache) {
    add(layer.hidden);
    for (const auto& k : layer.keys) add(k);
    for (const auto& v : layer.values) add(v);
  }
  return total;
}

Generated generate(model::AdaptiveSpanLM& model, const std::string& prompt, const SamplingOptions& o,
                   const at::Device& device, const std::function<void(uint8_t)>& on_byte) {
  if (prompt.empty()) throw std::invalid_argument("--prompt must not be empty");
  at::NoGradGuard no_grad;
  model.eval();
  at::Generator gen = at::detail::createCPUGenerator(o.seed);
  // input: [1, L] bytes
  at::Tensor input = at::empty({1, static_cast<int64_t>(prompt.size())}, at::kLong);
  for (size_t i = 0; i < prompt.size(); ++i) input[0][static_cast<int64_t>(i)] = static_cast<unsigned char>(prompt[i]);
  model::ModelCache cache;
  Generated out;
  for (int64_t n = 0; n < o.bytes; ++n) {
    model::LMOutput step = model.forward(input.to(device), cache);
    cache = std::move(step.next_cache);
    const int64_t byte = draw(step.log_probs[0][step.log_probs.size(1) - 1], o, gen);
    out.text.push_back(static_cast<char>(byte));
    if (on_byte) on_byte(static_cast<uint8_t>(byte));
    input = at::full({1, 1}, byte, at::kLong);
  }
  out.cache_bytes = cache_bytes(cache);
  return out;
}

}  // namespace adaspan::trainer
