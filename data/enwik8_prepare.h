#pragma once
// `adaspan prepare enwik8`: the standard character-level split of enwik8 (Hutter prize):
// the first 90M bytes train, the next 5M valid, the last 5M test, as raw bytes (adaspan is
// byte-level, so no re-encoding). Read straight from the zip without unpacking it first.
#include <cstdint>
#include <string>

namespace adaspan::data {

struct SplitSizes {
  uint64_t valid = 5'000'000;
  uint64_t test = 5'000'000;
};

struct PreparedSplit {
  uint64_t train = 0, valid = 0, test = 0;  // bytes written
};

// Reads the member `member` (default "enwik8") of `zip_path` and writes DIR/{train,valid,test}.txt:
// train is everything before the last valid + test bytes. Throws std::runtime_error.
PreparedSplit prepare_enwik8(const std::string& zip_path, const std::string& out_dir, const SplitSizes& sizes,
                             const std::string& member = "enwik8");

}  // namespace adaspan::data
