// Evaluation and generation against plain one-block forwards: carrying the cache across blocks
// (eval) or bytes (generate) must compute what one long block computes.
#include "data/byte_corpus.h"
#include "model/adaptive_span_lm.h"
#include "tests/ci_policy.h"
#include "tests/command_runner.h"
#include "tests/scratch_dir.h"
#include "tests/small_configs.h"
#include "trainer/file_evaluation.h"
#include "trainer/generation.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace adaspan {
namespace {

model::ModelConfig small_model(model::CacheMode cache) {
  model::ModelConfig c = testing::small_model_config();
  c.span_ramp = 16;
  c.span_init = 0.6;  // spans of ~38 bytes: blocks of 16 need the cache
  c.cache = cache;
  return c;
}

std::string sample_text(size_t n) {
  std::string text;
  for (size_t i = 0; text.size() < n; ++i) text += "word" + std::to_string(i * 7919 % 1000) + " ";
  return text.substr(0, n);
}

// The variants whose keys do not depend on how the text is cut into blocks. (Dynamic spans do: the
// kv cache keeps the widest window of the block just done, one byte's in generation; see README.)
std::vector<std::pair<std::string, model::ModelConfig>> block_independent_models() {
  std::vector<std::pair<std::string, model::ModelConfig>> models;
  for (const auto mode : {model::CacheMode::kv, model::CacheMode::hidden}) {
    models.emplace_back("adaptive, " + model::to_string(mode), small_model(mode));
  }
  model::ModelConfig sparse = small_model(model::CacheMode::kv);
  sparse.attention = model::AttentionKind::sparse_fixed;
  sparse.sparse_stride = 4;  // positions p = 3 mod 4 from the stream start, whatever the block
  models.emplace_back("sparse-fixed", sparse);
  model::ModelConfig asentmax = small_model(model::CacheMode::kv);
  asentmax.attention = model::AttentionKind::full;
  asentmax.normalizer = model::NormalizerKind::asentmax;
  models.emplace_back("full + asentmax", asentmax);
  return models;
}

TEST(FileEvaluation, BlocksWithCarriedCacheEqualOneLongBlock) {
  for (const auto& [name, config] : block_independent_models()) {
    at::manual_seed(5);
    model::AdaptiveSpanLM lm(config);
    const data::ByteCorpus corpus = data::ByteCorpus::from_bytes(sample_text(401), "text");
    // Blocks of 13: not a multiple of sparse-fixed's stride either.
    trainer::FileEvalOptions one_block{1, 400, 0, 1}, small_blocks{1, 13, 0, 1};
    const trainer::EvalSums a = trainer::evaluate_file(lm, corpus, one_block, at::kCPU);
    const trainer::EvalSums b = trainer::evaluate_file(lm, corpus, small_blocks, at::kCPU);
    EXPECT_EQ(a.predicted, 400);
    EXPECT_EQ(b.predicted, 400);
    EXPECT_NEAR(a.nll_nats, b.nll_nats, 1e-4 * a.nll_nats) << name;

    // Streams split over "ranks" add up to the single-rank sums.
    trainer::FileEvalOptions all{4, 16, 0, 4}, low{4, 16, 0, 2}, high{4, 16, 2, 2};
    const trainer::EvalSums whole = trainer::evaluate_file(lm, corpus, all, at::kCPU);
    const trainer::EvalSums x = trainer::evaluate_file(lm, corpus, low, at::kCPU);
    const trainer::EvalSums y = trainer::evaluate_file(lm, corpus, high, at::kCPU);
    EXPECT_EQ(whole.predicted, 401 - 4);
    EXPECT_EQ(x.predicted + y.predicted, whole.predicted);
    EXPECT_NEAR(x.nll_nats + y.nll_nats, whole.nll_nats, 1e-6 * whole.nll_nats);
  }
}

TEST(Generation, GreedyBytesAreTheArgmaxOfOneLongForward) {
  for (const auto& [name, config] : block_independent_models()) {
    at::manual_seed(9);
    model::AdaptiveSpanLM lm(config);
    const std::string prompt = "The cache must not change a thing. ";
    trainer::SamplingOptions greedy;
    greedy.bytes = 40;
    greedy.temperature = 0;
    const trainer::Generated out = trainer::generate(lm, prompt, greedy, at::kCPU);
    ASSERT_EQ(out.text.size(), 40u);
    EXPECT_GT(out.cache_bytes, 0);

    const std::string all = prompt + out.text.substr(0, out.text.size() - 1);
    at::Tensor x = at::empty({1, static_cast<int64_t>(all.size())}, at::kLong);
    for (size_t i = 0; i < all.size(); ++i) x[0][static_cast<int64_t>(i)] = static_cast<unsigned char>(all[i]);
    at::NoGradGuard no_grad;
    const at::Tensor predicted = lm.forward(x, {}).log_probs[0].argmax(-1);  // [L]
    for (size_t i = 0; i < out.text.size(); ++i) {
      EXPECT_EQ(predicted[static_cast<int64_t>(prompt.size() - 1 + i)].item<int64_t>(),
                static_cast<unsigned char>(out.text[i]))
          << name << ", byte " << i;
    }
  }
}

TEST(Generation, SamplingIsSeededAndTopKLimited) {
  at::manual_seed(2);
  model::AdaptiveSpanLM lm(small_model(model::CacheMode::kv));
  trainer::SamplingOptions o;
  o.bytes = 30;
  o.top_k = 1;  // top-1 sampling is greedy
  const std::string top1 = trainer::generate(lm, "ab", o, at::kCPU).text;
  o.temperature = 0;
  EXPECT_EQ(top1, trainer::generate(lm, "ab", o, at::kCPU).text);
  o.temperature = 1;
  o.top_k = 0;
  o.seed = 7;
  const std::string a = trainer::generate(lm, "ab", o, at::kCPU).text;
  EXPECT_EQ(a, trainer::generate(lm, "ab", o, at::kCPU).text);
  o.seed = 8;
  EXPECT_NE(a, trainer::generate(lm, "ab", o, at::kCPU).text);
}

// python/adaspan_torch.py (the model in plain PyTorch, for notebooks) computes what `adaspan eval
// --logprobs` writes, byte for byte to 1e-5, for each span mode and normalizer: tests/adaspan_torch_check.py
// runs both on a checkpoint of each (spans of 8 to 120 bytes of S = 128, so windows of 64 and 128 keys
// and trimmed caches; 3 streams of ~1000 bytes in blocks of 48, not the trained 32).
TEST(PythonModule, LogProbsEqualEvalForEachSpanModeAndNormalizer) {
  if (std::system("timeout 60 python3 -c 'import torch, h5py, numpy' > /dev/null 2>&1") != 0) {
    ADASPAN_SKIP_OUTSIDE_CI("python3 lacks torch, h5py or numpy (scripts/setup.sh installs them)");
  }
  namespace fs = std::filesystem;
  const fs::path dir = testing::fresh_dir("inference", "python_module");
  const fs::path text = dir / "text.txt";
  std::ofstream(text, std::ios::binary) << sample_text(3001);
  const fs::path check = fs::path(__FILE__).parent_path() / "adaspan_torch_check.py";
  const std::vector<std::pair<std::string, std::string>> variants = {
      {"static", ""},
      {"dynamic", "--span-mode dynamic"},
      {"entmax15", "--normalizer entmax15 --cache hidden"},
      {"asentmax", "--normalizer asentmax"},
      {"dynamic_asentmax", "--span-mode dynamic --normalizer asentmax --asentmax-scale hidden"},
  };
  for (const auto& [name, flags] : variants) {
    const fs::path run = dir / name;
    const auto train = testing::run_adaspan(
        "train --steps 20 --layers 2 --d-model 32 --heads 4 --ff-size 64 --attn-span 128 --span-init-heads "
        "8,40,70,120 --block-size 32 --batch-size 4 --warmup-steps 0 --log-every 10 --eval-every 0 --threads 1 "
        "--run-dir " +
        run.string() + " " + flags);
    ASSERT_EQ(train.exit_code, 0) << name << ": " << train.err;
    const fs::path log = dir / (name + ".log");
    const std::string command = "timeout 120 python3 " + check.string() + " " + (run / "ckpt-20.h5").string() + " " +
                                text.string() + " 3 48 " + ADASPAN_BINARY + " > " + log.string() + " 2>&1";
    EXPECT_EQ(std::system(command.c_str()), 0) << name << ": " << testing::slurp(log);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace adaspan
