#include "trainer/metrics_log.h"

#include <stdexcept>

namespace adaspan::trainer {

MetricsLog::MetricsLog(const std::string& path) : path_(path), out_(path, std::ios::trunc) {
  if (!out_) throw std::runtime_error("cannot write metrics to '" + path + "'");
}

void MetricsLog::write(const nlohmann::json& record) {
  out_ << record.dump() << '\n';
  out_.flush();
  if (!out_) throw std::runtime_error("write failed on '" + path_ + "'");
}

}  // namespace adaspan::trainer
