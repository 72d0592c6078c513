#include "launcher/python_script.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace adaspan::launcher {

namespace fs = std::filesystem;

std::string bundled_script(const std::string& name, const std::string& source_path, const char* override_variable) {
  if (const char* path = std::getenv(override_variable)) return path;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path installed = self.parent_path() / ".." / "share" / "adaspan" / name;
    if (fs::exists(installed)) return installed.string();
  }
  return source_path;
}

int exec_python(const std::string& command, const std::string& script, const std::vector<std::string>& words,
                const char* override_variable) {
  if (!fs::exists(script)) {
    std::fprintf(stderr, "adaspan %s: error: script not found (%s); set %s\n", command.c_str(), script.c_str(),
                 override_variable);
    return 1;
  }
  std::vector<std::string> line{"python3", script};
  line.insert(line.end(), words.begin(), words.end());
  std::vector<char*> argv;
  for (std::string& word : line) argv.push_back(word.data());
  argv.push_back(nullptr);
  ::execvp("python3", argv.data());
  std::fprintf(stderr, "adaspan %s: error: cannot run python3: %s\n", command.c_str(), std::strerror(errno));
  return 1;
}

}  // namespace adaspan::launcher
