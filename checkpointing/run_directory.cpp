#include "checkpointing/run_directory.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <regex>
#include <stdexcept>

namespace adaspan::checkpointing {
namespace {

namespace fs = std::filesystem;

const char* const kLockName = ".lock";
const char* const kAttemptsName = "attempts.jsonl";  // written by `adaspan launch`

std::string utc_now(const char* format) {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof(text), format, &utc);
  return text;
}

std::string host_name() {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  return host;
}

bool is_run_file(const std::string& name) {
  static const std::regex checkpoint("ckpt-[0-9]+\\.h5");
  return name == "metrics.jsonl" || name == "latest" || std::regex_match(name, checkpoint);
}

}  // namespace

void require_writable(const std::string& run_dir) {
  const std::string probe = (fs::path(run_dir) / (".write-probe-" + std::to_string(::getpid()))).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("run dir '" + run_dir + "' is not writable: " + std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

RunDirLock::RunDirLock(const std::string& run_dir) {
  const std::string path = (fs::path(run_dir) / kLockName).string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error("cannot open the run dir's lock '" + path + "': " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) {  // e.g. a shared file system mounted without locking
      const int error = errno;
      ::close(fd_);
      fd_ = -1;
      throw std::runtime_error("cannot lock the run dir's '" + path + "': " + std::strerror(error) +
                               " (does this file system support flock?)");
    }
    char holder[256] = {};
    const ssize_t n = ::pread(fd_, holder, sizeof(holder) - 1, 0);
    ::close(fd_);
    fd_ = -1;
    std::string who = n > 0 ? std::string(holder, static_cast<size_t>(n)) : "another process";
    while (!who.empty() && (who.back() == '\n' || who.back() == ' ')) who.pop_back();
    throw std::runtime_error("run dir '" + run_dir + "' is in use by " + who +
                             "; wait for that run to end or choose another --run-dir");
  }
  const std::string me =
      "pid " + std::to_string(::getpid()) + " on " + host_name() + " since " + utc_now("%Y-%m-%dT%H:%M:%SZ") + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size())) {
    // The lock is held; only the holder's description is missing.
  }
}

RunDirLock::~RunDirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

std::vector<std::string> earlier_run_files(const std::string& run_dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(run_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (is_run_file(name)) found.push_back(name);
  }
  std::sort(found.begin(), found.end());
  return found;
}

std::string move_earlier_run_aside(const std::string& run_dir, bool with_attempts_log) {
  fs::path aside = fs::path(run_dir) / ("previous-" + utc_now("%Y%m%dT%H%M%SZ"));
  for (int n = 2; fs::exists(aside); ++n) aside = fs::path(aside.string() + "-" + std::to_string(n));
  fs::create_directory(aside);
  for (const auto& entry : fs::directory_iterator(run_dir)) {
    const std::string name = entry.path().filename().string();
    if (name == kLockName || name.rfind("previous-", 0) == 0) continue;
    if (name == kAttemptsName && !with_attempts_log) continue;  // the running launcher's
    fs::rename(entry.path(), aside / name);
  }
  return aside.string();
}

std::vector<std::string> remove_stale_temporaries(const std::string& run_dir) {
  static const std::regex temporary("(ckpt-[0-9]+\\.h5|latest|metrics\\.jsonl)\\.tmp");
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(run_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!std::regex_match(name, temporary)) continue;
    std::error_code gone;
    if (fs::remove(entry.path(), gone)) removed.push_back(name);  // a symlink itself, never its target
  }
  return removed;
}

}  // namespace adaspan::checkpointing
