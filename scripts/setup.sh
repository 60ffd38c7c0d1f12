#!/usr/bin/env bash
# One-step, idempotent set-up: a project-local .venv with PyTorch 2.11.0 (libtorch for tch, and the
# reference for parity tests). Second run: a version check, about a second.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
req="$root/scripts/requirements.txt"
stamp="$venv/.roli-setup"
want="$(sha256sum "$req" | cut -d' ' -f1)"

die() { echo "setup: error: $*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 not found; install Python >= 3.9 (e.g. apt-get install python3 python3-venv)"
command -v cargo >/dev/null || die "cargo not found; install Rust >= 1.85 (https://rustup.rs)"
command -v c++ >/dev/null || die "a C++ compiler is needed to build tch's libtorch shim; apt-get install g++"

# Gloo's headers for roli-torch-ext's process group (torch.distributed's c10d): the wheel ships
# ProcessGroupGloo.hpp but not the <gloo/...> headers it includes; the symbols are in libtorch_cpu.
# Debian's libgloo-dev (headers only are used) is unpacked into .venv/gloo, no root install.
fetch_gloo() {
  local dest="$venv/gloo"
  [[ -f "$dest/usr/include/gloo/context.h" ]] && return 0
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
    || die "apt-get and dpkg-deb are needed once to fetch Debian's libgloo-dev headers (Debian/Ubuntu)"
  local tmp
  tmp="$(mktemp -d)"
  (cd "$tmp" && apt-get download libgloo-dev >/dev/null 2>&1) \
    || { rm -rf "$tmp"; die "apt-get download libgloo-dev failed (network to Debian's packages needed once); re-run 'make setup'"; }
  mkdir -p "$dest"
  dpkg-deb -x "$tmp"/libgloo-dev_*.deb "$dest" || { rm -rf "$tmp"; die "dpkg-deb -x libgloo-dev failed"; }
  rm -rf "$tmp"
  echo "setup: gloo headers in $dest/usr/include" >&2
}

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  fetch_gloo
  exit 0
fi

echo "setup: creating $venv with $(grep -v '^#' "$req" | tr '\n' ' ')(one-time, ~1-2 min, ~5 GB)" >&2
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv" || die "python3 -m venv failed; apt-get install python3-venv"
fi
"$venv/bin/pip" install --disable-pip-version-check -q -r "$req" \
  || die "pip install failed (network to PyPI needed once); re-run 'make setup' to retry"
"$venv/bin/python" -c 'import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith("2.11.0") else f"torch {v} != 2.11.0")' \
  || die "the venv holds the wrong torch; delete .venv and re-run 'make setup'"
fetch_gloo
echo "$want" > "$stamp"
echo "setup: done" >&2
