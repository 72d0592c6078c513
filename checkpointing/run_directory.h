#pragma once
// A run directory's guard rails, so that no run ever loses another's files: one run at a time (a
// lock that dies with its process), no fresh run over an earlier run's records, a crash's
// leftovers cleared. Plain file operations: rank 0 calls them before anything is written.
#include <string>
#include <vector>

namespace adaspan::checkpointing {

// Holds RUN_DIR/.lock (flock, exclusive) for its lifetime. The file names the holder, so a second
// run is refused with who has it; the lock is released when the holder's process ends, however it
// ends (a crashed run leaves no stale lock).
class RunDirLock {
 public:
  // Throws std::runtime_error naming the holder ("pid 4242 on node7 since 2026-11-30T01:02:03Z")
  // when another process holds it.
  explicit RunDirLock(const std::string& run_dir);
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

 private:
  int fd_ = -1;
};

// Throws std::runtime_error ("run dir 'D' is not writable: Permission denied") unless a new file
// can be made in run_dir: a read-only directory or file system is refused before a run starts,
// not found out at its first checkpoint.
void require_writable(const std::string& run_dir);

// The files of an earlier run in run_dir (metrics.jsonl, checkpoints, `latest`), by name; empty
// when there are none. The launcher's attempts.jsonl, the lock and previous-* are not a run's.
std::vector<std::string> earlier_run_files(const std::string& run_dir);

// Moves everything of run_dir but the lock, earlier previous-* folders and (unless
// `with_attempts_log`, for the launcher that writes it) attempts.jsonl into
// RUN_DIR/previous-<UTC time>/ (never deletes); returns that folder.
std::string move_earlier_run_aside(const std::string& run_dir, bool with_attempts_log = false);

// Removes what a crashed run leaves half-written (ckpt-*.h5.tmp, latest.tmp, metrics.jsonl.tmp);
// returns their names.
std::vector<std::string> remove_stale_temporaries(const std::string& run_dir);

}  // namespace adaspan::checkpointing
