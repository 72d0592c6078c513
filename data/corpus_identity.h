#pragma once
// What a corpus is, in a line a checkpoint can store and a resumed run compare: its size and a
// hash of a few evenly spaced samples of its bytes (not all of it: a 10 GB corpus would take
// minutes to hash at every start). Renamed or moved files keep their identity; other contents
// almost surely do not.
#include "data/byte_corpus.h"

#include <string>

namespace adaspan::data {

// "1048576 bytes, sample hash 3f2a...": FNV-1a (64 bit) of the size and of up to 4 samples of
// 1 MiB at offsets 0, N/4, N/2, 3N/4 (all of a corpus up to 4 MiB).
std::string corpus_identity(const ByteCorpus& corpus);

}  // namespace adaspan::data
