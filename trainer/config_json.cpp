#include "trainer/config_json.h"

#include <stdexcept>

namespace adaspan::trainer {

nlohmann::json to_json(const TrainConfig& c) {
  return {
      {"model",
       {{"vocab", c.model.vocab},
        {"layers", c.model.layers},
        {"d-model", c.model.d_model},
        {"heads", c.model.heads},
        {"ff-size", c.model.ff_size},
        {"attn-span", c.model.attn_span},
        {"span-ramp", c.model.span_ramp},
        {"span-init", c.model.span_init},
        {"span-init-heads", c.model.span_init_heads},
        {"span-loss-coeff", c.model.span_loss_coeff},
        {"dropout", c.model.dropout},
        {"cache", model::to_string(c.model.cache)},
        {"trim-hidden-cache", c.model.trim_hidden_cache},
        {"attention", model::to_string(c.model.attention)},
        {"span-mode", model::to_string(c.model.span_mode)},
        {"normalizer", model::to_string(c.model.normalizer)},
        {"asentmax-scale", model::to_string(c.model.asentmax_scale)},
        {"sparse-stride", c.model.sparse_stride}}},
      {"data",
       {{"data", c.data.train_files},
        {"valid-data", c.data.valid_files},
        {"batch-size", c.data.batch_size},
        {"block-size", c.data.block_size}}},
      {"optim",
       {{"optimizer", c.optim.optimizer},
        {"lr", c.optim.lr},
        {"warmup-steps", c.optim.warmup_steps},
        {"grad-clip", c.optim.grad_clip},
        {"grad-accum", c.optim.grad_accum},
        {"adam-beta1", c.optim.adam_beta1},
        {"adam-beta2", c.optim.adam_beta2},
        {"adam-eps", c.optim.adam_eps}}},
      {"run",
       {{"steps", c.run.steps},
        {"seed", c.run.seed},
        {"device", c.run.device},
        {"tp", c.run.tp},
        {"zero", c.run.zero},
        {"run-dir", c.run.run_dir},
        {"checkpoint-every", c.run.checkpoint_every},
        {"keep-checkpoints", c.run.keep_checkpoints},
        {"async-checkpoint", c.run.async_checkpoint}}},
  };
}

model::ModelConfig model_config_from_json(const nlohmann::json& stored) {
  try {
    const nlohmann::json& m = stored.at("model");
    model::ModelConfig c;
    c.vocab = m.at("vocab").get<int64_t>();
    c.layers = m.at("layers").get<int64_t>();
    c.d_model = m.at("d-model").get<int64_t>();
    c.heads = m.at("heads").get<int64_t>();
    c.ff_size = m.at("ff-size").get<int64_t>();
    c.attn_span = m.at("attn-span").get<int64_t>();
    c.span_ramp = m.at("span-ramp").get<double>();
    c.span_init = m.at("span-init").get<double>();
    if (m.contains("span-init-heads")) c.span_init_heads = m["span-init-heads"].get<std::vector<double>>();
    c.span_loss_coeff = m.at("span-loss-coeff").get<double>();
    c.dropout = m.at("dropout").get<double>();
    c.cache = model::parse_cache_mode(m.at("cache").get<std::string>());
    c.trim_hidden_cache = m.at("trim-hidden-cache").get<bool>();
    // Checkpoints from before the attention variants have none of these: the defaults.
    if (m.contains("attention")) c.attention = model::parse_attention_kind(m["attention"].get<std::string>());
    if (m.contains("span-mode")) c.span_mode = model::parse_span_mode(m["span-mode"].get<std::string>());
    if (m.contains("normalizer")) c.normalizer = model::parse_normalizer(m["normalizer"].get<std::string>());
    if (m.contains("asentmax-scale")) c.asentmax_scale = model::parse_asentmax_scale(m["asentmax-scale"].get<std::string>());
    if (m.contains("sparse-stride")) c.sparse_stride = m["sparse-stride"].get<int64_t>();
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(std::string("the checkpoint's stored config is incomplete: ") + e.what());
  }
}

std::string resume_incompatibility(const TrainConfig& now, const nlohmann::json& stored) {
  const nlohmann::json mine = to_json(now);
  static const std::pair<const char*, const char*> kMustMatch[] = {
      {"model", "vocab"},   {"model", "layers"},    {"model", "d-model"},    {"model", "heads"},
      {"model", "ff-size"}, {"model", "attn-span"}, {"model", "cache"},      {"data", "batch-size"},
      {"optim", "optimizer"}};
  // Added with the attention variants: a checkpoint without them had the defaults.
  const nlohmann::json defaults = to_json(TrainConfig{});
  for (const char* key : {"attention", "span-mode", "normalizer", "asentmax-scale", "sparse-stride"}) {
    // A variant's own option matters only where that variant is on (then both sides have it on).
    if ((std::string(key) == "asentmax-scale" && mine["model"]["normalizer"] != "asentmax") ||
        (std::string(key) == "sparse-stride" && mine["model"]["attention"] != "sparse-fixed")) {
      continue;
    }
    const nlohmann::json& then = stored.contains("model") && stored["model"].contains(key) ? stored["model"][key]
                                                                                           : defaults["model"][key];
    if (then != mine["model"][key]) {
      return std::string("--") + key + " is " + then.dump() + " in the checkpoint, " + mine["model"][key].dump() + " here";
    }
  }
  for (const auto& [group, key] : kMustMatch) {
    if (!stored.contains(group) || !stored[group].contains(key)) {
      return std::string("the checkpoint's config has no '") + key + "'";
    }
    const nlohmann::json& then = stored[group][key];
    const nlohmann::json& here = mine[group][key];
    if (then != here) {
      return std::string("--") + key + " is " + then.dump() + " in the checkpoint, " + here.dump() + " here";
    }
  }
  return "";
}

}  // namespace adaspan::trainer
