#!/usr/bin/env bash
# Installs every system package adaspan's build, tests and demo need (Debian/Ubuntu).
# Idempotent: prints what it installs, and does nothing when everything is present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev            # LibTorch (Debian: 1.13, CPU); a pip/CUDA LibTorch is used instead when found
  libopenblas0-pthread    # without it LibTorch links the reference BLAS and runs ~20x slower
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev     # parallel HDF5 (MPI-IO) for collective checkpoints
  libboost-program-options-dev
  libgtest-dev
  libzip-dev              # reads enwik8.zip in `adaspan prepare`
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get update -qq
$sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
