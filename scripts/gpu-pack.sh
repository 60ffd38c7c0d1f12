#!/usr/bin/env bash
# Prepares what scripts/gpu-check.sh needs on a GPU machine without network, next to the binary:
# the Fashion-MNIST cache (30 MB) in target/gpu-pack/cache. Carry `target/release/roli` and
# `target/gpu-pack` to that machine (both are ignored by git), then run scripts/gpu-check.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${ROLI_CACHE:-$HOME/.cache/roli}"
"$root/target/release/roli" data fetch fashion-mnist >/dev/null
mkdir -p "$root/target/gpu-pack/cache"
cp -a "$cache/fashion-mnist" "$root/target/gpu-pack/cache/"
du -sh "$root/target/gpu-pack" "$root/target/release/roli"
