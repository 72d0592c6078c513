#pragma once
// The commands that read runs and checkpoints: `adaspan eval`, `generate`, `inspect`, `report`, and
// `import`/`export reference` (the reference's checkpoints in and out).
// Each returns the process exit code (0 ok, 1 failure, 2 bad usage).
#include "cluster/world.h"

#include <string>
#include <vector>

namespace adaspan::launcher {

int run_eval(const std::vector<std::string>& args, const cluster::World& world);
int run_generate(const std::vector<std::string>& args);
int run_inspect(const std::vector<std::string>& args);
int run_report(const std::vector<std::string>& args);
int run_import(const std::vector<std::string>& args);
int run_export(const std::vector<std::string>& args);

}  // namespace adaspan::launcher
