#pragma once
// RUN_DIR/metrics.jsonl: one JSON object per line, flushed after each, so a crash loses
// nothing already logged and `tail -f` follows the run.
#include <nlohmann/json.hpp>

#include <fstream>
#include <string>

namespace adaspan::trainer {

class MetricsLog {
 public:
  explicit MetricsLog(const std::string& path);  // truncates; throws if it cannot be written
  void write(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

}  // namespace adaspan::trainer
