#!/usr/bin/env bash
# What a session with a GPU should run first for the CUDA kernels (issue: CUDA kernels), in one
# go, with every log kept: the CUDA tests, compute-sanitizer, the kernel benchmark against the ATen
# path and FlexAttention, context parallelism on CUDA tensors against one rank, and training
# tokens/s of the enwik8-small config in fp32 and bf16.
#
#   scripts/gpu_kernel_checks.sh BUILD_DIR OUT_DIR
# BUILD_DIR: a build against a CUDA LibTorch (docs/gpu-host.md); OUT_DIR: logs (created).
set -uo pipefail
build="${1:?usage: gpu_kernel_checks.sh BUILD_DIR OUT_DIR}"
out="${2:?usage: gpu_kernel_checks.sh BUILD_DIR OUT_DIR}"
here="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$out"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || { echo "gpu_kernel_checks: no GPU (nvidia-smi failed)" >&2; exit 2; }
status=0
step() {  # step NAME COMMAND...: runs it, logs to OUT/NAME.log, remembers a failure
  local name="$1"; shift
  echo "== $name: $*"
  if ! "$@" > "$out/$name.log" 2>&1; then echo "   FAILED (see $out/$name.log)"; status=1; fi
  tail -n 12 "$out/$name.log"
}
step cuda_tests "$build/tests/adaspan_tests" --gtest_filter='Cuda.*'
# On a GPU host a skipped CUDA test is a failure: it means the kernels or NCCL were not built in.
if grep -q "\[  SKIPPED \]" "$out/cuda_tests.log"; then
  echo "   FAILED: CUDA tests were skipped on a GPU host (see $out/cuda_tests.log)"; status=1
fi
step sanitizer bash "$here/scripts/cuda_sanitize.sh" "$build"
step attention "$build/adaspan_bench_attention" --device cuda --batch-size 8 --block-size 512 --head-dim 64 \
  --attn-span 8192 --spans 64,256,819,1024,2048,4096,8192 --json "$out/attention.json"
step flex python3 "$here/bench/flex_attention.py" --batch-size 8 --block-size 512 --head-dim 64 \
  --attn-span 8192 --spans 64,256,819,1024,2048,4096,8192 --json "$out/flex.json"
# Context parallelism with CUDA tensors == one rank on the GPU. Every rank on the one GPU, so the
# halos and gradients go over MPI (NCCL refuses two ranks on one device); with four GPUs or more
# (the test runs CP 2 and CP 4), again over NCCL (ncclSend/ncclRecv halos), each rank on its own GPU.
cp_tests='ContextParallel.TrainingOnTwoAndFourChunksMatchesOneRank:ContextParallel.ShortSpansAndSparseFixedMatchOneRank'
cp_tests+=':ContextParallel.DynamicSpansFullAttentionAndTensorParallelMatchOneRank:ContextParallel.SameLayoutResumeIsBitExact'
cp_tests+=':ContextParallel.Bf16MatchesOneRankWithinRounding:ContextParallel.BytesSentEqualTheHalosTheSpansNeed'
step cp_one_gpu env ADASPAN_CP_TEST_FLAGS="--device cuda --dp-backend mpi" \
  "$build/tests/adaspan_tests" --gtest_filter="$cp_tests"
if [ "$(nvidia-smi -L | grep -c '^GPU')" -ge 4 ]; then
  step cp_nccl env ADASPAN_CP_TEST_FLAGS="--device cuda --dp-backend nccl" \
    "$build/tests/adaspan_tests" --gtest_filter='ContextParallel.TrainingOnTwoAndFourChunksMatchesOneRank'
else
  echo "== cp_nccl: not run (fewer than 4 GPUs: NCCL needs one GPU per rank)" | tee "$out/cp_nccl.log"
fi
for precision in fp32 bf16; do
  step "train_$precision" "$build/adaspan_bench" --device cuda --precision "$precision" --layers 12 --d-model 512 \
    --heads 8 --ff-size 2048 --attn-span 8192 --block-size 512 --batch-size 8 --steps 10 --warmup 3 \
    --json "$out/train_$precision.json"
done
exit $status
