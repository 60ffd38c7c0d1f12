"""Checks a `roli export` against PyTorch: rebuilds the timm twin, loads the export strictly (timm
state_dict) or through HF peft (`PeftModel.from_pretrained` on the twin with the frozen backbone),
runs the batch `x` of BATCH (a safetensors file, [0,1] NCHW) and prints one JSON line with the
max |logits - roli's logits| (tensor `logits` of BATCH).

    python scripts/export_check.py timm OUT.safetensors BATCH.safetensors
    python scripts/export_check.py peft OUT_DIR BATCH.safetensors
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_torch import Wrapped, build_backbone  # noqa: E402


def strict(model, sd, allow_missing=()):
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked") and not k.startswith(allow_missing)]
    if missing or unexpected:
        raise RuntimeError(f"strict load: missing {missing[:8]}, unexpected {unexpected[:8]}")
    return len(sd)


def main():
    mode, path, batch = sys.argv[1:4]
    torch.manual_seed(0)
    b = load_file(batch)
    if mode == "timm":
        meta = json.load(open(os.path.splitext(path)[0] + ".json"))
        net = build_backbone(meta["twin"], meta["num_classes"])
        n = strict(net, load_file(path))
        model = net
    elif mode == "peft":
        from peft import PeftModel

        meta = json.load(open(os.path.join(path, "roli_export.json")))
        net = build_backbone(meta["twin"], meta["num_classes"])
        head = meta["twin"]["classifier"] + "."
        n = strict(net, load_file(os.path.join(path, "base_model.safetensors")), allow_missing=(head,))
        model = PeftModel.from_pretrained(net, path)
        n += len(load_file(os.path.join(path, "adapter_model.safetensors")))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    twin = meta["twin"]
    m = Wrapped(model, twin["mean"], twin["std"], twin["native_size"]).eval()
    with torch.no_grad():
        logits = m(b["x"])
    diff = (logits - b["logits"]).abs().max().item()
    print(json.dumps({"mode": mode, "tensors": n, "max_abs_diff": diff, "shape": list(logits.shape)}))


if __name__ == "__main__":
    main()
