#include "data/synthetic_corpus.h"

#include <algorithm>
#include <cmath>
#include <deque>

namespace adaspan::data {
namespace {

// splitmix64: tiny, well-mixed, identical everywhere.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  uint64_t below(uint64_t n) { return next() % n; }
};

constexpr const char* kSyllables[] = {"ka",  "to", "ri", "mel", "an",  "so",  "ve",  "lin", "dor", "pa",
                                      "shi", "nu", "el", "ta",  "gor", "mi",  "qua", "ben", "os",  "ter",
                                      "ul",  "fa", "re", "ix",  "on",  "bra", "che", "di",  "em",  "wy"};
constexpr int kVocabulary = 1500;
constexpr double kZipfExponent = 1.1;
constexpr int kDefinitionEverySentences = 5;
constexpr int kMinRecallDistance = 200;
constexpr int kMaxRecallDistance = 700;  // + up to one sentence before it is emitted: <= ~800

std::vector<std::string> make_words(Rng& rng) {
  std::vector<std::string> words;
  const uint64_t n_syllables = sizeof(kSyllables) / sizeof(kSyllables[0]);
  for (int i = 0; i < kVocabulary; ++i) {
    const int length = 1 + static_cast<int>(rng.below(3)) + (i > 200 ? 1 : 0);
    std::string w;
    for (int s = 0; s < length; ++s) w += kSyllables[rng.below(n_syllables)];
    words.push_back(w);
  }
  return words;
}

std::string random_code(Rng& rng) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string code;
  for (int i = 0; i < kBuiltinCodeLength; ++i) code += kAlphabet[rng.below(sizeof(kAlphabet) - 1)];
  return code;
}

}  // namespace

SyntheticCorpus make_synthetic_corpus(uint64_t size, uint64_t seed) {
  // One vocabulary for every seed (train and valid share the language); the seed picks the text.
  Rng vocabulary_rng{0x5EED};
  const std::vector<std::string> words = make_words(vocabulary_rng);
  Rng rng{seed * 0x2545F4914F6CDD1Dull + 7};
  std::vector<double> cumulative;  // Zipf CDF over word ranks
  double total = 0;
  for (int r = 1; r <= kVocabulary; ++r) cumulative.push_back(total += 1.0 / std::pow(r, kZipfExponent));

  struct Pending {
    uint64_t due;
    std::string key, value;
    uint64_t definition;
  };
  std::deque<Pending> pending;
  SyntheticCorpus corpus;
  std::string& out = corpus.bytes;
  out.reserve(size + 256);
  int sentences = 0;
  while (out.size() < size) {
    if (!pending.empty() && out.size() >= pending.front().due) {
      const Pending p = pending.front();
      pending.pop_front();
      out += "<use " + p.key + "=";
      corpus.recalls.push_back({p.definition, out.size()});
      out += p.value + "> ";
      continue;
    }
    if (++sentences % kDefinitionEverySentences == 0) {
      Pending p{0, random_code(rng), random_code(rng), 0};
      out += "<def " + p.key + "=";
      p.definition = out.size();
      out += p.value + "> ";
      p.due = out.size() + kMinRecallDistance + rng.below(kMaxRecallDistance - kMinRecallDistance + 1);
      pending.push_back(p);
      continue;
    }
    const int length = 4 + static_cast<int>(rng.below(11));
    for (int w = 0; w < length; ++w) {
      const double u = rng.uniform() * total;
      const size_t rank = std::min<size_t>(
          std::lower_bound(cumulative.begin(), cumulative.end(), u) - cumulative.begin(), kVocabulary - 1);
      std::string word = words[rank];
      if (w == 0) word[0] = static_cast<char>(word[0] - 'a' + 'A');
      out += word;
      out += (w + 1 == length) ? "." : (rng.below(8) == 0 ? ", " : " ");
    }
    out += rng.below(6) == 0 ? "\n" : " ";
  }
  out.resize(size);
  while (!corpus.recalls.empty() && corpus.recalls.back().recall + kBuiltinCodeLength > size) corpus.recalls.pop_back();
  return corpus;
}

}  // namespace adaspan::data
