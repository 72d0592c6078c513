#pragma once
// The commands that are Python scripts run from the binary (`report`, `import`/`export reference`):
// where the script is, and running it in this process's place.
#include <string>
#include <vector>

namespace adaspan::launcher {

// The script `name` next to an installed binary (../share/adaspan/NAME), else `source_path` (the
// source tree it was built from); the environment variable `override_variable` wins over both.
std::string bundled_script(const std::string& name, const std::string& source_path, const char* override_variable);

// Replaces this process with `python3 script words...`; returns 1 (after one error line) only when
// that fails: no script, no python3.
int exec_python(const std::string& command, const std::string& script, const std::vector<std::string>& words,
                const char* override_variable);

}  // namespace adaspan::launcher
