# Source this to run plain `cargo` against the project's libtorch:  . scripts/env.sh
# (make targets do it for you). Puts .venv first on PATH so torch-sys finds the venv's Python torch.
_roli_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export VIRTUAL_ENV="$_roli_root/.venv"
export PATH="$_roli_root/.venv/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
unset LIBTORCH LD_LIBRARY_PATH _roli_root
