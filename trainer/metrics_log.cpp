#include "trainer/metrics_log.h"

#include <sstream>
#include <stdexcept>
#include <vector>

namespace adaspan::trainer {
namespace {

// The lines of `path` whose record has no step past `last_step` (unparsable lines are dropped:
// a crash can leave a half-written last line).
std::string records_through(const std::string& path, int64_t last_step) {
  std::ifstream in(path);
  std::string kept;
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
    if (record.is_discarded()) continue;
    if (record.contains("step") && record["step"].is_number() && record["step"].get<int64_t>() > last_step) continue;
    kept += line + '\n';
  }
  return kept;
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path, std::optional<int64_t> resumed_step) : path_(path) {
  const std::string kept = resumed_step ? records_through(path, *resumed_step) : "";
  out_.open(path, std::ios::trunc);
  if (!out_) throw std::runtime_error("cannot write metrics to '" + path + "'");
  out_ << kept;
  out_.flush();
}

void MetricsLog::write(const nlohmann::json& record) {
  out_ << record.dump() << '\n';
  out_.flush();
  if (!out_) throw std::runtime_error("write failed on '" + path_ + "'");
}

}  // namespace adaspan::trainer
