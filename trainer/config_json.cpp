#include "trainer/config_json.h"

#include "trainer/train_option_table.h"

namespace adaspan::trainer {

nlohmann::json to_json(const TrainConfig& config) { return stored_json(train_option_table(), config); }

TrainConfig config_from_json(const nlohmann::json& stored) {
  TrainConfig config;
  load_stored(train_option_table(), stored, config);
  return config;
}

model::ModelConfig model_config_from_json(const nlohmann::json& stored) {
  TrainConfig config;
  try {
    load_stored(train_option_table(), stored, config, "model");
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("the checkpoint's stored config is incomplete: ") + e.what());
  }
  return config.model;
}

std::string resume_incompatibility(const TrainConfig& now, const nlohmann::json& stored) {
  return resume_mismatch(train_option_table(), now, stored);
}

std::vector<std::string> resume_changes(const TrainConfig& now, const nlohmann::json& stored) {
  return trainer::resume_changes(train_option_table(), now, stored);
}

}  // namespace adaspan::trainer
