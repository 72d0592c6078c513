// The same model and kernel on a GPU: held to the CPU results. Skipped where LibTorch has no CUDA
// or no GPU is visible (CI).
#include "cluster/nccl_process_group.h"
#include "cluster/world.h"
#include "kernels/span_attention.h"
#include "kernels/span_attention_reference.h"
#include "kernels/span_rows/span_attention_rows.h"
#include "model/adaptive_span_lm.h"
#include "model/mixed_precision.h"
#include "trainer/optimizer.h"
#include "trainer/train_step.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace adaspan {
namespace {

double testing_relative(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(b.abs().max().item<double>(), 1e-12);
}

#define SKIP_WITHOUT_CUDA() \
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device (LibTorch without CUDA, or no GPU visible)"

TEST(Cuda, SpanAttentionMatchesDenseReference) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(1);
  const auto cpu = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor q = at::randn({2, 70, 16}, cpu), k = at::randn({2, 170, 16}, cpu), v = at::randn({2, 170, 16}, cpu),
                   pe = at::randn({16, 128}, cpu), z = at::full({}, 40.5, cpu);
  kernels::SpanAttentionOptions o;
  o.max_span = 128;
  o.ramp = 16;
  o.window = kernels::effective_window(40.5, 16, 128);
  const at::Device gpu(at::kCUDA);
  const at::Tensor fast = kernels::span_attention(q.to(gpu), k.to(gpu), v.to(gpu), pe.to(gpu), z.to(gpu), o).cpu();
  const at::Tensor dense = kernels::span_attention_reference(q, k, v, pe, z, 128, 16);
  EXPECT_LT((fast - dense).abs().max().item<double>(), 1e-10);
}

// The CUDA row kernels: the same programs as the host loop, so in float64 they agree to rounding;
// in float32 FlashAttention's criterion (error <= 2x that of the plain reference run in float32).
struct RowKernelRun {
  at::Tensor out, dq, dk, dv, dpe, dz;
};

RowKernelRun run_rows(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& pe,
                      const at::Tensor& z, const at::Tensor& w, const kernels::SpanAttentionOptions& o) {
  std::vector<at::Tensor> in{q.clone().requires_grad_(true), k.clone().requires_grad_(true),
                             v.clone().requires_grad_(true), pe.clone().requires_grad_(true),
                             z.clone().requires_grad_(true)};
  const at::Tensor out = kernels::span_attention_rows(in[0], in[1], in[2], in[3], in[4], o);
  (out * w).sum().backward();
  return {out.detach().cpu().to(at::kDouble), in[0].grad().cpu().to(at::kDouble), in[1].grad().cpu().to(at::kDouble),
          in[2].grad().cpu().to(at::kDouble), in[3].grad().cpu().to(at::kDouble), in[4].grad().cpu().to(at::kDouble)};
}

struct RowKernelInputs {
  at::Tensor q, k, v, pe, z;
};

struct RowKernelCase {
  int64_t batch, block, cache, dim, span;
  double ramp, z;

  // float64 on the CPU, from `seed`.
  RowKernelInputs inputs(uint64_t seed) const {
    at::manual_seed(seed);
    const auto cpu = at::TensorOptions().dtype(at::kDouble);
    return {at::randn({batch, block, dim}, cpu), at::randn({batch, cache + block, dim}, cpu),
            at::randn({batch, cache + block, dim}, cpu), at::randn({dim, span}, cpu), at::full({}, z, cpu)};
  }

  kernels::SpanAttentionOptions options() const {
    kernels::SpanAttentionOptions o;
    o.max_span = span;
    o.ramp = ramp;
    o.window = kernels::effective_window(z, ramp, span);
    return o;
  }
};

#define SKIP_WITHOUT_ROW_KERNELS() \
  SKIP_WITHOUT_CUDA();             \
  if (!kernels::span_rows_cuda_built()) GTEST_SKIP() << "built without the CUDA kernels"

const RowKernelCase kRowKernelCases[] = {
    {2, 70, 100, 64, 128, 8.0, 40.7},       // M not a multiple of the thread block
    {1, 20, 0, 64, 32, 4.0, 9.5},           // no cache
    {2, 16, 5, 96, 96, 32.0, 0.0},          // z = 0, cache shorter than the window
    {1, 300, 700, 64, 1024, 32.0, 1024.0},  // z = S
    {2, 9, 40, 16, 64, 4.0, 12.0},          // integer z
};

TEST(Cuda, RowKernelsMatchHostRowsFloat64) {
  SKIP_WITHOUT_ROW_KERNELS();
  const at::Device gpu(at::kCUDA);
  for (const RowKernelCase& c : kRowKernelCases) {
    const auto [q, k, v, pe, z] = c.inputs(3);
    const at::Tensor w = at::randn_like(q);
    kernels::SpanAttentionOptions o = c.options();
    for (const int64_t key_chunk : {0, 32}) {  // whole rows, and rows split into key ranges
      o.key_chunk = key_chunk;
      const RowKernelRun host = run_rows(q, k, v, pe, z, w, o);
      const RowKernelRun dev = run_rows(q.to(gpu), k.to(gpu), v.to(gpu), pe.to(gpu), z.to(gpu), w.to(gpu), o);
      EXPECT_LT(testing_relative(dev.out, host.out), 1e-12) << "z " << c.z << ", key chunk " << key_chunk;
      EXPECT_LT(testing_relative(dev.dq, host.dq), 1e-11);
      EXPECT_LT(testing_relative(dev.dk, host.dk), 1e-11);
      EXPECT_LT(testing_relative(dev.dv, host.dv), 1e-11);
      EXPECT_LT(testing_relative(dev.dpe, host.dpe), 1e-11);
      EXPECT_LT(testing_relative(dev.dz, host.dz), 1e-10);
    }
  }
}

TEST(Cuda, RowKernelsFloat32WithinFlashAttentionCriterion) {
  SKIP_WITHOUT_ROW_KERNELS();
  const at::Device gpu(at::kCUDA);
  for (const RowKernelCase& c : kRowKernelCases) {
    const auto [q, k, v, pe, z] = c.inputs(4);
    const at::Tensor ref64 = kernels::span_attention_reference(q, k, v, pe, z, c.span, c.ramp);
    const at::Tensor ref32 = kernels::span_attention_reference(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat),
                                                               pe.to(at::kFloat), z.to(at::kFloat), c.span, c.ramp);
    const kernels::SpanAttentionOptions o = c.options();
    const at::Tensor dev =
        kernels::span_attention_rows(q.to(gpu, at::kFloat), k.to(gpu, at::kFloat), v.to(gpu, at::kFloat),
                                     pe.to(gpu, at::kFloat), z.to(gpu, at::kFloat), o)
            .cpu()
            .to(at::kDouble);
    const double plain_error = (ref32.to(at::kDouble) - ref64).abs().max().item<double>();
    EXPECT_LE((dev - ref64).abs().max().item<double>(), 2 * plain_error + 1e-6) << "z " << c.z;
  }
}

TEST(Cuda, RowKernelsBitwiseReproducible) {
  SKIP_WITHOUT_ROW_KERNELS();
  const at::Device gpu(at::kCUDA);
  const auto opt = at::TensorOptions().dtype(at::kFloat).device(gpu);
  at::manual_seed(5);
  const at::Tensor q = at::randn({4, 512, 64}, opt), k = at::randn({4, 1536, 64}, opt), v = at::randn_like(k),
                   pe = at::randn({64, 1024}, opt), z = at::full({}, 300.5, opt), w = at::randn_like(q);
  const kernels::SpanAttentionOptions o = RowKernelCase{4, 512, 1024, 64, 1024, 32.0, 300.5}.options();
  const RowKernelRun a = run_rows(q, k, v, pe, z, w, o), b = run_rows(q, k, v, pe, z, w, o);
  for (auto pair : {std::make_pair(a.out, b.out), std::make_pair(a.dq, b.dq), std::make_pair(a.dk, b.dk),
                    std::make_pair(a.dv, b.dv), std::make_pair(a.dpe, b.dpe), std::make_pair(a.dz, b.dz)}) {
    EXPECT_TRUE(at::equal(pair.first, pair.second));
  }
}

void expect_training_steps_match_cpu(model::SpanMode span_mode) {
  model::ModelConfig c;
  c.span_mode = span_mode;
  c.dropout = 0;  // the CPU and GPU paths draw different keep-masks
  c.layers = 2;
  c.d_model = 32;
  c.heads = 2;
  c.ff_size = 64;
  c.attn_span = 128;
  std::vector<double> losses[2];
  const at::Device devices[2] = {at::Device(at::kCPU), at::Device(at::kCUDA)};
  for (int d = 0; d < 2; ++d) {
    at::manual_seed(5);
    model::AdaptiveSpanLM lm(c);
    lm.to(at::kDouble);
    lm.to(devices[d]);
    auto optimizer = trainer::make_adagrad(lm.parameters(), 0.03);
    model::ModelCache cache;
    at::manual_seed(6);
    for (int step = 0; step < 5; ++step) {
      const at::Tensor bytes = at::randint(0, 256, {4, 65}, at::kLong).to(devices[d]);
      losses[d].push_back(
          trainer::train_step(lm, *optimizer, bytes.narrow(1, 0, 64), bytes.narrow(1, 1, 64), cache, 0.07).nll);
    }
  }
  for (int step = 0; step < 5; ++step) EXPECT_NEAR(losses[0][step], losses[1][step], 1e-9) << "step " << step;
}

TEST(Cuda, TrainingStepsMatchCpu) {
  SKIP_WITHOUT_CUDA();
  expect_training_steps_match_cpu(model::SpanMode::static_span);
}

// Per-token spans: the row kernels on the GPU, 64-query tiles of the general path on the CPU.
TEST(Cuda, DynamicSpanTrainingStepsMatchCpu) {
  SKIP_WITHOUT_CUDA();
  expect_training_steps_match_cpu(model::SpanMode::dynamic);
}

// A few hundred float32 steps on the GPU follow the CPU's curve (the reductions differ, so not
// bit for bit); bf16 autocast on the GPU stays within a few percent of it.
std::vector<double> phrase_curve(const at::Device& device, model::Precision precision, int steps) {
  model::ModelConfig c;
  c.layers = 2;
  c.d_model = 64;
  c.heads = 4;
  c.ff_size = 128;
  c.attn_span = 256;
  c.dropout = 0;
  at::manual_seed(9);
  model::AdaptiveSpanLM lm(c);
  lm.to(device);
  lm.set_precision(precision);
  lm.train();
  auto optimizer = trainer::make_adagrad(lm.parameters(), 0.03);
  model::ModelCache cache;
  const std::string phrase = "adaptive spans learn to look as far back as they need. ";
  std::vector<double> curve;
  for (int step = 0; step < steps; ++step) {
    at::Tensor bytes = at::empty({4, 65}, at::kLong);
    auto a = bytes.accessor<int64_t, 2>();
    for (int64_t r = 0; r < 4; ++r) {
      for (int64_t t = 0; t < 65; ++t) a[r][t] = phrase[(step * 64 + r * 13 + t) % phrase.size()];
    }
    bytes = bytes.to(device);
    curve.push_back(
        trainer::train_step(lm, *optimizer, bytes.narrow(1, 0, 64), bytes.narrow(1, 1, 64), cache, 0.07).nll);
  }
  return curve;
}

double mean_of_last(const std::vector<double>& v, size_t n) {
  double sum = 0;
  for (size_t i = v.size() - n; i < v.size(); ++i) sum += v[i];
  return sum / static_cast<double>(n);
}

TEST(Cuda, TrainingCurveMatchesCpuFloat32AndBf16) {
  SKIP_WITHOUT_CUDA();
  constexpr int kSteps = 300;
  const auto cpu = phrase_curve(at::Device(at::kCPU), model::Precision::fp32, kSteps);
  const auto gpu = phrase_curve(at::Device(at::kCUDA), model::Precision::fp32, kSteps);
  const auto bf16 = phrase_curve(at::Device(at::kCUDA), model::Precision::bf16, kSteps);
  ASSERT_LT(mean_of_last(cpu, 20), 0.5 * cpu.front()) << "the CPU run did not learn";
  for (int step = 0; step < 10; ++step) EXPECT_NEAR(gpu[step], cpu[step], 1e-4 * cpu[step]) << "step " << step;
  EXPECT_NEAR(mean_of_last(gpu, 20), mean_of_last(cpu, 20), 0.02 * mean_of_last(cpu, 20) + 0.01);
  EXPECT_NEAR(mean_of_last(bf16, 20), mean_of_last(cpu, 20), 0.05 * mean_of_last(cpu, 20) + 0.02);
}

TEST(Cuda, NcclOneRankCollectives) {
  SKIP_WITHOUT_CUDA();
  if (!cluster::nccl_available()) GTEST_SKIP() << "built without NCCL";
  cluster::World world(nullptr, nullptr);
  auto group = cluster::make_nccl_process_group(cluster::Communicator::world(), 0);
  at::Tensor t = at::arange(10, at::TensorOptions().device(at::kCUDA).dtype(at::kFloat));
  group->all_reduce_async(t, model::ReduceOp::sum)->wait();
  EXPECT_EQ(t.sum().item<float>(), 45.0f);
  group->broadcast(t, 0);
  at::Tensor out = at::zeros({10}, t.options());
  group->all_gather(t, out);
  EXPECT_TRUE(at::equal(out, t));
  // Point to point, as the halos use it: a send and a receive of one exchange, here to itself.
  std::vector<model::PeerMessage> messages{{t.clone(), 0, true}, {at::zeros_like(t), 0, false}};
  group->exchange_async(messages)->wait();
  EXPECT_TRUE(at::equal(messages[1].tensor, t));
  group->barrier();
}

}  // namespace
}  // namespace adaspan
