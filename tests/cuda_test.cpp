// The same model and kernel on a GPU: held to the CPU results. Skipped where LibTorch has no CUDA
// or no GPU is visible (CI).
#include "cluster/nccl_process_group.h"
#include "cluster/world.h"
#include "kernels/span_attention.h"
#include "kernels/span_attention_reference.h"
#include "model/adaptive_span_lm.h"
#include "trainer/optimizer.h"
#include "trainer/train_step.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace adaspan {
namespace {

#define SKIP_WITHOUT_CUDA() \
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device (LibTorch without CUDA, or no GPU visible)"

TEST(Cuda, SpanAttentionMatchesDenseReference) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(1);
  const auto cpu = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor q = at::randn({2, 70, 16}, cpu), k = at::randn({2, 170, 16}, cpu),
                   v = at::randn({2, 170, 16}, cpu), pe = at::randn({16, 128}, cpu), z = at::full({}, 40.5, cpu);
  kernels::SpanAttentionOptions o;
  o.max_span = 128;
  o.ramp = 16;
  o.window = kernels::effective_window(40.5, 16, 128);
  const at::Device gpu(at::kCUDA);
  const at::Tensor fast =
      kernels::span_attention(q.to(gpu), k.to(gpu), v.to(gpu), pe.to(gpu), z.to(gpu), o).cpu();
  const at::Tensor dense = kernels::span_attention_reference(q, k, v, pe, z, 128, 16);
  EXPECT_LT((fast - dense).abs().max().item<double>(), 1e-10);
}

TEST(Cuda, TrainingStepsMatchCpu) {
  SKIP_WITHOUT_CUDA();
  model::ModelConfig c;
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
      losses[d].push_back(trainer::train_step(lm, *optimizer, bytes.narrow(1, 0, 64), bytes.narrow(1, 1, 64),
                                              cache, 0.07)
                              .nll);
    }
  }
  for (int step = 0; step < 5; ++step) EXPECT_NEAR(losses[0][step], losses[1][step], 1e-9) << "step " << step;
}

TEST(Cuda, NcclOneRankCollectives) {
  SKIP_WITHOUT_CUDA();
  if (!cluster::nccl_available()) GTEST_SKIP() << "built without NCCL";
  cluster::World world(nullptr, nullptr);
  auto group = cluster::make_nccl_process_group(MPI_COMM_WORLD, 0);
  at::Tensor t = at::arange(10, at::TensorOptions().device(at::kCUDA).dtype(at::kFloat));
  group->all_reduce_async(t, model::ReduceOp::sum)->wait();
  EXPECT_EQ(t.sum().item<float>(), 45.0f);
  group->broadcast(t, 0);
  at::Tensor out = at::zeros({10}, t.options());
  group->all_gather(t, out);
  EXPECT_TRUE(at::equal(out, t));
  group->barrier();
}

}  // namespace
}  // namespace adaspan
