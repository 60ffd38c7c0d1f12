#!/usr/bin/env bash
# What a machine with an NVIDIA GPU runs (docs/gpu.md): one prepared check that
# ends in minutes and writes its results as JSON. It needs a prebuilt CUDA-linked roli binary
# (every `make build` links libtorch_cuda) and PyTorch 2.11 (+ timm, pyautoattack for the
# PyTorch side of the benchmark) in `.venv` or on `python3`; no Rust, no network.
#
#   scripts/gpu-check.sh [--device cuda] [--out DIR] [--bin PATH] [--peak-tflops T]
#
# Steps (each timed; a failing step is recorded and the check goes on):
#   1. versions: CUDA / cuDNN / devices (`roli device info`, and PyTorch's view);
#   2. parity: logits and input gradients of Swin-B and ViT-B (224 px) on the device vs the CPU
#      in fp32 (must be ≤ 1e-4), and at bf16 and with fused attention (reported);
#   3. a tiny `roli run` (configs/gpu-check.toml) trained in fp32 and again in bf16, each
#      evaluated with PGD-10 and AutoAttack in fp32 on 200 points;
#   4. `roli bench` of Swin-B and ViT-B at 224 px, batch 64, fp32 and bf16 against PyTorch eager.
# With `--device cpu` the same steps run at CPU scale (micro presets in the benchmark, batch 2 in
# the parity check), so the script itself is tested end to end on a machine without a GPU.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
device=cuda
out=gpu-check-out
bin="$root/target/release/roli"
peak=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --peak-tflops) peak="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ -x "$bin" ]] || { echo "gpu-check: no roli binary at $bin; build one with 'make build' (or pass --bin)" >&2; exit 2; }
py="$root/.venv/bin/python"
[[ -x "$py" ]] || py="$(command -v python3)"
torch_lib="$("$py" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)" \
  || { echo "gpu-check: $py cannot import torch; install torch==2.11.0" >&2; exit 2; }
# The binary's RUNPATH names the build machine's venv; this machine's torch comes first.
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Data carried next to the binary (scripts/gpu-pack.sh) when the machine has no cache.
if [[ -z "${ROLI_CACHE:-}" && -d "$root/target/gpu-pack/cache" ]]; then export ROLI_CACHE="$root/target/gpu-pack/cache"; fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
steps="$out/steps.jsonl"
: > "$steps"
t_start=$(date +%s)

# step NAME CMD...: runs CMD with its output in $out/NAME.log, records rc and seconds.
step() {
  local name="$1"; shift
  local t0=$(date +%s%N)
  echo "== $name: $*" >&2
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  tail -n 3 "$out/$name.log" >&2
  printf '{"step": "%s", "rc": %d, "seconds": %d.%03d}\n' "$name" "$rc" $((ms / 1000)) $((ms % 1000)) >> "$steps"
  return 0
}

if [[ "$device" == cpu ]]; then
  big=(swin_base_patch4_window7_224 vit_base_patch16_224); parity_batch=2
  bench=(lenet5_advertorch vit_micro_patch4_32 swin_micro_patch2_window4_32); bench_batch=16; bench_size=""
  bench_iters=(--warmup 1 --iters 1 --aa-n 16 --aa-iters 2)
else
  big=(swin_base_patch4_window7_224 vit_base_patch16_224); parity_batch=8
  bench=(swin_base_patch4_window7_224 vit_base_patch16_224); bench_batch=64; bench_size=224
  bench_iters=(--warmup 2 --iters 5 --aa-n 64 --aa-iters 10)
fi

# 1. Versions.
step info "$bin" device info --json "$out/device.json"
step torch_info "$py" -c "
import json, torch
d = {'torch': torch.__version__, 'cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version(),
     'devices': [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
json.dump(d, open('$out/torch.json', 'w')); print(d)"

# 2. Parity against the CPU in fp32 (gate: 1e-4), then bf16 and fused attention (reported).
for p in "${big[@]}"; do
  step "parity_${p}_fp32" "$bin" device parity --preset "$p" --batch "$parity_batch" --device "$device" \
    --tolerance 1e-4 --json "$out/parity_${p}_fp32.json"
  step "parity_${p}_bf16" "$bin" device parity --preset "$p" --batch "$parity_batch" --device "$device" \
    --precision bf16 --json "$out/parity_${p}_bf16.json"
  step "parity_${p}_fused" "$bin" device parity --preset "$p" --batch "$parity_batch" --device "$device" \
    --attention fused --tolerance 1e-4 --json "$out/parity_${p}_fused.json"
done

# 3. The tiny study end to end, fp32 and bf16 training; AutoAttack in fp32 for both.
step run_fp32 "$bin" run configs/gpu-check.toml --device "$device" --out "$out/run-fp32" --allow-flags
step run_bf16 "$bin" run configs/gpu-check.toml --device "$device" --out "$out/run-bf16" --allow-flags \
  --set 'train.precision="bf16"' --set 'model.attention="fused"'

# 4. The benchmark against PyTorch eager (same weights, batch, attack settings).
for p in "${bench[@]}"; do
  for prec in fp32 bf16; do
    extra=()
    [[ "$prec" == bf16 ]] && extra=(--attention fused)
    [[ -n "$bench_size" ]] && extra+=(--image-size "$bench_size")
    [[ -n "$peak" ]] && extra+=(--peak-tflops "$peak")
    step "bench_${p}_${prec}" "$bin" bench --preset "$p" --batch "$bench_batch" --device "$device" \
      --precision "$prec" "${bench_iters[@]}" "${extra[@]}" --python "$py" --json "$out/bench_${p}_${prec}.json"
  done
done

# One JSON of everything.
"$py" - "$out" "$device" "$(( $(date +%s) - t_start ))" <<'EOF'
import json, os, sys
out, device, secs = sys.argv[1], sys.argv[2], int(sys.argv[3])
def load(name):
    p = os.path.join(out, name)
    try:
        with open(p) as f:
            return json.load(f)
    except Exception:
        return None
steps = [json.loads(l) for l in open(os.path.join(out, "steps.jsonl")) if l.strip()]
res = {"device": device, "seconds": secs, "steps": steps,
       "roli_device": load("device.json"), "torch": load("torch.json"),
       "parity": {}, "runs": {}, "bench": {}}
for f in sorted(os.listdir(out)):
    if f.startswith("parity_") and f.endswith(".json"):
        res["parity"][f[7:-5]] = load(f)
    if f.startswith("bench_") and f.endswith(".json"):
        res["bench"][f[6:-5]] = load(f)
for prec in ("fp32", "bf16"):
    s = load(f"run-{prec}/summary.json")
    if s:
        res["runs"][prec] = [{"model": r["method"] + "/" + r["init"], "clean": r["test"]["clean_accuracy"],
                              "pgd": r["test"]["pgd_accuracy"], "aa": r["test"]["aa_accuracy"],
                              "aa_n": r["test"]["aa_n"], "flags": r["test"]["flags"],
                              "reliable": r["test"].get("reliable"), "seconds": r["seconds"]}
                             for r in s["results"]]
res["failed_steps"] = [s["step"] for s in steps if s["rc"] != 0]
with open(os.path.join(out, "gpu-check.json"), "w") as f:
    json.dump(res, f, indent=1)
print(f"gpu-check: {len(steps)} steps, {len(res['failed_steps'])} failed {res['failed_steps']}, {secs} s; "
      f"results in {os.path.join(out, 'gpu-check.json')}")
EOF
