#include "cluster/heap_policy.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace adaspan::cluster {

void keep_large_blocks_in_heap() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

}  // namespace adaspan::cluster
