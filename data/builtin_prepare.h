#pragma once
// `adaspan prepare builtin`: the built-in corpus as files, so that any tool can read it and
// `adaspan eval --focus` can score its long-range bytes on their own. Writes the bytes `train`
// uses when given no --data (same sizes and seeds) and, per split, a mask (one byte per text byte,
// 1 on the value bytes of each `<use KKKK=VVVV>`: the bytes only a look back to the matching
// `<def KKKK=VVVV>` 200-800 bytes earlier predicts).
#include <cstdint>
#include <string>

namespace adaspan::data {

struct PreparedBuiltin {
  uint64_t train = 0, valid = 0;                  // bytes written
  uint64_t train_recalls = 0, valid_recalls = 0;  // planted recalls (each masks its value bytes)
};

// Writes DIR/{train,valid}.txt and DIR/{train,valid}.mask. Throws std::runtime_error.
PreparedBuiltin prepare_builtin(const std::string& out_dir);

}  // namespace adaspan::data
