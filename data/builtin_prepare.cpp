#include "data/builtin_prepare.h"

#include "data/synthetic_corpus.h"

#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace adaspan::data {
namespace {

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write '" + path.string() + "'");
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.flush()) throw std::runtime_error("write failed for '" + path.string() + "'");
}

// One byte per corpus byte: 1 on each recall's value, 0 elsewhere.
std::string recall_mask(const SyntheticCorpus& corpus) {
  std::string mask(corpus.bytes.size(), '\0');
  for (const PlantedRecall& r : corpus.recalls) {
    for (int i = 0; i < kBuiltinCodeLength; ++i) mask[r.recall + i] = 1;
  }
  return mask;
}

// Writes NAME.txt and NAME.mask; returns the number of recalls.
uint64_t write_split(const std::filesystem::path& dir, const std::string& name, uint64_t size, uint64_t seed) {
  const SyntheticCorpus corpus = make_synthetic_corpus(size, seed);
  write_file(dir / (name + ".txt"), corpus.bytes);
  write_file(dir / (name + ".mask"), recall_mask(corpus));
  return corpus.recalls.size();
}

}  // namespace

PreparedBuiltin prepare_builtin(const std::string& out_dir) {
  const std::filesystem::path dir(out_dir);
  std::filesystem::create_directories(dir);
  PreparedBuiltin result;
  result.train = kBuiltinTrainBytes;
  result.valid = kBuiltinValidBytes;
  result.train_recalls = write_split(dir, "train", kBuiltinTrainBytes, kBuiltinTrainSeed);
  result.valid_recalls = write_split(dir, "valid", kBuiltinValidBytes, kBuiltinValidSeed);
  return result;
}

}  // namespace adaspan::data
