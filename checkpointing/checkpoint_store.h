#pragma once
// The checkpoints of a run directory: RUN_DIR/ckpt-STEP.h5, RUN_DIR/latest (the newest file's
// name), retention. Writing is atomic: the file is written as ckpt-STEP.h5.tmp, closed on every
// rank, then renamed by one rank; a crash at any point leaves the previous checkpoint intact
// (a stray .tmp is removed when the next run starts). Plain file operations: callers decide which
// rank does them.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace adaspan::checkpointing {

std::string checkpoint_path(const std::string& run_dir, int64_t step);  // RUN_DIR/ckpt-STEP.h5
std::string temporary_path(const std::string& run_dir, int64_t step);   // ... .h5.tmp

// The finished checkpoints of run_dir (ckpt-STEP.h5, regular files): the one `latest` names first,
// then the others newest (largest step) first.
// Names whose step does not fit an int64 are skipped and, with `ignored`, listed there.
std::vector<std::string> list_checkpoints(const std::string& run_dir, std::vector<std::string>* ignored = nullptr);

// fsyncs the temporary file, renames it to its final name, points `latest` at it (written to a
// temporary and renamed), fsyncs the directory, then deletes all but the newest `keep`
// checkpoints up to `step` (keep <= 0: keep all; higher-numbered files are left alone). Returns the
// final path. Throws on an I/O error.
// `ours`: whether a checkpoint belongs to this run's lineage; retention deletes only those (all when
// empty).
std::string commit_checkpoint(const std::string& run_dir, int64_t step, int64_t keep,
                              const std::function<bool(const std::string& path)>& ours = {});

// Bytes the file system of `dir` has free for this user (statvfs); max when unknown.
uint64_t free_bytes(const std::string& dir);

}  // namespace adaspan::checkpointing
