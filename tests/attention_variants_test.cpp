// The attention variants in training: each one learns, checkpoints and resumes bit-exactly, and is
// usable by eval and generate; dynamic spans are reported and drive the cache; bad combinations are
// one-line errors; ASEntmax's scale in the layer; eval's focus mask and longer contexts.
#include "kernels/attention_masks.h"
#include "kernels/banded_attention.h"
#include "kernels/span_attention.h"
#include "model/span_attention_layer.h"
#include "tests/command_runner.h"
#include "tests/finite_difference.h"
#include "tests/scratch_dir.h"
#include "tests/small_configs.h"
#include "trainer/config_json.h"
#include "trainer/trainer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace adaspan {
namespace {

namespace fs = std::filesystem;
using model::AttentionKind;
using model::NormalizerKind;
using model::SpanMode;

fs::path fresh_dir(const std::string& name) { return testing::fresh_dir("variants", name); }

std::vector<nlohmann::json> training_records(const fs::path& dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const auto r = nlohmann::json::parse(line);
    if (r.contains("bpc") && !r.contains("split")) out.push_back(r);
  }
  return out;
}

struct Variant {
  std::string name;
  AttentionKind attention = AttentionKind::adaptive;
  SpanMode span_mode = SpanMode::static_span;
  NormalizerKind normalizer = NormalizerKind::softmax;
  model::AsentmaxScale scale = model::AsentmaxScale::head;
};

trainer::TrainConfig variant_run(const Variant& v, const fs::path& dir, int64_t steps) {
  trainer::TrainConfig c = testing::small_train_config(dir, steps);
  c.model.attention = v.attention;
  c.model.span_mode = v.span_mode;
  c.model.normalizer = v.normalizer;
  c.model.asentmax_scale = v.scale;
  c.model.sparse_stride = 16;
  c.model.span_init = 0.3;
  return c;
}

const std::vector<Variant> kVariants = {
    {"fixed", AttentionKind::fixed},
    {"sparse_fixed", AttentionKind::sparse_fixed},
    {"dynamic", AttentionKind::adaptive, SpanMode::dynamic},
    {"entmax15", AttentionKind::adaptive, SpanMode::static_span, NormalizerKind::entmax15},
    {"asentmax_head", AttentionKind::adaptive, SpanMode::static_span, NormalizerKind::asentmax},
    {"asentmax_hidden_dynamic", AttentionKind::adaptive, SpanMode::dynamic, NormalizerKind::asentmax,
     model::AsentmaxScale::hidden},
};

TEST(AttentionVariants, EachLearnsAndResumesBitExactly) {
  for (const Variant& v : kVariants) {
    const fs::path straight_dir = fresh_dir(v.name + "_straight"), resumed_dir = fresh_dir(v.name + "_resumed");
    trainer::TrainConfig c = variant_run(v, straight_dir, 20);
    const trainer::TrainResult straight = trainer::train(c, true);
    const auto records = training_records(straight_dir);
    ASSERT_EQ(records.size(), 4u) << v.name;
    EXPECT_LT(records.back()["bpc"].get<double>(), records.front()["bpc"].get<double>() - 0.3) << v.name;

    c.run.run_dir = resumed_dir.string();
    c.run.steps = 10;
    c.run.checkpoint_every = 10;
    trainer::train(c, true);
    c.run.steps = 20;
    c.run.resume = "auto";
    const trainer::TrainResult resumed = trainer::train(c, true);
    EXPECT_EQ(resumed.param_norm, straight.param_norm) << v.name;
    const auto again = training_records(resumed_dir);
    ASSERT_EQ(again.size(), 4u) << v.name;
    for (size_t i = 0; i < 4; ++i) EXPECT_EQ(again[i]["bpc"], records[i]["bpc"]) << v.name << " record " << i;

    // The checkpoint carries the variant: eval and generate rebuild the same model from it.
    const std::string ckpt = (resumed_dir / "ckpt-10.h5").string();
    const fs::path text = resumed_dir / "text.txt";
    std::ofstream(text) << std::string(300, 'a') << "the quick brown fox jumps over the lazy dog";
    const auto eval = testing::run_adaspan("eval --batch-size 2 --checkpoint " + ckpt + " --data " + text.string());
    EXPECT_EQ(eval.exit_code, 0) << v.name << ": " << eval.err;
    const auto generated = testing::run_adaspan("generate --checkpoint " + ckpt + " --prompt 'the' --bytes 20");
    EXPECT_EQ(generated.exit_code, 0) << v.name << ": " << generated.err;
    fs::remove_all(straight_dir);
    fs::remove_all(resumed_dir);
  }
}

// Attention over the last S positions before each query, written out densely in double (no kernel,
// no mask): h_all = [cache; h]; query i, at position P = Lc + i of h_all, sees positions P - S .. P - 1
// (those before 0: zero keys and values, which still score q·key_pe); the c-th of them scores
// (q·k + q·key_pe[:, c]) / sqrt(d_head); softmax; then W_o. w: the layer's projections (x W^T).
at::Tensor dense_last_s_attention(const std::map<std::string, at::Tensor>& w, const at::Tensor& h,
                                  const at::Tensor& cache, const at::Tensor& key_pe, int64_t heads) {
  const int64_t batch = h.size(0), block = h.size(1), d = h.size(2), dh = d / heads, S = key_pe.size(1);
  const at::Tensor hd = h.to(at::kDouble);
  const at::Tensor h_all = cache.defined() ? at::cat({cache.to(at::kDouble), hd}, 1) : hd;
  const int64_t cache_len = h_all.size(1) - block;
  const auto project = [&](const at::Tensor& x, const std::string& name) {
    return at::matmul(x, w.at(name).to(at::kDouble).t()).view({batch, x.size(1), heads, dh});
  };
  const at::Tensor zeros = at::zeros({batch, S, heads, dh}, at::kDouble);
  const at::Tensor q = project(hd, "proj_query.weight");                        // [B, M, H, dh]
  const at::Tensor k = at::cat({zeros, project(h_all, "proj_key.weight")}, 1);  // row S + p: position p
  const at::Tensor v = at::cat({zeros, project(h_all, "proj_val.weight")}, 1);
  const at::Tensor pe = key_pe.to(at::kDouble);  // [dh, S]
  std::vector<at::Tensor> rows;
  for (int64_t i = 0; i < block; ++i) {
    const int64_t P = cache_len + i;
    const at::Tensor keys = k.narrow(1, P, S), values = v.narrow(1, P, S);  // positions P - S .. P - 1
    const at::Tensor qi = q.select(1, i);                                   // [B, H, dh]
    const at::Tensor scores = (at::einsum("bhd,bshd->bhs", {qi, keys}) + at::einsum("bhd,ds->bhs", {qi, pe})) /
                              std::sqrt(static_cast<double>(dh));
    rows.push_back(at::einsum("bhs,bshd->bhd", {at::softmax(scores, -1), values}).reshape({batch, d}));
  }
  return at::matmul(at::stack(rows, 1), w.at("proj_out.weight").to(at::kDouble).t());
}

// --attention fixed and full are one policy (model/span_policy.cpp: FixedWindow, the banded kernel
// with an all-ones mask). Both are checked against attention over the last S keys written out above,
// and against another code path that must agree in value: the adaptive policy at z = S (the span
// kernel; m_z(x) = 1 for every x < S). Without a cache (zero keys before the stream) and with a cache
// 16 rows longer than S (those rows must not be seen), in both cache modes.
TEST(AttentionVariants, FixedAndFullAreTheSameComputation) {
  at::manual_seed(7);
  const model::ModelConfig base = testing::small_model_config();  // d 32, 2 heads, S 64
  const int64_t batch = 2, block = 16, d = base.d_model, heads = base.heads, dh = base.head_dim(), S = base.attn_span;
  std::map<std::string, at::Tensor> w;
  for (const char* name : {"proj_query.weight", "proj_key.weight", "proj_val.weight", "proj_out.weight"}) {
    w[name] = at::randn({d, d}) / std::sqrt(static_cast<double>(d));
  }
  const at::Tensor h = at::randn({batch, block, d}), key_pe = at::randn({dh, S});
  const at::Tensor long_cache = at::randn({batch, S + 16, d});
  auto no_grad = std::make_unique<at::NoGradGuard>();  // the layer checks; training below needs grads
  const auto layer_of = [&](AttentionKind kind, model::CacheMode mode) {
    model::ModelConfig c = base;
    c.attention = kind;
    c.cache = mode;
    auto layer = std::make_shared<model::SpanAttentionLayer>(c);
    layer->eval();
    for (auto& item : layer->named_parameters()) {
      if (item.key() == "span.current_val") {
        item.value().fill_(1.0);  // z = S
      } else {
        item.value().copy_(w.at(item.key()));
      }
    }
    return layer;
  };
  const auto cache_of = [&](model::CacheMode mode, bool with_cache) {
    model::LayerCache cache;
    if (!with_cache) return cache;
    if (mode == model::CacheMode::hidden) {
      cache.hidden = long_cache;
      return cache;
    }
    const auto split = [&](const char* name) {
      return at::linear(long_cache, w.at(name)).view({batch, long_cache.size(1), heads, dh});
    };
    const at::Tensor k = split("proj_key.weight"), v = split("proj_val.weight");
    for (int64_t head = 0; head < heads; ++head) {
      cache.keys.push_back(k.select(2, head).contiguous());
      cache.values.push_back(v.select(2, head).contiguous());
    }
    return cache;
  };
  for (const model::CacheMode mode : {model::CacheMode::kv, model::CacheMode::hidden}) {
    const auto adaptive = layer_of(AttentionKind::adaptive, mode);
    for (const bool with_cache : {false, true}) {
      const std::string where = model::to_string(mode) + (with_cache ? ", cache of S + 16 rows" : ", no cache");
      const model::LayerCache cache = cache_of(mode, with_cache);
      const at::Tensor expected = dense_last_s_attention(w, h, with_cache ? long_cache : at::Tensor(), key_pe, heads);
      const at::Tensor adaptive_out = adaptive->forward(h, cache, key_pe).out;
      EXPECT_LT(testing::relative_error(adaptive_out, expected), 1e-5) << "adaptive at z = S, " << where;
      for (const AttentionKind kind : {AttentionKind::fixed, AttentionKind::full}) {
        const std::string name = kind == AttentionKind::fixed ? "fixed, " : "full, ";
        const at::Tensor out = layer_of(kind, mode)->forward(h, cache, key_pe).out;
        EXPECT_LT(testing::relative_error(out, expected), 1e-5) << name << where;
        EXPECT_LT(testing::relative_error(out, adaptive_out), 1e-5) << name << "against adaptive, " << where;
      }
    }
  }

  no_grad.reset();
  // In training the two flags select that same policy: the same weights after the same steps, and
  // the spans reported are the window, S.
  const fs::path a_dir = fresh_dir("fixed"), b_dir = fresh_dir("full");
  const auto a = trainer::train(variant_run({"fixed", AttentionKind::fixed}, a_dir, 6), true);
  const auto b = trainer::train(variant_run({"full", AttentionKind::full}, b_dir, 6), true);
  EXPECT_EQ(a.param_norm, b.param_norm);
  EXPECT_EQ(a.spans, std::vector<std::vector<double>>(2, std::vector<double>(2, 64.0)));  // the window, S
  EXPECT_EQ(b.spans, a.spans);
  fs::remove_all(a_dir);
  fs::remove_all(b_dir);
}

// Per-token spans are reported per head (mean <= p99 <= S) and the KV cache follows them.
TEST(AttentionVariants, DynamicSpansAreReportedAndSizeTheCache) {
  std::map<double, double> cache_mb;
  for (double init : {0.1, 0.9}) {
    const fs::path dir = fresh_dir("dynamic_" + std::to_string(init));
    trainer::TrainConfig c = variant_run({"dynamic", AttentionKind::adaptive, SpanMode::dynamic}, dir, 10);
    c.model.attn_span = 256;  // 10 blocks of 32: more than S seen, so the cache is sized by the spans
    c.model.span_init = init;
    c.model.span_loss_coeff = 0;
    c.optim.lr = 0.005;  // spans stay near their start
    c.run.log_every = 10;
    trainer::train(c, true);
    const auto records = training_records(dir);
    ASSERT_EQ(records.size(), 1u);
    const auto mean = records[0]["span_mean"].get<std::vector<std::vector<double>>>();
    const auto p99 = records[0]["span_p99"].get<std::vector<std::vector<double>>>();
    ASSERT_EQ(mean.size(), 2u);
    for (size_t l = 0; l < 2; ++l) {
      ASSERT_EQ(mean[l].size(), 2u);
      for (size_t h = 0; h < 2; ++h) {
        EXPECT_NEAR(mean[l][h], 256 * init, 256 * 0.05) << "layer " << l << " head " << h;
        EXPECT_GE(p99[l][h], mean[l][h] - 1e-9);
        EXPECT_LE(p99[l][h], 256.0);
      }
    }
    EXPECT_EQ(records[0]["spans"], records[0]["span_mean"]);
    cache_mb[init] = records[0]["kv_cache_mb"][0].get<double>();
    fs::remove_all(dir);
  }
  // Windows: z ≈ 26 -> 64 keys + 64 slack kept; z ≈ 230 -> all 256.
  EXPECT_LT(cache_mb[0.1], 0.6 * cache_mb[0.9]);
  EXPECT_NEAR(cache_mb[0.9], 256.0 * 16 * 4 * 2 * 4 * 2 * 2 / 1e6, 1e-9);  // rows·d_head·4 B·(K,V)·B·heads·layers
}

TEST(AttentionVariants, BadCombinationsAreOneLineErrors) {
  const fs::path dir = fresh_dir("bad");
  const auto error_of = [&](const trainer::TrainConfig& c) {
    try {
      trainer::validate(c);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  trainer::TrainConfig c = variant_run({"x", AttentionKind::fixed, SpanMode::dynamic}, dir, 2);
  EXPECT_NE(error_of(c).find("--span-mode dynamic needs --attention adaptive"), std::string::npos) << error_of(c);
  c = variant_run({"x", AttentionKind::sparse_fixed}, dir, 2);
  c.model.sparse_stride = 24;
  EXPECT_NE(error_of(c).find("not a multiple of --sparse-stride 24"), std::string::npos) << error_of(c);
  c = variant_run({"x", AttentionKind::adaptive, SpanMode::static_span, NormalizerKind::entmax15}, dir, 2);
  c.run.tp = 2;  // variants run with tensor parallelism too (tensor_parallel_test.cpp)
  EXPECT_EQ(error_of(c), "");

  const auto bogus = testing::run_adaspan("train --steps 1 --attention bogus --run-dir " + (dir / "r").string());
  EXPECT_NE(bogus.exit_code, 0);
  EXPECT_NE(bogus.err.find("unknown attention 'bogus' (expected one of adaptive, fixed, full, sparse-fixed)"),
            std::string::npos)
      << bogus.err;

  // A checkpoint of one normalizer does not resume under another.
  trainer::TrainConfig e =
      variant_run({"e", AttentionKind::adaptive, SpanMode::static_span, NormalizerKind::entmax15}, dir / "resume", 2);
  e.run.checkpoint_every = 2;
  trainer::train(e, true);
  e.model.normalizer = NormalizerKind::softmax;
  e.run.steps = 4;
  e.run.resume = "auto";
  try {
    trainer::train(e, true);
    ADD_FAILURE() << "an entmax15 checkpoint resumed under softmax";
  } catch (const std::exception& error) {
    EXPECT_NE(std::string(error.what()).find("--normalizer"), std::string::npos) << error.what();
  }
  // A variant's own option counts only where the variant is on.
  trainer::TrainConfig softmax = variant_run({"s", AttentionKind::adaptive}, dir, 2);
  const nlohmann::json stored = trainer::to_json(softmax);
  softmax.model.asentmax_scale = model::AsentmaxScale::hidden;
  softmax.model.sparse_stride = 8;
  EXPECT_EQ(trainer::resume_incompatibility(softmax, stored), "");
  trainer::TrainConfig sparse = variant_run({"p", AttentionKind::sparse_fixed}, dir, 2);
  const nlohmann::json stored_sparse = trainer::to_json(sparse);
  sparse.model.sparse_stride *= 2;
  EXPECT_NE(trainer::resume_incompatibility(sparse, stored_sparse).find("--sparse-stride"), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace adaspan

namespace adaspan {
namespace {

// eval --focus reports the planted bytes of bench/planted_text.py apart; --attn-span evaluates a
// longer context, which changes nothing for spans that do not reach the old S.
// The associative-recall text: each planted byte follows a key byte whose previous occurrence is
// exactly d earlier, followed there by the same byte, and that key occurs nowhere else in the 3·d
// bytes before it: the answer is found by content, and only within a span of d.
TEST(LongRange, RecallTextPlantsUnambiguousKeysAtDistanceD) {
  const fs::path dir = fresh_dir("long_range_recall");
  const fs::path source = fs::path(__FILE__).parent_path().parent_path();
  constexpr int64_t d = 64;
  const std::string make = "timeout 120 python3 " + (source / "bench" / "planted_text.py").string() + " " +
                           (dir / "r").string() + " --task recall --distance 64 --bytes 20000";
  ASSERT_EQ(std::system(make.c_str()), 0);
  const std::string text = testing::slurp(dir / "r.txt"), mask = testing::slurp(dir / "r.mask");
  ASSERT_EQ(text.size(), 20000u);
  int64_t planted = 0;
  for (int64_t p = 0; p < static_cast<int64_t>(text.size()); ++p) {
    if (mask[p] == 0) continue;
    ++planted;
    const char key = text[p - 1];
    ASSERT_GE(static_cast<unsigned char>(key), 0x80) << p;
    ASSERT_EQ(text[p - d - 1], key) << p;
    ASSERT_EQ(text[p - d], text[p]) << p;
    for (int64_t q = std::max<int64_t>(0, p - 1 - 3 * d); q < p - 1; ++q) {
      if (q != p - d - 1) ASSERT_NE(text[q], key) << "key of " << p << " also at " << q;
    }
  }
  EXPECT_EQ(planted, (20000 - d - 12) / 12 + 1);
}

TEST(LongRange, EvalReportsPlantedBytesApartAndEvaluatesLongerContexts) {
  const fs::path dir = fresh_dir("long_range");
  const fs::path source = fs::path(__FILE__).parent_path().parent_path();
  const std::string make = "timeout 120 python3 " + (source / "bench" / "planted_text.py").string() + " " +
                           (dir / "p").string() + " --distance 64 --bytes 20000";
  ASSERT_EQ(std::system(make.c_str()), 0);
  trainer::TrainConfig c = testing::small_train_config(dir / "run", 10);
  c.data.train_files = {(dir / "p.txt").string()};
  c.model.span_init = 0.2;  // z + R = 44.8 < S = 64
  c.run.checkpoint_every = 10;
  trainer::train(c, true);
  const std::string base = "eval --json --batch-size 4 --checkpoint " + (dir / "run" / "ckpt-10.h5").string() +
                           " --data " + (dir / "p.txt").string();
  const auto plain = testing::run_adaspan(base + " --focus " + (dir / "p.mask").string());
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  const auto r = nlohmann::json::parse(plain.out);

  // Planted bytes predicted: every marked byte but one at a stream's first byte.
  const std::string mask = testing::slurp(dir / "p.mask");
  int64_t planted = 0;
  for (size_t i = 0; i < mask.size(); ++i) {
    const bool stream_start = i % (mask.size() / 4) == 0;
    if (mask[i] != 0 && !stream_start) ++planted;
  }
  EXPECT_EQ(r["focus_bytes"].get<int64_t>(), planted);
  const double total = r["predicted_bytes"].get<double>(), focus = r["focus_bytes"].get<double>();
  EXPECT_NEAR(r["bpb"].get<double>(),
              (focus * r["bpb_focus"].get<double>() + (total - focus) * r["bpb_rest"].get<double>()) / total, 1e-9);
  EXPECT_EQ(r["attn_span"], 64);

  const auto longer = testing::run_adaspan(base + " --attn-span 256 --block-size 128");
  ASSERT_EQ(longer.exit_code, 0) << longer.err;
  const auto l = nlohmann::json::parse(longer.out);
  EXPECT_EQ(l["attn_span"], 256);
  const auto same_block = testing::run_adaspan(base + " --block-size 128");
  ASSERT_EQ(same_block.exit_code, 0) << same_block.err;
  EXPECT_NEAR(l["bpb"].get<double>(), nlohmann::json::parse(same_block.out)["bpb"].get<double>(), 1e-6);

  const auto shorter = testing::run_adaspan(base + " --attn-span 32");
  EXPECT_NE(shorter.exit_code, 0);
  EXPECT_NE(shorter.err.find("below the checkpoint's 64"), std::string::npos) << shorter.err;
  const auto bad_mask = testing::run_adaspan(base + " --focus " + (dir / "run" / "metrics.jsonl").string());
  EXPECT_NE(bad_mask.exit_code, 0);
  EXPECT_NE(bad_mask.err.find("--focus"), std::string::npos) << bad_mask.err;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace adaspan

namespace adaspan {
namespace {

// The layer's ASEntmax scale is 1 + beta_h·(log n)^gamma_h with n = keys seen + 2: the layer's
// output against projections, masks and scales written out here and the loop reference.
TEST(AsentmaxScale, LayerScalesScoresByOnePlusBetaLogNToTheGamma) {
  at::manual_seed(4);
  model::ModelConfig c = testing::small_model_config();  // d 32, 2 heads, S 64
  c.span_init = 0.4;
  c.normalizer = NormalizerKind::asentmax;
  model::SpanAttentionLayer layer(c);
  layer.eval();
  const int64_t batch = 2, block = 16, heads = c.heads, dh = c.head_dim(), S = c.attn_span;
  const at::Tensor h = at::randn({batch, block, c.d_model});
  const at::Tensor key_pe = at::randn({dh, S});
  at::NoGradGuard no_grad;
  const at::Tensor out = layer.forward(h, model::LayerCache{}, key_pe).out;

  std::map<std::string, at::Tensor> p;
  for (const auto& item : layer.named_parameters()) p[item.key()] = item.value().to(at::kDouble);
  const at::Tensor hd = h.to(at::kDouble);
  const auto split = [&](const at::Tensor& w) { return at::matmul(hd, w.t()).view({batch, block, heads, dh}); };
  const at::Tensor q = split(p["proj_query.weight"]), k = split(p["proj_key.weight"]), v = split(p["proj_val.weight"]);
  std::vector<at::Tensor> per_head;
  for (int64_t head = 0; head < heads; ++head) {
    const double z = S * p["span.current_val"][head].item<double>();
    kernels::BandedAttentionOptions o;
    o.max_span = S;
    o.window = kernels::effective_window(z, c.span_ramp, S, 64);
    o.normalizer = kernels::Normalizer::entmax15;
    at::Tensor scale = at::empty({batch, block}, at::kDouble);
    const double beta = p["asentmax.beta"][head].item<double>(), gamma = p["asentmax.gamma"][head].item<double>();
    for (int64_t i = 0; i < block; ++i) {
      const double n = static_cast<double>(std::min(o.window, i)) + 2;  // no cache: query i sees i keys
      scale.select(1, i).fill_(1 + beta * std::pow(std::log(n), gamma));
    }
    const at::Tensor mask = kernels::static_span_window(at::full({}, z, at::kDouble), c.span_ramp, o.window);
    per_head.push_back(kernels::banded_attention_reference(q.select(2, head), k.select(2, head), v.select(2, head),
                                                           key_pe.to(at::kDouble), mask, scale, o));
  }
  const at::Tensor expected =
      at::matmul(at::stack(per_head, 2).reshape({batch, block, heads * dh}), p["proj_out.weight"].t());
  EXPECT_LT(testing::relative_error(out, expected), 1e-5);
}

}  // namespace
}  // namespace adaspan
