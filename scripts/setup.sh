#!/usr/bin/env bash
# Installs everything adaspan's build, tests and demo need on Debian/Ubuntu. Idempotent: prints
# what it installs and does nothing when all is present.
#
# Torch: LibTorch 2.x from PyPI's `torch` wheel (CUDA build, the same LibTorch as on GPU
# machines); ADASPAN_TORCH_VERSION pins it (default 2.11.0). Debian's LibTorch 1.13 is no longer a
# fallback: nothing tested it, and one test failed on it. A LibTorch 2.x of your own works with
# `cmake -DTorch_DIR=.../share/cmake/Torch` (ADASPAN_TORCH=none skips the wheel).
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config python3
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev     # parallel HDF5 (MPI-IO) for collective checkpoints
  libboost-program-options-dev
  libgtest-dev
  nlohmann-json3-dev
  libzip-dev              # reads enwik8.zip in `adaspan prepare`
  clang-format            # the style check (scripts/format.sh --check)
  slurmctld slurmd slurm-client munge  # tests/slurm: a private cluster the tests start and stop themselves
)

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all ${#packages[@]} Debian packages present"
fi

torch_version="${ADASPAN_TORCH_VERSION:-2.11.0}"
if [ "${ADASPAN_TORCH:-pip}" = "pip" ]; then
  if python3 -c "import torch" >/dev/null 2>&1; then
    echo "setup: python3 has torch $(python3 -c 'import torch; print(torch.__version__)')"
  else
    echo "setup: installing torch==${torch_version} from PyPI (LibTorch 2.x for the build)"
    start=$(date +%s)
    if python3 -m pip install -q "torch==${torch_version}"; then
      echo "setup: torch installed in $(( $(date +%s) - start )) s"
    else
      echo "setup: error: pip could not install torch==${torch_version} (LibTorch 2.x is required)" >&2
      exit 1
    fi
  fi
fi

# `adaspan report` draws with matplotlib, reads checkpoints with h5py and writes TensorBoard events
# (--tensorboard, through torch's SummaryWriter).
if ! python3 -c "import matplotlib, h5py, tensorboard" >/dev/null 2>&1; then
  echo "setup: installing matplotlib, h5py and tensorboard from PyPI (adaspan report)"
  if ! python3 -m pip install -q matplotlib h5py tensorboard; then
    echo "setup: error: pip could not install matplotlib, h5py and tensorboard (adaspan report and its tests need them)" >&2
    exit 1
  fi
fi
