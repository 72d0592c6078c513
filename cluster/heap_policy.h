#pragma once
// How glibc's malloc serves large blocks in this process. By default a block over the mmap threshold
// (128 KB, rising to at most 32 MB) is a fresh mmap: every allocation faults its pages in, zeroed,
// and every free unmaps them. HDF5's filter pipeline allocates a chunk-sized buffer for every chunk
// it writes, so a checkpoint paid for faulting in its whole size again (~20% of the write time of a
// 306 MB checkpoint on the development machine). Kept in the heap instead, freed blocks are reused.
namespace adaspan::cluster {

// Serve blocks up to 256 MB from the heap and keep up to 1 GB of freed memory there. Call first
// thing in main; a no-op where the C library is not glibc.
void keep_large_blocks_in_heap();

}  // namespace adaspan::cluster
