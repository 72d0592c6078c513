#pragma once
// `adaspan prepare enwik8 --zip enwik8.zip --out DIR`
#include <string>
#include <vector>

namespace adaspan::launcher {

int run_prepare(const std::vector<std::string>& args);  // returns the process exit code

}  // namespace adaspan::launcher
