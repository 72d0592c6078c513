#include "checkpointing/checkpoint_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <stdexcept>

namespace adaspan::checkpointing {
namespace {

namespace fs = std::filesystem;

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) throw std::runtime_error("cannot open '" + path + "' to sync: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw std::runtime_error("fsync of '" + path + "' failed: " + std::strerror(errno));
}

void rename_or_throw(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    throw std::runtime_error("cannot rename '" + from + "' to '" + to + "': " + std::strerror(errno));
  }
}

std::vector<std::pair<int64_t, std::string>> steps_and_paths(const std::string& run_dir) {
  static const std::regex name("ckpt-([0-9]+)\\.h5");
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(run_dir, ec)) {
    std::smatch m;
    const std::string file = entry.path().filename().string();
    if (entry.is_regular_file() && std::regex_match(file, m, name)) {
      out.emplace_back(std::stoll(m[1].str()), entry.path().string());
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

}  // namespace

std::string checkpoint_path(const std::string& run_dir, int64_t step) {
  return (fs::path(run_dir) / ("ckpt-" + std::to_string(step) + ".h5")).string();
}

std::string temporary_path(const std::string& run_dir, int64_t step) { return checkpoint_path(run_dir, step) + ".tmp"; }

std::vector<std::string> list_checkpoints(const std::string& run_dir) {
  std::vector<std::string> out;
  for (auto& [step, path] : steps_and_paths(run_dir)) out.push_back(path);
  return out;
}

std::string commit_checkpoint(const std::string& run_dir, int64_t step, int64_t keep) {
  const std::string tmp = temporary_path(run_dir, step), final_path = checkpoint_path(run_dir, step);
  fsync_path(tmp, false);
  rename_or_throw(tmp, final_path);

  const std::string latest = (fs::path(run_dir) / "latest").string();
  {
    std::ofstream out(latest + ".tmp", std::ios::trunc);
    out << fs::path(final_path).filename().string() << '\n';
    if (!out.flush()) throw std::runtime_error("cannot write '" + latest + ".tmp'");
  }
  fsync_path(latest + ".tmp", false);
  rename_or_throw(latest + ".tmp", latest);
  fsync_path(run_dir, true);

  if (keep > 0) {
    const auto all = steps_and_paths(run_dir);
    for (size_t i = static_cast<size_t>(keep); i < all.size(); ++i) {
      std::error_code ec;
      fs::remove(all[i].second, ec);  // a checkpoint that cannot be deleted costs only space
    }
  }
  return final_path;
}

}  // namespace adaspan::checkpointing
