#!/usr/bin/env bash
# Configures and builds adaspan into build/ (Release, Ninja when present). Extra args go to
# `cmake --build` (e.g. --target adaspan).
set -euo pipefail
cd "$(dirname "$0")/.."
generator=()
command -v ninja >/dev/null && [ ! -f build/Makefile ] && generator=(-G Ninja)
cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" "$@"
