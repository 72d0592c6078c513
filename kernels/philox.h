#pragma once
// Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3"): a counter-based
// generator, so the dropout keep-mask of attention element (row, x) is a pure function of
// (seed, row, x). The backward pass regenerates the forward's mask instead of storing it, and the
// host and CUDA builds of the row kernels draw the same mask.
#include <cstdint>

#if defined(__CUDACC__)
#define ADASPAN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define ADASPAN_HOST_DEVICE inline
#endif

namespace adaspan::kernels {

struct Philox4x32 {
  uint32_t v[4];
};

ADASPAN_HOST_DEVICE uint32_t mul_hi32(uint32_t a, uint32_t b) {
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
}

// Ten rounds of the Philox4x32 bijection of `counter` under `key`.
ADASPAN_HOST_DEVICE Philox4x32 philox4x32_10(Philox4x32 counter, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;    // round multipliers
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;  // key schedule increments
  for (int round = 0; round < 10; ++round) {
    const uint32_t lo0 = kMul0 * counter.v[0], hi0 = mul_hi32(kMul0, counter.v[0]);
    const uint32_t lo1 = kMul1 * counter.v[2], hi1 = mul_hi32(kMul1, counter.v[2]);
    counter = Philox4x32{{hi1 ^ counter.v[1] ^ key0, lo1, hi0 ^ counter.v[3] ^ key1, lo0}};
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return counter;
}

// A uniform draw in [0, 1) for element `index` of stream `stream` under a 64-bit seed.
ADASPAN_HOST_DEVICE float philox_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  const Philox4x32 out = philox4x32_10(Philox4x32{{static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32),
                                                   static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)}},
                                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return static_cast<float>(out.v[0] >> 8) * (1.0f / 16777216.0f);  // 24 random bits
}

}  // namespace adaspan::kernels
