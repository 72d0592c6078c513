#pragma once
// HDF5's Fletcher32 checksum (the H5Z_FILTER_FLETCHER32 filter), so that a checkpoint's chunks can be
// read raw, straight into tensor memory, and still verified the way HDF5 would.
//
// Over the data as big-endian 16-bit words w_i (an odd last byte is the high byte of a last word):
//   sum1 += w_i;  sum2 += sum1;  folded (s & 0xffff) + (s >> 16) after every 360 words and at the end;
//   checksum = sum2 << 16 | sum1.
// The filter stores it after the chunk's data, little-endian.
#include <cstddef>
#include <cstdint>

namespace adaspan::checkpointing {

uint32_t fletcher32(const void* data, size_t bytes);

// Word by word, exactly as the formula reads: the reference the fast one is tested against.
uint32_t fletcher32_reference(const void* data, size_t bytes);

}  // namespace adaspan::checkpointing
