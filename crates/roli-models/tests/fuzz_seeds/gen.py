"""Writes the committed seed files of the roli-models fuzz tests (tests/fuzz.rs): tiny
checkpoints as torch.save and safetensors write them (a few KB each). Run once from the
repository root with the project venv: .venv/bin/python crates/roli-models/tests/fuzz_seeds/gen.py"""
import argparse
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import save_file

out = Path(__file__).parent
g = torch.Generator().manual_seed(0)
sd = OrderedDict(
    [
        ("fc.weight", torch.randn(3, 4, generator=g)),
        ("fc.bias", torch.randn(3, generator=g)),
        ("bn.num_batches_tracked", torch.tensor(7)),
        ("half", torch.randn(2, 2, generator=g).half()),
        ("bf16", torch.randn(2, generator=g).bfloat16()),
        ("mask", torch.tensor([True, False])),
        ("empty", torch.zeros(0, 3)),
    ]
)
# A flat state dict, and a training checkpoint with wrappers, non-tensor entries, a parameter
# and a strided view (a transpose and a slice share one storage).
torch.save(sd, out / "flat.pt")
base = torch.arange(12.0).reshape(3, 4)
wrapped = {
    "model": OrderedDict([("w.t", base.t()), ("w.row", base[1]), ("p", torch.nn.Parameter(torch.ones(2)))]),
    "epoch": 3,
    "args": argparse.Namespace(lr=0.1, name="x"),
    "best": 0.5,
    "tags": {"a", "b"},
}
torch.save(wrapped, out / "wrapped.pt")
save_file({k: v.contiguous() for k, v in sd.items()}, out / "flat.safetensors")
