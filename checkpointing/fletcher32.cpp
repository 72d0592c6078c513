#include "checkpointing/fletcher32.h"

namespace adaspan::checkpointing {
namespace {

// 360 words is the most that can be summed before sum2 could overflow 32 bits.
constexpr size_t kBlockWords = 360;

uint32_t fold(uint32_t sum) { return (sum & 0xffff) + (sum >> 16); }

uint32_t word_at(const uint8_t* p) { return static_cast<uint32_t>(p[0]) << 8 | p[1]; }

// An odd last byte is the high byte of one more word; then the final folds and the packing.
uint32_t finish(uint32_t sum1, uint32_t sum2, const uint8_t* last, size_t bytes) {
  if (bytes % 2 == 1) {
    sum1 += static_cast<uint32_t>(*last) << 8;
    sum2 += sum1;
    sum1 = fold(sum1);
    sum2 = fold(sum2);
  }
  return fold(sum2) << 16 | fold(sum1);
}

}  // namespace

uint32_t fletcher32_reference(const void* data, size_t bytes) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint32_t sum1 = 0, sum2 = 0;
  size_t words = bytes / 2;
  while (words > 0) {
    const size_t n = words < kBlockWords ? words : kBlockWords;
    for (size_t i = 0; i < n; ++i, p += 2) {
      sum1 += word_at(p);
      sum2 += sum1;
    }
    words -= n;
    sum1 = fold(sum1);
    sum2 = fold(sum2);
  }
  return finish(sum1, sum2, p, bytes);
}

// The chain is arithmetic mod 2^32, so a block's effect can be taken in closed form (same value,
// same wrap-around), which vectorises where the word-by-word chain cannot:
//   sum1' = sum1 + Σ w_i,   sum2' = sum2 + n·sum1 + Σ (n - i)·w_i   (i = 0 .. n-1).
uint32_t fletcher32(const void* data, size_t bytes) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint32_t sum1 = 0, sum2 = 0;
  size_t words = bytes / 2;
  while (words > 0) {
    const uint32_t n = static_cast<uint32_t>(words < kBlockWords ? words : kBlockWords);
    uint32_t plain = 0, weighted = 0;
    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t w = word_at(p + 2 * i);
      plain += w;
      weighted += (n - i) * w;
    }
    p += 2 * n;
    words -= n;
    sum2 = fold(sum2 + n * sum1 + weighted);
    sum1 = fold(sum1 + plain);
  }
  return finish(sum1, sum2, p, bytes);
}

}  // namespace adaspan::checkpointing
