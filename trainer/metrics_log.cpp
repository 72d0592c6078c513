#include "trainer/metrics_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
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
  // The kept records go to a new file (never through a symlink), renamed over the old one; the
  // log then appends to the file this run made.
  const std::string kept = resumed_step ? records_through(path, *resumed_step) : "";
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot write metrics to '" + tmp + "': " + std::strerror(errno));
  const bool written = ::write(fd, kept.data(), kept.size()) == static_cast<ssize_t>(kept.size());
  ::close(fd);
  if (!written || std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("cannot write metrics to '" + path + "': " + std::strerror(errno));
  }
  out_.open(path, std::ios::app);
  if (!out_) throw std::runtime_error("cannot write metrics to '" + path + "'");
}

void MetricsLog::write(const nlohmann::json& record) {
  out_ << record.dump() << '\n';
  out_.flush();
  if (!out_) throw std::runtime_error("write failed on '" + path_ + "'");
}

}  // namespace adaspan::trainer
