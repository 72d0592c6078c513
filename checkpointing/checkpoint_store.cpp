#include "checkpointing/checkpoint_store.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
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

// ckpt-STEP.h5 files (regular files, not symlinks), newest first. A step that does not fit an
// int64 is no checkpoint of ours: its name goes to `ignored`.
std::vector<std::pair<int64_t, std::string>> steps_and_paths(const std::string& run_dir,
                                                             std::vector<std::string>* ignored = nullptr) {
  static const std::regex name("ckpt-([0-9]+)\\.h5");
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(run_dir, ec)) {
    std::smatch m;
    const std::string file = entry.path().filename().string();
    if (!entry.is_regular_file() || entry.is_symlink() || !std::regex_match(file, m, name)) continue;
    const std::string digits = m[1].str();
    int64_t step = 0;
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), step);
    if (error != std::errc() || end != digits.data() + digits.size()) {
      if (ignored) ignored->push_back(file);
      continue;
    }
    out.emplace_back(step, entry.path().string());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

// Creates `path` (never through a symlink, never over a file: a stale one is removed by name
// first), writes `text` and fsyncs it.
void write_new_file(const std::string& path, const std::string& text) {
  ::unlink(path.c_str());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot create '" + path + "': " + std::strerror(errno));
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  const bool synced = written && ::fsync(fd) == 0;
  const int error = errno;
  ::close(fd);
  if (!synced) throw std::runtime_error("cannot write '" + path + "': " + std::strerror(error));
}

}  // namespace

std::string checkpoint_path(const std::string& run_dir, int64_t step) {
  return (fs::path(run_dir) / ("ckpt-" + std::to_string(step) + ".h5")).string();
}

std::string temporary_path(const std::string& run_dir, int64_t step) { return checkpoint_path(run_dir, step) + ".tmp"; }

std::vector<std::string> list_checkpoints(const std::string& run_dir, std::vector<std::string>* ignored) {
  std::vector<std::string> out;
  // `latest` names the last commit: it goes first, ahead of a higher-numbered file that some other
  // run (or a copy by hand) left. A name with a '/' would point outside the run dir: ignored.
  std::ifstream latest_file(fs::path(run_dir) / "latest");
  std::string latest;
  std::getline(latest_file, latest);
  for (auto& [step, path] : steps_and_paths(run_dir, ignored)) {
    if (!latest.empty() && latest.find('/') == std::string::npos && fs::path(path).filename() == latest) {
      out.insert(out.begin(), path);
    } else {
      out.push_back(path);
    }
  }
  return out;
}

std::string commit_checkpoint(const std::string& run_dir, int64_t step, int64_t keep,
                              const std::function<bool(const std::string& path)>& ours) {
  const std::string tmp = temporary_path(run_dir, step), final_path = checkpoint_path(run_dir, step);
  fsync_path(tmp, false);
  rename_or_throw(tmp, final_path);

  const std::string latest = (fs::path(run_dir) / "latest").string();
  write_new_file(latest + ".tmp", fs::path(final_path).filename().string() + "\n");
  rename_or_throw(latest + ".tmp", latest);
  fsync_path(run_dir, true);

  if (keep > 0) {
    // The newest `keep` up to this step stay; a higher-numbered file is not this run's last commit
    // (another run's, or copied in) and is never deleted, nor does it push this one out.
    size_t kept = 0;
    for (const auto& [other_step, path] : steps_and_paths(run_dir)) {
      if (other_step > step || (ours && !ours(path)) || ++kept <= static_cast<size_t>(keep)) continue;
      std::error_code ec;
      fs::remove(path, ec);  // a checkpoint that cannot be deleted costs only space
    }
  }
  return final_path;
}

uint64_t free_bytes(const std::string& dir) {
  struct statvfs fs_stats {};
  if (::statvfs(dir.c_str(), &fs_stats) != 0) return UINT64_MAX;
  return static_cast<uint64_t>(fs_stats.f_bavail) * fs_stats.f_frsize;
}

}  // namespace adaspan::checkpointing
