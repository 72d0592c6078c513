#pragma once
// The built-in corpus: deterministic text-like bytes with structure at two scales.
//  - Local: sentences of 4-14 pseudo-words (Zipf-distributed over a fixed vocabulary of
//    syllable words), capitals, commas, full stops, paragraph breaks.
//  - Long range: a definition `<def KKKK=VVVV>` (4 random letters/digits each) is planted about
//    once every 5 sentences, and `<use KKKK=VVVV>` repeats it 200-800 bytes later. The 4 value
//    bytes after `<use KKKK=` can only be predicted by attending back to the definition, so
//    heads that learn spans of hundreds of bytes lower the loss there.
// Same seed, same bytes, on every platform (own PRNG, no std distributions).
#include <cstdint>
#include <string>
#include <vector>

namespace adaspan::data {

constexpr int kBuiltinCodeLength = 4;  // bytes of each key K and value V

struct PlantedRecall {
  uint64_t definition;  // offset of the value's first byte in `<def K=V>`
  uint64_t recall;      // offset of the value's first byte in `<use K=V>`
};

struct SyntheticCorpus {
  std::string bytes;
  std::vector<PlantedRecall> recalls;
};

SyntheticCorpus make_synthetic_corpus(uint64_t size, uint64_t seed);

// The defaults `adaspan train` uses when no --data / --valid-data is given.
constexpr uint64_t kBuiltinTrainBytes = 4u << 20;
constexpr uint64_t kBuiltinValidBytes = 256u << 10;
constexpr uint64_t kBuiltinTrainSeed = 1;
constexpr uint64_t kBuiltinValidSeed = 2;

}  // namespace adaspan::data
