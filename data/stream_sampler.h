#pragma once
// B parallel streams over a corpus of N bytes (the reference's batchify, without cutting the
// corpus): stream k starts at floor(k·N/B) and every step reads the next M + 1 bytes (M inputs
// and their next-byte targets), then advances by M, wrapping at the end of the corpus.
// Positions are global (all B streams), so any split of the streams over ranks continues the
// same streams; a sampler reads only the streams it owns, and under context parallelism only its
// chunk of each block (set_chunk).
#include "data/byte_corpus.h"

#include <cstdint>
#include <functional>
#include <vector>

namespace adaspan::data {

struct ByteBatch {
  int64_t rows = 0;            // streams read
  int64_t cols = 0;            // M + 1 (a chunk's length + 1 with set_chunk)
  std::vector<uint8_t> bytes;  // row-major [rows, cols]
};

class StreamSampler {
 public:
  // Owns streams [first_stream, first_stream + local_streams) of `global_streams`.
  StreamSampler(const ByteCorpus& corpus, int64_t global_streams, int64_t block_size, int64_t first_stream,
                int64_t local_streams);
  StreamSampler(const ByteCorpus& corpus, int64_t global_streams, int64_t block_size)
      : StreamSampler(corpus, global_streams, block_size, 0, global_streams) {}

  // The next [local_streams, M + 1] bytes; advances every global position by M.
  ByteBatch next();
  // From now on next() reads only positions [offset, offset + length] of each block (a chunk's
  // inputs and their targets: length + 1 bytes), still advancing by M.
  void set_chunk(int64_t offset, int64_t length);

  const std::vector<uint64_t>& positions() const { return positions_; }
  void set_positions(const std::vector<uint64_t>& positions);
  // Every stream back to its start.
  void rewind();

  // Called for every stream read, with its global index, the position of its first byte and the
  // bytes read (instrumentation: tests check that a rank reads only its streams and chunks).
  void set_read_observer(std::function<void(int64_t stream, uint64_t position, int64_t bytes)> observer) {
    observer_ = std::move(observer);
  }

  int64_t first_stream() const { return first_stream_; }
  int64_t local_streams() const { return local_streams_; }

 private:
  const ByteCorpus* corpus_;
  int64_t global_streams_, block_size_, first_stream_, local_streams_;
  int64_t chunk_offset_ = 0, chunk_length_;  // the part of each block read: the whole block unless set_chunk
  std::vector<uint64_t> positions_;
  std::function<void(int64_t, uint64_t, int64_t)> observer_;
};

}  // namespace adaspan::data
