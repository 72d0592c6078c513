#!/usr/bin/env bash
# Formats the tree's C++ (clang-format, .clang-format at the root). `--check`: list the files that
# differ and exit 1, changing nothing (the CTest Style.TreeIsClangFormatted). Exit 77 (CTest's skip)
# when clang-format is missing, except under CI=true, where that is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang-format >/dev/null; then
  echo "format.sh: clang-format not found (apt-get install clang-format)" >&2
  [ "${CI:-}" = "true" ] && exit 1
  exit 77
fi
mapfile -t files < <(git ls-files '*.cpp' '*.h' '*.cu' 2>/dev/null || find . -path ./build -prune -o \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' \) -print)
if [ "${1:-}" = "--check" ]; then
  bad=()
  for f in "${files[@]}"; do
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done
  if [ ${#bad[@]} -gt 0 ]; then
    printf 'not clang-formatted (run scripts/format.sh): %s\n' "${bad[@]}"
    exit 1
  fi
  echo "format.sh: ${#files[@]} files formatted"
  exit 0
fi
clang-format -i "${files[@]}"
