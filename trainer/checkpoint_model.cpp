#include "trainer/checkpoint_model.h"

#include "checkpointing/checkpoint_file.h"
#include "trainer/config_json.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <map>
#include <stdexcept>

namespace adaspan::trainer {

CheckpointModel load_checkpoint_model(const std::string& path, const at::Device& device, int64_t attn_span) {
  const checkpointing::TrainingState header = checkpointing::read_checkpoint_header(path);
  const nlohmann::json config = nlohmann::json::parse(header.config_json);
  CheckpointModel out;
  out.step = header.step;
  out.batch_size = config.at("data").at("batch-size").get<int64_t>();
  out.block_size = config.at("data").at("block-size").get<int64_t>();
  model::ModelConfig model_config = model_config_from_json(config);
  const int64_t trained_span = model_config.attn_span;
  if (attn_span > 0 && attn_span != trained_span) {
    if (attn_span < trained_span) {
      throw std::runtime_error("--attn-span " + std::to_string(attn_span) + " is below the checkpoint's " +
                               std::to_string(trained_span) + " (only longer contexts can be evaluated)");
    }
    if (model_config.span_mode == model::SpanMode::dynamic) {
      throw std::runtime_error("--attn-span cannot change S of a model with dynamic spans (z_t = S*sigmoid(...))");
    }
    model_config.attn_span = attn_span;
  }
  out.model = std::make_shared<model::AdaptiveSpanLM>(model_config);
  out.attn_span = model_config.attn_span;

  std::map<std::string, at::Tensor> stored;
  for (auto& p : checkpointing::read_parameters(path)) stored[p.name] = p.tensor;
  if (model_config.attn_span != trained_span) out.model->extend_span(stored, trained_span);
  at::NoGradGuard no_grad;
  for (auto& p : out.model->named_parameters()) {
    auto it = stored.find(p.key());
    if (it == stored.end()) throw std::runtime_error("'" + path + "' has no dataset 'model/" + p.key() + "'");
    if (it->second.sizes() != p.value().sizes()) {
      throw std::runtime_error("'" + path + "': model/" + p.key() + " has the wrong shape");
    }
    at::Tensor param = p.value();
    param.copy_(it->second);
  }
  out.model->to(device);
  out.model->eval();
  return out;
}

}  // namespace adaspan::trainer
