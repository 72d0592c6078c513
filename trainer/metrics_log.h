#pragma once
// RUN_DIR/metrics.jsonl: one JSON object per line, flushed after each, so a crash loses
// nothing already logged and `tail -f` follows the run.
#include <nlohmann/json.hpp>

#include <fstream>
#include <optional>
#include <string>

namespace adaspan::trainer {

class MetricsLog {
 public:
  // Starts the file afresh, or (resumed_step set) keeps the records up to and including that step
  // and appends after them. Throws if it cannot be written.
  MetricsLog(const std::string& path, std::optional<int64_t> resumed_step);
  void write(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

}  // namespace adaspan::trainer
