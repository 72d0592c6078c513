#include "data/stream_sampler.h"

#include <stdexcept>
#include <string>

namespace adaspan::data {

StreamSampler::StreamSampler(const ByteCorpus& corpus, int64_t global_streams, int64_t block_size, int64_t first_stream,
                             int64_t local_streams)
    : corpus_(&corpus),
      global_streams_(global_streams),
      block_size_(block_size),
      first_stream_(first_stream),
      local_streams_(local_streams),
      chunk_length_(block_size) {
  if (global_streams < 1 || block_size < 1) {
    throw std::invalid_argument("stream sampler needs at least one stream and a positive block size");
  }
  if (first_stream < 0 || local_streams < 0 || first_stream + local_streams > global_streams) {
    throw std::invalid_argument("streams [" + std::to_string(first_stream) + ", " +
                                std::to_string(first_stream + local_streams) + ") are not within the " +
                                std::to_string(global_streams) + " global streams");
  }
  if (static_cast<uint64_t>(global_streams) > corpus.size()) {
    throw std::invalid_argument("corpus '" + corpus.name() + "' has " + std::to_string(corpus.size()) +
                                " bytes, fewer than the " + std::to_string(global_streams) + " streams");
  }
  rewind();
}

void StreamSampler::rewind() {
  positions_.resize(static_cast<size_t>(global_streams_));
  const unsigned __int128 n = corpus_->size();
  for (int64_t k = 0; k < global_streams_; ++k) {
    positions_[static_cast<size_t>(k)] = static_cast<uint64_t>(n * static_cast<uint64_t>(k) / global_streams_);
  }
}

void StreamSampler::set_positions(const std::vector<uint64_t>& positions) {
  if (positions.size() != positions_.size()) {
    throw std::invalid_argument("expected " + std::to_string(positions_.size()) + " stream positions, got " +
                                std::to_string(positions.size()));
  }
  for (uint64_t p : positions) {
    if (p >= corpus_->size()) throw std::invalid_argument("stream position beyond the corpus");
  }
  positions_ = positions;
}

void StreamSampler::set_chunk(int64_t offset, int64_t length) {
  if (offset < 0 || length < 1 || offset + length > block_size_) {
    throw std::invalid_argument("chunk [" + std::to_string(offset) + ", " + std::to_string(offset + length) +
                                ") is not inside a block of " + std::to_string(block_size_));
  }
  chunk_offset_ = offset;
  chunk_length_ = length;
}

ByteBatch StreamSampler::next() {
  ByteBatch batch;
  batch.rows = local_streams_;
  batch.cols = chunk_length_ + 1;
  batch.bytes.resize(static_cast<size_t>(batch.rows * batch.cols));
  for (int64_t r = 0; r < local_streams_; ++r) {
    const uint64_t from =
        (positions_[static_cast<size_t>(first_stream_ + r)] + static_cast<uint64_t>(chunk_offset_)) % corpus_->size();
    if (observer_) observer_(first_stream_ + r, from, batch.cols);
    corpus_->read_wrapped(from, static_cast<uint64_t>(batch.cols), batch.bytes.data() + r * batch.cols);
  }
  for (uint64_t& p : positions_) p = (p + static_cast<uint64_t>(block_size_)) % corpus_->size();
  return batch;
}

}  // namespace adaspan::data
