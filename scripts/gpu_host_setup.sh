#!/usr/bin/env bash
# Copy of shared/device/setup.sh made safe for merged-/usr hosts; see docs/gpu-host.md.
# Unpacks the Debian packages beside this file into / on a GPU host. Merged-/usr safe: a package
# that ships /lib/... (libnl-3-200 does) is staged and moved under /usr/lib first, because
# `dpkg -x pkg /` would replace the host's /lib -> usr/lib link with a directory and break libc.
_adaspan_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_stage=$(mktemp -d)
# ADASPAN_DEVICE_ONLY: a regex of package file names to unpack (the rest are taken from the host).
for _f in "$_adaspan_dir"/debs/*.deb; do
  if [ -n "${ADASPAN_DEVICE_ONLY:-}" ] && ! basename "$_f" | grep -qE "$ADASPAN_DEVICE_ONLY"; then continue; fi
  dpkg -x "$_f" "$_stage" || return 1
done
for _d in lib bin sbin; do
  if [ -d "$_stage/$_d" ]; then mkdir -p "$_stage/usr/$_d" && cp -a "$_stage/$_d/." "$_stage/usr/$_d/" && rm -rf "$_stage/$_d"; fi
done
# Copy each top-level folder (never "$_stage/." onto /: that would give / the 0700 mode of mktemp).
for _d in "$_stage"/*; do cp -a "$_d" / || return 1; done
rm -rf "$_stage"
ldconfig
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TORCH_PREFIX="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')" || return 1
export TORCH_PREFIX
echo "TORCH_PREFIX=$TORCH_PREFIX"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
mpirun --version | head -1
