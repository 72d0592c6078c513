#pragma once
// TrainConfig <-> JSON, with the flag names as keys ("d-model", "batch-size"), as the option
// table (trainer/train_option_table.cpp) declares them: stored in every checkpoint, so a
// checkpoint says how it was made and eval/generate rebuild the model from it.
#include "trainer/train_config.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace adaspan::trainer {

nlohmann::json to_json(const TrainConfig& config);
// Every stored option; throws std::runtime_error naming a missing one (options added later than
// the checkpoint take their defaults).
TrainConfig config_from_json(const nlohmann::json& stored);
// The model part of a stored config; throws std::runtime_error naming a missing key.
model::ModelConfig model_config_from_json(const nlohmann::json& stored);

// Empty when a run configured as `now` can continue from a checkpoint made with `stored`; else
// one line naming the first option the table marks must-match that differs (a shape, the number
// of streams, the optimizer, the cache kind), e.g. "--d-model is 64 in the checkpoint, 128 here".
std::string resume_incompatibility(const TrainConfig& now, const nlohmann::json& stored);
// The options a resume may change that did ("--lr 0.07 -> 0.1"), for a note.
std::vector<std::string> resume_changes(const TrainConfig& now, const nlohmann::json& stored);

}  // namespace adaspan::trainer
