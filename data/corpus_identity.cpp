#include "data/corpus_identity.h"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace adaspan::data {
namespace {

constexpr uint64_t kSampleBytes = 1 << 20;
constexpr int kSamples = 4;

// FNV-1a, 64 bit: h = (h xor byte) * 1099511628211, from 14695981039346656037.
uint64_t fnv1a(uint64_t h, const uint8_t* bytes, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) h = (h ^ bytes[i]) * 1099511628211ULL;
  return h;
}

}  // namespace

std::string corpus_identity(const ByteCorpus& corpus) {
  const uint64_t size = corpus.size();
  uint64_t h = 14695981039346656037ULL;
  const uint8_t* size_bytes = reinterpret_cast<const uint8_t*>(&size);
  h = fnv1a(h, size_bytes, sizeof(size));
  std::vector<uint8_t> sample;
  for (int s = 0; s < kSamples && size > 0; ++s) {
    const uint64_t start = size / kSamples * static_cast<uint64_t>(s);
    const uint64_t count = std::min(kSampleBytes, size - start);
    sample.resize(count);
    corpus.read_wrapped(start, count, sample.data());
    h = fnv1a(h, sample.data(), count);
  }
  char text[64];
  std::snprintf(text, sizeof(text), "%llu bytes, sample hash %016llx", static_cast<unsigned long long>(size),
                static_cast<unsigned long long>(h));
  return text;
}

}  // namespace adaspan::data
