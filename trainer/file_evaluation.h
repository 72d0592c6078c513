#pragma once
// Bits per byte of a whole file, as the reference evaluates: the file is cut into B contiguous
// streams (stream k = bytes [k*N/B, (k+1)*N/B)), each read in blocks of M with the cache carried
// across blocks, so every byte but a stream's first is predicted from everything before it in its
// stream (as far as the learned spans reach). The B streams are split over ranks; the sums add up.
#include "data/byte_corpus.h"
#include "model/adaptive_span_lm.h"
#include "model/context_parallel.h"

#include <c10/core/Device.h>

#include <functional>
#include <vector>

namespace adaspan::trainer {

struct EvalSums {
  double nll_nats = 0;        // summed over predicted bytes
  int64_t predicted = 0;      // bytes predicted
  double focus_nll_nats = 0;  // the same over the bytes the focus mask marks
  int64_t focus_predicted = 0;
};

struct FileEvalOptions {
  int64_t streams = 16;                          // B, all ranks
  int64_t block_size = 128;                      // M
  int64_t first_stream = 0, local_streams = 16;  // this rank's streams
  // Optional: one byte per corpus byte, nonzero where a predicted byte also counts in the focus sums
  // (e.g. the planted bytes of a long-range task). Same size as the corpus.
  const data::ByteCorpus* focus = nullptr;
  // Optional, [N]: filled with the natural log-probability of every byte this rank predicts (the
  // other entries are left as they are).
  std::vector<float>* log_probs = nullptr;
  // Context parallelism: this rank computes chunk cp.rank of every block (the model's
  // set_context_parallel is the caller's); the sums are then this chunk's.
  model::ContextParallel cp;
};

// `on_block(done, total)` after each block (progress).
EvalSums evaluate_file(model::AdaptiveSpanLM& model, const data::ByteCorpus& corpus, const FileEvalOptions& options,
                       const at::Device& device, const std::function<void(int64_t, int64_t)>& on_block = {});

}  // namespace adaspan::trainer
