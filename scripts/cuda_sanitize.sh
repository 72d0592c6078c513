#!/usr/bin/env bash
# compute-sanitizer over the CUDA tests (small shapes): memcheck (out-of-bounds and misaligned
# accesses at tile, span and cache edges), racecheck and synccheck (shared memory and barriers),
# initcheck (reads of memory never written). Needs a GPU and a build with the CUDA kernels.
#
#   scripts/cuda_sanitize.sh [BUILD_DIR]      (default: build)
set -euo pipefail
build="${1:-build}"
sanitizer="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
[ -x "$sanitizer" ] || { echo "cuda_sanitize: compute-sanitizer not found" >&2; exit 2; }
# The caching allocator would hide out-of-bounds accesses into pooled neighbours.
export PYTORCH_NO_CUDA_MEMORY_CACHING=1 CUDA_LAUNCH_BLOCKING=1
filter='Cuda.RowKernelsMatchHostRowsFloat64:Cuda.RowKernelsBitwiseReproducible'
status=0
for tool in memcheck racecheck synccheck initcheck; do
  echo "== compute-sanitizer --tool $tool"
  if ! "$sanitizer" --tool "$tool" --error-exitcode 99 "$build/tests/adaspan_tests" --gtest_filter="$filter"; then
    echo "cuda_sanitize: $tool reported errors" >&2
    status=1
  fi
done
exit $status
