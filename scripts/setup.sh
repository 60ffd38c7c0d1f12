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

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$venv/bin/python" -c 'import torch' 2>/dev/null; then
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
echo "$want" > "$stamp"
echo "setup: done" >&2
