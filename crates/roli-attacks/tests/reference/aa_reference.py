#!/usr/bin/env python3
"""Reference run for roli-attacks conformance.

Runs the official AutoAttack (module `pyautoattack`, fra31/auto-attack packaged as 0.2.0) in its
`standard` version and a PGD-40 written to the same recipe as roli's `Pgd` (uniform random start,
sign steps, per-example best iterate by CE) on advertorch's LeNet-5 for the first N MNIST test images,
and writes per-example robust flags as JSON for the Rust side to compare
(`cargo run --release -p roli-attacks --example conformance -- --reference <this output>`).

Usage (from the repository root, after `roli data fetch all`):
    .venv/bin/python crates/roli-attacks/tests/reference/aa_reference.py --n 1000 --out /tmp/aa_ref.json
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import pyautoattack.autoattack as aa_mod
from pyautoattack import AutoAttack
from pyautoattack.state import EvaluationState


def cache_dir() -> Path:
    return Path(os.environ.get("ROLI_CACHE", Path.home() / ".cache" / "roli"))


def read_idx(path: Path) -> np.ndarray:
    data = path.read_bytes()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class LeNet5(torch.nn.Module):
    """advertorch's LeNet-5 (conv 1-32-64, pool, fc 3136-200-10), functional so it mirrors the Rust one."""

    def __init__(self, path: Path):
        super().__init__()
        self.p = {k: v for k, v in load_file(str(path)).items()}

    def forward(self, x):
        p = self.p
        out = F.max_pool2d(F.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], padding=1)), 2)
        out = F.max_pool2d(F.relu(F.conv2d(out, p["conv2.weight"], p["conv2.bias"], padding=1)), 2)
        out = out.reshape(out.shape[0], -1)
        out = F.relu(F.linear(out, p["linear1.weight"], p["linear1.bias"]))
        return F.linear(out, p["linear2.weight"], p["linear2.bias"])


def pgd(model, x, y, eps, alpha, steps, seed):
    """roli's Pgd::perturb with restarts=1, random_start, loss CE, best=PerExample."""
    torch.manual_seed(seed)
    x_adv = (x + (torch.rand(x.shape) * 2.0 - 1.0) * eps).clamp(0.0, 1.0)
    best_x = x_adv.clone()
    best_loss = torch.full([x.shape[0]], float("-inf"))

    def update(xc, loss):
        nonlocal best_x, best_loss
        better = loss > best_loss
        best_x = torch.where(better.view(-1, 1, 1, 1), xc, best_x)
        best_loss = torch.where(better, loss, best_loss)

    for _ in range(steps):
        xa = x_adv.detach().requires_grad_(True)
        loss = F.cross_entropy(model(xa), y, reduction="none")
        (g,) = torch.autograd.grad(loss.sum(), [xa])
        update(x_adv, loss.detach())
        with torch.no_grad():
            x_adv = x_adv + g.sign() * alpha
            x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0.0, 1.0)
    with torch.no_grad():
        update(x_adv, F.cross_entropy(model(x_adv), y, reduction="none"))
    return best_x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bs", type=int, default=250, help="AutoAttack/PGD batch size (roli uses the same)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="advtrained", choices=["advtrained", "clntrained"])
    ap.add_argument("--pgd-steps", type=int, default=40)
    ap.add_argument("--pgd-step-size", type=float, default=0.01)
    ap.add_argument("--skip-aa", action="store_true")
    ap.add_argument("--single", choices=["apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square"],
                    help="also run this one attack through AutoAttack's custom version (1 restart; L1 uses the large-eps schedule)")
    ap.add_argument("--norm", default="Linf", choices=["Linf", "L2", "L1"], help="norm of --single")
    ap.add_argument("--single-eps", type=float, default=None, help="eps of --single (default --eps)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    c = cache_dir()
    imgs = read_idx(c / "mnist" / "t10k-images-idx3-ubyte")[: args.n]
    labels = read_idx(c / "mnist" / "t10k-labels-idx1-ubyte")[: args.n]
    x = torch.from_numpy(imgs.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    model = LeNet5(c / "advertorch" / f"mnist_lenet5_{args.model}.safetensors").eval()

    with torch.no_grad():
        clean = torch.cat([model(x[i:i + args.bs]).argmax(1) for i in range(0, args.n, args.bs)]) == y
    out = {"n": args.n, "eps": args.eps, "seed": args.seed, "batch_size": args.bs, "threads": args.threads,
           "model": args.model, "torch": torch.__version__, "clean": clean.tolist()}

    # PGD cascade with one stage: only clean-correct points, in batches of bs, each batch seeded.
    t0 = time.time()
    robust = clean.clone()
    idx = clean.nonzero().view(-1)
    for s in range(0, len(idx), args.bs):
        b = idx[s:s + args.bs]
        xa = pgd(model, x[b], y[b], args.eps, args.pgd_step_size, args.pgd_steps, args.seed)
        with torch.no_grad():
            robust[b] = model(xa).argmax(1) == y[b]
    out["pgd"] = {"steps": args.pgd_steps, "step_size": args.pgd_step_size, "robust": robust.tolist(),
                  "seconds": time.time() - t0}
    print(f"clean {clean.float().mean():.4f}  pgd-{args.pgd_steps} {robust.float().mean():.4f}  ({time.time() - t0:.1f} s)", flush=True)

    if args.single:
        eps = args.single_eps if args.single_eps is not None else args.eps
        adv = AutoAttack(model, norm=args.norm, eps=eps, version="custom", attacks=[args.single], seed=args.seed, device="cpu")
        adv.apgd.n_restarts = 1
        adv.apgd.use_largereps = adv.apgd_targeted.use_largereps = args.norm == "L1"
        t0 = time.time()
        _, y_adv = adv.run_standard_evaluation(x, y, batch_size=args.bs)
        out["single"] = {"attack": args.single, "norm": args.norm, "eps": eps, "robust": (y_adv == y).tolist(),
                         "seconds": time.time() - t0}
        print(f"{args.single} {args.norm} eps {eps}: {(y_adv == y).float().mean():.4f}", flush=True)

    if not args.skip_aa:
        stages = []

        class Recording(EvaluationState):
            """Snapshots the robust flags after each attack (the official state has only the final ones)."""

            def add_run_attack(self, attack):
                stages.append((attack, self.robust_flags.clone(), time.time()))
                print(f"  {attack}: robust {self.robust_flags.float().mean():.4f}", flush=True)
                super().add_run_attack(attack)

        aa_mod.EvaluationState = Recording
        adversary = AutoAttack(model, norm="Linf", eps=args.eps, version="standard", seed=args.seed, device="cpu")
        t0 = time.time()
        _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=args.bs)
        total = time.time() - t0
        broken_by = [None] * args.n
        prev = clean.clone()
        stage_acc, stage_sec, last_t = {}, {}, t0
        for name, flags, t in stages:
            for i in (prev & ~flags).nonzero().view(-1).tolist():
                broken_by[i] = name
            stage_acc[name] = flags.float().mean().item()
            stage_sec[name] = t - last_t
            prev, last_t = flags, t
        out["aa"] = {"version": "standard", "robust": (y_adv == y).tolist(), "broken_by": broken_by,
                     "stage_robust_accuracy": stage_acc, "stage_seconds": stage_sec, "seconds": total}
        print(f"aa-standard {(y_adv == y).float().mean():.4f} ({total:.1f} s)", flush=True)

    Path(args.out).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
