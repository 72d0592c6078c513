#include "trainer/file_evaluation.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace adaspan::trainer {

EvalSums evaluate_file(model::AdaptiveSpanLM& model, const data::ByteCorpus& corpus, const FileEvalOptions& o,
                       const at::Device& device, const std::function<void(int64_t, int64_t)>& on_block) {
  const uint64_t n = corpus.size();
  if (o.streams <= 0 || static_cast<uint64_t>(o.streams) * 2 > n) {
    throw std::invalid_argument("evaluation needs at least 2 bytes per stream: " + std::to_string(n) + " bytes, " +
                                std::to_string(o.streams) + " streams");
  }
  const auto stream_begin = [&](int64_t k) { return static_cast<uint64_t>(k) * n / static_cast<uint64_t>(o.streams); };
  int64_t longest = 0;  // bytes in this rank's longest stream
  for (int64_t k = o.first_stream; k < o.first_stream + o.local_streams; ++k) {
    longest = std::max<int64_t>(longest, static_cast<int64_t>(stream_begin(k + 1) - stream_begin(k)));
  }
  if (o.focus != nullptr && o.focus->size() != n) {
    throw std::invalid_argument("the focus mask has " + std::to_string(o.focus->size()) + " bytes, the data " +
                                std::to_string(n));
  }
  const int64_t M = o.block_size, rows = o.local_streams;
  const int64_t blocks = (longest - 1 + M - 1) / M;

  at::NoGradGuard no_grad;
  model.eval();
  model::ModelCache cache;
  EvalSums sums;
  // This rank's chunk of each block (all of it without context parallelism): only its bytes are read.
  const int64_t chunk = M / o.cp.size, first = o.cp.rank * chunk;
  std::vector<uint8_t> bytes(static_cast<size_t>(chunk + 1)), marks(static_cast<size_t>(chunk + 1));
  for (int64_t b = 0; b < blocks; ++b) {
    // x: [rows, m] inputs; y: [rows, m] next bytes, -1 past a stream's end (ignored).
    at::Tensor x = at::zeros({rows, chunk}, at::kLong), y = at::full({rows, chunk}, -1, at::kLong);
    at::Tensor in_focus = at::zeros({rows, chunk}, at::kBool);  // the target byte is marked
    int64_t* xs = x.data_ptr<int64_t>();
    int64_t* ys = y.data_ptr<int64_t>();
    bool* fs = in_focus.data_ptr<bool>();
    for (int64_t r = 0; r < rows; ++r) {
      const uint64_t begin = stream_begin(o.first_stream + r), end = stream_begin(o.first_stream + r + 1);
      const uint64_t from = begin + static_cast<uint64_t>(b * M + first);
      if (from + 1 >= end) continue;
      const int64_t count = std::min<int64_t>(chunk + 1, static_cast<int64_t>(end - from));
      corpus.read_wrapped(from, static_cast<uint64_t>(count), bytes.data());
      if (o.focus != nullptr) o.focus->read_wrapped(from, static_cast<uint64_t>(count), marks.data());
      for (int64_t i = 0; i < count; ++i) {
        if (i < chunk) xs[r * chunk + i] = bytes[static_cast<size_t>(i)];
        if (i > 0) ys[r * chunk + i - 1] = bytes[static_cast<size_t>(i)];
        if (i > 0 && o.focus != nullptr) fs[r * chunk + i - 1] = marks[static_cast<size_t>(i)] != 0;
      }
    }
    model::LMOutput out = model.forward(x.to(device), cache);
    // Summed in double: a file has millions of bytes.
    const at::Tensor targets = y.to(device).reshape({-1, 1});
    const at::Tensor valid = targets >= 0;
    const at::Tensor nll = -out.log_probs.reshape({-1, out.log_probs.size(-1)}).gather(1, targets.clamp_min(0));
    sums.nll_nats += nll.masked_select(valid).to(at::kDouble).sum().item<double>();
    sums.predicted += valid.sum().item<int64_t>();
    if (o.focus != nullptr) {
      const at::Tensor focused = valid & in_focus.to(device).reshape({-1, 1});
      sums.focus_nll_nats += nll.masked_select(focused).to(at::kDouble).sum().item<double>();
      sums.focus_predicted += focused.sum().item<int64_t>();
    }
    if (o.log_probs != nullptr) {
      const at::Tensor lp = (-nll).reshape({rows, chunk}).to(at::kCPU, at::kFloat).contiguous();
      const float* l = lp.data_ptr<float>();
      const int64_t* targets_of = y.data_ptr<int64_t>();
      for (int64_t r = 0; r < rows; ++r) {
        const uint64_t target = stream_begin(o.first_stream + r) + static_cast<uint64_t>(b * M + first) + 1;
        for (int64_t j = 0; j < chunk; ++j) {
          if (targets_of[r * chunk + j] >= 0) (*o.log_probs)[target + static_cast<uint64_t>(j)] = l[r * chunk + j];
        }
      }
    }
    cache = std::move(out.next_cache);
    if (on_block) on_block(b + 1, blocks);
  }
  return sums;
}

}  // namespace adaspan::trainer
