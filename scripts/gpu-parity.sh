#!/usr/bin/env bash
# Parity on a GPU machine that has PyTorch but no Rust toolchain or network, with the binary of
# `cargo xtask gpu-bundle` (docs/backends.md, "On a GPU machine without Rust or network").
#
#   bash scripts/gpu-parity.sh [BUNDLE_DIR]        (default: target/gpu-bundle)
#
# Environment: OUT, the results folder (default target/gpu-parity); PYTHON, the interpreter
# whose torch/lib the binary runs with (default python3); PARITY_TIMEOUT, seconds per run
# (default 300).
#
# Run from a checkout (fixtures/ must be there). Each backend is its own run against flex, the
# reference, so one that fails or cannot start does not hide the others:
#   tch-cuda     LibTorch on the GPU (this machine's PyTorch libraries)
#   wgpu-vulkan  wgpu pinned to Vulkan (never a silent fallback to a software renderer)
#   wgpu         wgpu with its automatic choice of graphics API (on a machine without a GPU
#                driver for graphics, OpenGL on Mesa's llvmpipe: correct, slow)
#   tch          LibTorch on this machine's CPU
# Writes machine.txt, ldd.txt, <backend>.log, <backend>/parity.{md,json} and summary.txt to
# $OUT; the binary is unpacked into a temporary folder, removed at the end.
# Exit status: 0 when every backend started and every check passed, 1 otherwise, 2 when the
# run could not start (no bundle, no torch, another PyTorch version).
set -uo pipefail
cd "$(dirname "$0")/.."

bundle=${1:-target/gpu-bundle}
out=${OUT:-target/gpu-parity}
python=${PYTHON:-python3}
limit=${PARITY_TIMEOUT:-300}

fail() {
  echo "gpu-parity: $*" >&2
  exit 2
}

[ -f "$bundle/xtask.gz" ] && [ -f "$bundle/BUNDLE" ] ||
  fail "no $bundle/xtask.gz and $bundle/BUNDLE: build them with \`cargo xtask gpu-bundle\` and carry $bundle here"
[ -f fixtures/models.safetensors ] || fail "fixtures/models.safetensors is missing: run this from a checkout"
mkdir -p "$out" || fail "cannot create $out"
bin=$(mktemp -d) || fail "cannot create a temporary folder"
trap 'rm -rf "$bin"' EXIT
xtask="$bin/xtask"
{ gzip -dc "$bundle/xtask.gz" >"$xtask.partial" && chmod +x "$xtask.partial" && mv "$xtask.partial" "$xtask"; } ||
  fail "cannot unpack $bundle/xtask.gz"

want=$(sed -n 's/^torch=//p' "$bundle/BUNDLE")
need_glibc=$(sed -n 's/^glibc=//p' "$bundle/BUNDLE")
have_glibc=$(ldd --version 2>&1 | head -1 | grep -oE '[0-9]+\.[0-9]+$')
[ "$(printf '%s\n' "$need_glibc" "$have_glibc" | sort -V | head -1)" = "$need_glibc" ] ||
  fail "this machine has glibc ${have_glibc:-unknown}, the bundle needs $need_glibc or newer: build it on an older system"
info=$("$python" -c '
import os, torch
print(torch.__version__.split("+")[0])
print(os.path.join(os.path.dirname(torch.__file__), "lib"))
print(torch.__version__, "CUDA", torch.version.cuda, "available:", torch.cuda.is_available())
' 2>"$out/python.err") || fail "$python cannot import torch (set PYTHON): $(tail -1 "$out/python.err")"
have=$(sed -n 1p <<<"$info")
torch_lib=$(sed -n 2p <<<"$info")
[ "$have" = "$want" ] ||
  fail "this machine has PyTorch $have, the bundle was built against $want (a mismatch crashes): rebuild with \`cargo xtask gpu-bundle --torch $have\`"

export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "bundle: $(tr '\n' ' ' <"$bundle/BUNDLE")"
  echo "torch: $(sed -n 3p <<<"$info") ($torch_lib)"
  echo "glibc: $have_glibc (the bundle needs $need_glibc or newer)"
  echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  if command -v nvidia-smi >/dev/null; then
    echo "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -3)"
  else
    echo "gpu: no nvidia-smi on this machine"
  fi
  echo "vulkan drivers: ${VK_DRIVER_FILES:-$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null | tr '\n' ' ')}"
  echo "vulkan loader: $(ldconfig -p | grep -o 'libvulkan.so.1 .*' | head -1)"
} >"$out/machine.txt"
ldd "$xtask" >"$out/ldd.txt" 2>&1
cat "$out/machine.txt"
grep -E "libtorch_cuda|not found" "$out/ldd.txt"

status=0
: >"$out/summary.txt"
features=$(sed -n 's/^features=//p' "$bundle/BUNDLE")
for backend in tch-cuda wgpu-vulkan wgpu tch; do
  if ! grep -qw "${backend%%-*}" <<<"${features//,/ }"; then
    echo "$backend: not in this bundle (features $features)" | tee -a "$out/summary.txt"
    continue
  fi
  start=$(date +%s)
  timeout "$limit" "$xtask" parity --backend "flex,$backend" --fixtures fixtures \
    --out "$out/$backend" >"$out/$backend.log" 2>&1
  rc=$?
  table="$out/$backend/parity.md"
  pass=$(grep -c "| $backend | .* | pass |" "$table" 2>/dev/null)
  failed=$(grep -c "| $backend | .* | \*\*FAIL\*\* |" "$table" 2>/dev/null)
  line="$backend: exit $rc after $(($(date +%s) - start)) s; ${pass:-0} checks passed, ${failed:-0} failed"
  [ "$rc" -eq 124 ] && line="$line (timed out after $limit s)"
  echo "$line" | tee -a "$out/summary.txt"
  grep -E "not checked|^- " "$out/$backend.log" | head -20 | tee -a "$out/summary.txt"
  [ "$rc" -eq 0 ] || status=1
done
echo "results in $out"
exit "$status"
