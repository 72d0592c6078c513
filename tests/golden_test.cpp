// Parity with the reference implementation: every *.h5 in the golden folder holds one forward and
// backward of facebookresearch/adaptive-span's own TransformerSeq (float64, dropout 0). adaspan's
// model, loaded with the same parameters, must give the same log-probs, loss, next caches and
// gradients. Folder: $ADASPAN_GOLDEN_DIR, else ../shared/reference/golden beside the checkout.
#include "checkpointing/hdf5_file.h"
#include "ci_policy.h"
#include "model/adaptive_span_lm.h"
#include "tests/finite_difference.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

namespace adaspan {
namespace {

namespace fs = std::filesystem;
using checkpointing::Hdf5File;

fs::path golden_dir() {
  const char* env = std::getenv("ADASPAN_GOLDEN_DIR");
  return env ? fs::path(env) : fs::path(ADASPAN_DEFAULT_GOLDEN_DIR);
}

std::vector<fs::path> golden_files() {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(golden_dir(), ec)) {
    if (entry.path().extension() == ".h5") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// adaspan parameter name -> the reference's state_dict name.
std::string reference_name(const std::string& name) {
  const std::string span = ".attn.span.current_val";
  const auto pos = name.find(span);
  if (pos != std::string::npos) return name.substr(0, pos) + ".attn.attn.adaptive_span._mask.current_val";
  return name;
}

model::ModelConfig config_of(const Hdf5File& f) {
  model::ModelConfig c;
  c.vocab = f.read_int_attribute("V");
  c.d_model = f.read_int_attribute("D");
  c.heads = f.read_int_attribute("H");
  c.layers = f.read_int_attribute("L");
  c.attn_span = f.read_int_attribute("S");
  c.ff_size = f.read_int_attribute("F");
  c.span_ramp = static_cast<double>(f.read_int_attribute("R"));
  c.span_loss_coeff = f.read_double_attribute("span_loss_coeff");
  c.dropout = 0;
  c.cache = model::CacheMode::hidden;
  c.trim_hidden_cache = f.read_int_attribute("adapt_span_cache") != 0;
  return c;
}

void check_file(const fs::path& path) {
  SCOPED_TRACE(path.string());
  const Hdf5File f(path.string(), Hdf5File::Mode::read);
  const model::ModelConfig config = config_of(f);
  model::AdaptiveSpanLM lm(config);
  lm.to(at::kDouble);
  lm.eval();  // dropout is 0 anyway
  {
    at::NoGradGuard no_grad;
    for (auto& p : lm.named_parameters()) {
      const at::Tensor value = f.read_tensor("params/" + reference_name(p.key()));
      ASSERT_EQ(value.numel(), p.value().numel()) << p.key();
      p.value().copy_(value.reshape(p.value().sizes()));
    }
  }
  model::ModelCache cache(static_cast<size_t>(config.layers));
  for (int64_t l = 0; l < config.layers; ++l) {
    cache[static_cast<size_t>(l)].hidden = f.read_tensor("inputs/h_cache/" + std::to_string(l));
  }
  const at::Tensor x = f.read_tensor("inputs/x"), target = f.read_tensor("inputs/target");

  model::LMOutput out = lm.forward(x, cache);
  const at::Tensor nll = at::nll_loss(out.log_probs.reshape({-1, config.vocab}), target.reshape({-1}));
  const at::Tensor loss = nll + out.span_loss;
  loss.backward();

  EXPECT_LT((out.log_probs - f.read_tensor("outputs/log_probs")).abs().max().item<double>(), 1e-6);
  EXPECT_NEAR(nll.item<double>(), f.read_tensor("outputs/nll").item<double>(), 1e-6);
  EXPECT_NEAR(out.span_loss.item<double>(), f.read_tensor("outputs/span_loss").item<double>(), 1e-12);
  EXPECT_NEAR(loss.item<double>(), f.read_tensor("outputs/loss").item<double>(), 1e-6);
  for (int64_t l = 0; l < config.layers; ++l) {
    const at::Tensor expected = f.read_tensor("outputs/h_cache_next/" + std::to_string(l));
    const at::Tensor& got = out.next_cache[static_cast<size_t>(l)].hidden;
    ASSERT_EQ(got.sizes(), expected.sizes()) << "next cache of layer " << l;
    EXPECT_LT((got - expected).abs().max().item<double>(), 1e-6) << "next cache of layer " << l;
  }
  for (const auto& p : lm.named_parameters()) {
    const at::Tensor expected = f.read_tensor("grads/" + reference_name(p.key()));
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_LT(testing::relative_error(p.value().grad().reshape(expected.sizes()), expected), 1e-6) << p.key();
  }
}

TEST(GoldenParity, golden_files_match_reference) {
  const std::vector<fs::path> files = golden_files();
  if (files.empty()) {
    ADASPAN_SKIP_OUTSIDE_CI("no golden *.h5 files in " << golden_dir() << " (set ADASPAN_GOLDEN_DIR)");
  }
  for (const auto& file : files) check_file(file);
}

}  // namespace
}  // namespace adaspan
