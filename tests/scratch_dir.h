#pragma once
// A fresh directory path for one test, under the system's temp dir and unique to this process:
// removed if it exists, then created empty unless `create` is false (for tests that check what a
// run writes, or that a bad one writes nothing).
#include <unistd.h>

#include <filesystem>
#include <string>

namespace adaspan::testing {

inline std::filesystem::path fresh_dir(const std::string& suite, const std::string& name, bool create = true) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("adaspan_" + suite + "_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  if (create) fs::create_directories(dir);
  return dir;
}

}  // namespace adaspan::testing
