"""The PyTorch-eager side of `roli bench` (run by roli as a subprocess; not a user entry point).

usage: bench_torch.py SPEC.json

SPEC.json (written by roli, crates/roli/src/study/bench.rs) names the architecture (a timm preset
name, or explicit constructor kwargs for roli's tiny presets; LeNet-5 is written out below), the
weights roli wrote (timm parameter names, safetensors, loaded STRICTLY), the synthetic batch, the
device, the precision and the attack/training settings. The same items as roli's are timed the same
way (warm-up iterations, then timed iterations, the device synchronised before reading the clock):

  pgd10-eval        PGD-10 evaluation of the batch (eval mode, labels = the model's predictions)
  apgd-ce, apgd-t, fab-t, square
                    the official AutoAttack classes on the AA set with n_iter/n_queries = aa_iters
  pgd7-train-full   PGD-7 (eval mode, input gradients only) + training forward/backward + AdamW,
                    every tensor trains, model in train mode
  pgd7-train-lora   the same with LoRA (rank/alpha from the spec) on attention q and v; only LoRA
                    and the head train, backbone in eval mode

Forward FLOPs are counted with torch.utils.flop_counter.FlopCounterMode on this twin: per image,
for an eval forward, a forward + input gradient, and a training forward + backward. Everything
goes to stdout as ONE JSON object (the last line); logs go to stderr.
"""
import json
import math
import sys
import time
import traceback

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file


def log(*a):
    print("[bench_torch]", *a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- models


class LeNet5(nn.Module):
    """advertorch_examples.models.LeNet5 (conv 1-32-64 3x3 pad 1, 2x2 max pools, fc 200, fc K)."""

    def __init__(self, in_chans=1, conv1=32, conv2=64, hidden=200, img_size=28, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, conv1, 3, padding=1)
        self.conv2 = nn.Conv2d(conv1, conv2, 3, padding=1)
        self.linear1 = nn.Linear(conv2 * (img_size // 4) ** 2, hidden)
        self.linear2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.linear2(F.relu(self.linear1(x.reshape(x.size(0), -1))))


class Wrapped(nn.Module):
    """[0,1] input -> optional bilinear resize -> normalise -> model, like roli's Classifier."""

    def __init__(self, model, mean, std, size):
        super().__init__()
        self.model, self.size = model, size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x):
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.model((x - self.mean) / self.std)


def build_backbone(twin, num_classes):
    fam, kw = twin["family"], dict(twin.get("kwargs") or {})
    if fam == "lenet":
        return LeNet5(num_classes=num_classes, **kw)
    import timm

    if twin.get("timm_name"):
        return timm.create_model(twin["timm_name"], pretrained=False, num_classes=num_classes)
    if fam == "vit":
        from timm.models.vision_transformer import VisionTransformer

        return VisionTransformer(num_classes=num_classes, **kw)
    if fam == "swin":
        from timm.models.swin_transformer import SwinTransformer

        kw["depths"], kw["num_heads"] = tuple(kw["depths"]), tuple(kw["num_heads"])
        return SwinTransformer(num_classes=num_classes, **kw)
    if fam == "resnet":
        from timm.models.resnet import BasicBlock, Bottleneck, ResNet

        block = {"basic": BasicBlock, "bottleneck": Bottleneck}[kw.pop("block")]
        return ResNet(block=block, num_classes=num_classes, **kw)
    raise ValueError(f"unknown family {fam!r}")


def add_lora(model, rank, alpha):
    """roli's LoRA (crates/roli/src/peft/lora.rs): q += s*B_q(A_q(x)), v += s*B_v(A_v(x)), s = alpha/rank,
    on the fused attn.qkv output; tensors attn.lora_{q,v}_{a,b}. Dropout is off (the LoRA stage runs
    with the backbone and its added modules in eval mode)."""
    scale = alpha / rank
    n = 0
    for _, mod in model.named_modules():
        qkv = getattr(mod, "qkv", None)
        if not isinstance(qkv, nn.Linear):
            continue
        c = qkv.in_features
        mod.lora_q_a = nn.Parameter(torch.zeros(rank, c))
        mod.lora_q_b = nn.Parameter(torch.zeros(c, rank))
        mod.lora_v_a = nn.Parameter(torch.zeros(rank, c))
        mod.lora_v_b = nn.Parameter(torch.zeros(c, rank))

        def hook(_m, inputs, out, attn=mod, c=c):
            x = inputs[0]
            dq = (x @ attn.lora_q_a.t()) @ attn.lora_q_b.t() * scale
            dv = (x @ attn.lora_v_a.t()) @ attn.lora_v_b.t() * scale
            q, k, v = out.split(c, dim=-1)
            return torch.cat([q + dq, k, v + dv], dim=-1)

        qkv.register_forward_hook(hook)
        n += 1
    if n == 0:
        raise ValueError("LoRA needs attention blocks with a fused qkv projection")


def load_strict(model, path):
    """Every tensor of the file must be a tensor of the model and vice versa; the only exception is
    BatchNorm's num_batches_tracked counter, which roli does not keep."""
    sd = load_file(path)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise RuntimeError(f"strict load of {path}: missing {missing[:8]}, unexpected {unexpected[:8]}")
    return len(sd)


def make_model(spec, lora):
    twin = spec["twin"]
    net = build_backbone(twin, spec["num_classes"])
    if lora:
        add_lora(net, spec["lora"]["rank"], spec["lora"]["alpha"])
    m = Wrapped(net, twin["mean"], twin["std"], twin["native_size"])
    n = load_strict(m.model, spec["weights_lora" if lora else "weights_full"])
    log(f"{'lora' if lora else 'full'} model: {n} tensors loaded strictly")
    return m


# ----------------------------------------------------------------------------- helpers


class Counted:
    """The attack's model: counts forward examples and those whose input gradient is taken."""

    def __init__(self, f):
        self.f, self.fwd, self.bwd = f, 0, 0

    def __call__(self, x):
        n = int(x.shape[0])
        self.fwd += n
        if torch.is_grad_enabled() and x.requires_grad:
            self.bwd += n
        return self.f(x)


def sdpa_cpu_flops():
    """FlopCounterMode has no formula for the CPU flash-attention kernels: count them as the CUDA
    ones are (2 matmuls forward, 5 backward)."""
    from torch.utils import flop_counter as fc

    def fwd(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return fc.sdpa_flop_count(query_shape, key_shape, value_shape)

    def bwd(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)

    aten = torch.ops.aten
    m = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        m[aten._scaled_dot_product_flash_attention_for_cpu] = fwd
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        m[aten._scaled_dot_product_flash_attention_for_cpu_backward] = bwd
    return m


def set_trainable(model, names):
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)


def pgd(model, x, y, eps, alpha, steps):
    """roli's Pgd single restart: uniform random start, sign steps of summed CE, projection onto the
    ball and [0,1], per-example best iterate by CE (checked before each step and after the last)."""
    x_adv = (x + (torch.rand_like(x) * 2.0 - 1.0) * eps).clamp(0.0, 1.0)
    best_x = x_adv.clone()
    best_loss = torch.full([x.shape[0]], float("-inf"), device=x.device)

    def update(xc, loss):
        nonlocal best_x, best_loss
        better = loss > best_loss
        best_x = torch.where(better.view(-1, *([1] * (x.dim() - 1))), xc, best_x)
        best_loss = torch.where(better, loss, best_loss)

    for _ in range(steps):
        xa = x_adv.detach().requires_grad_(True)
        loss = F.cross_entropy(model(xa).float(), y, reduction="none")
        (g,) = torch.autograd.grad(loss.sum(), [xa])
        update(x_adv, loss.detach())
        with torch.no_grad():
            x_adv = x_adv + g.sign() * alpha
            x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0.0, 1.0)
    with torch.no_grad():
        update(x_adv, F.cross_entropy(model(x_adv).float(), y, reduction="none"))
    return best_x.detach()


# ----------------------------------------------------------------------------- main


def main():
    spec = json.load(open(sys.argv[1]))
    device = torch.device(spec["device"])
    torch.set_num_threads(int(spec["threads"]))
    prec = spec["precision"]
    if prec == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
    cuda = device.type == "cuda"

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=(prec == "bf16"))

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    aa_pkg, aa_missing = None, None
    try:
        import autoattack as aa_pkg  # the official package (`pip install git+…/auto-attack`)
        from autoattack.autopgd_base import APGDAttack, APGDAttack_targeted
        from autoattack.fab_pt import FABAttack_PT
        from autoattack.square import SquareAttack
    except ImportError:
        try:
            import pyautoattack as aa_pkg  # the same code as published on PyPI (pyautoattack 0.2.0)
            from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
            from pyautoattack.fab_pt import FABAttack_PT
            from pyautoattack.square import SquareAttack
        except ImportError as e:
            aa_missing = f"neither autoattack nor pyautoattack is importable ({e})"

    out = {
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "autoattack": getattr(aa_pkg, "__name__", None),
        },
        "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
        "threads": torch.get_num_threads(),
        "items": {},
        "errors": {},
    }
    try:
        import timm

        out["versions"]["timm"] = timm.__version__
    except ImportError:
        out["versions"]["timm"] = None

    batch = load_file(spec["batch_file"])
    x, y = batch["x"].to(device), batch["y"].to(device)
    x_aa, y_aa = batch["x_aa"].to(device), batch["y_aa"].to(device)
    eps, iters, warmup = spec["eps"], spec["iters"], spec["warmup"]
    items = spec["items"]

    full = make_model(spec, lora=False).to(device).eval()
    set_trainable(full, set())

    def fwd(model):
        def f(z):
            with autocast():
                return model(z).float()

        return f

    # Same model? roli's logits on the AA set against ours.
    with torch.no_grad():
        logits = fwd(full)(x_aa)
        ref = batch["logits_aa"].to(device)
        out["parity"] = {
            "max_abs_logit_diff": float((logits - ref).abs().max()),
            "max_abs_logit": float(ref.abs().max()),
            "label_agreement": float((logits.argmax(1) == y_aa).float().mean()),
        }
        y_eval = batch["y_eval"].to(device)  # roli's clean predictions on the batch
        out["parity"]["label_agreement_eval"] = float((fwd(full)(x).argmax(1) == y_eval).float().mean())
    log("parity", out["parity"])

    def timed(name, run, images, model_counter=None, train_examples=0):
        """Warm-up, then `iters` timed runs; counts taken over the timed runs only."""
        try:
            for _ in range(warmup):
                run()
            sync()
            if cuda:  # the peak of the timed iterations, as on roli's side
                torch.cuda.reset_peak_memory_stats(device)
            if model_counter is not None:
                model_counter.fwd = model_counter.bwd = 0
            t0 = time.perf_counter()
            for _ in range(iters):
                run()
            sync()
            dt = (time.perf_counter() - t0) / iters
            out["items"][name] = {
                "seconds_per_iter": dt,
                "images_per_iter": images,
                "forward_examples": (model_counter.fwd / iters) if model_counter else 0,
                "backward_examples": (model_counter.bwd / iters) if model_counter else 0,
                "train_examples": train_examples,
                "peak_memory_bytes": int(torch.cuda.max_memory_allocated(device)) if cuda else None,
            }
            log(f"{name}: {dt * 1e3:.1f} ms/iter, {images / dt:.1f} img/s")
        except Exception as e:  # noqa: BLE001 - one item failing must not lose the others
            traceback.print_exc(file=sys.stderr)
            out["errors"][name] = f"{type(e).__name__}: {e}"

    tp, ep = spec["train_pgd"], spec["eval_pgd"]
    k, targets, seed = spec["aa_iters"], spec["aa_targets"], spec["seed"]

    # (b) PGD-10 evaluation: roli's Pgd::perturb (clean prediction, one restart, final prediction).
    def pgd_eval(model):
        cm = Counted(fwd(model))

        def run():
            torch.manual_seed(seed)
            with torch.no_grad():
                robust = cm(x).argmax(1) == y_eval
            adv = pgd(cm, x, y_eval, eps, ep["step"], ep["steps"])
            with torch.no_grad():
                fooled = cm(adv).argmax(1) != y_eval
            return robust, fooled

        return cm, run

    if "pgd10-eval" in items:
        cm, run = pgd_eval(full)
        timed("pgd10-eval", run, x.shape[0], cm)

    # (c) AutoAttack stages, official classes, AutoAttack's settings (resc_schedule off for Square).
    aa_n = x_aa.shape[0]
    for name in ["apgd-ce", "apgd-t", "fab-t", "square"]:
        if name not in items:
            continue
        if aa_missing:
            out["errors"][name] = aa_missing
            continue
        cm = Counted(fwd(full))
        dev = device
        if name == "apgd-ce":
            atk = APGDAttack(cm, n_iter=k, norm="Linf", n_restarts=1, eps=eps, seed=seed, loss="ce",
                             eot_iter=1, rho=0.75, device=dev)
        elif name == "apgd-t":
            atk = APGDAttack_targeted(cm, n_iter=k, norm="Linf", n_restarts=1, eps=eps, seed=seed, eot_iter=1,
                                      rho=0.75, n_target_classes=targets, device=dev)
        elif name == "fab-t":
            atk = FABAttack_PT(cm, norm="Linf", n_restarts=1, n_iter=k, eps=eps, seed=seed, targeted=True,
                               n_target_classes=targets, device=dev)
        else:
            atk = SquareAttack(cm, p_init=0.8, n_queries=k, eps=eps, norm="Linf", n_restarts=1, seed=seed,
                               resc_schedule=False, device=dev)
        timed(name, lambda atk=atk: atk.perturb(x_aa, y_aa), aa_n, cm)

    # torch.compile on (b), when asked and when it works.
    if spec.get("compile") and "pgd10-eval" in items:
        try:
            compiled = torch.compile(full)
            cm, run = pgd_eval(compiled)
            t0 = time.perf_counter()
            run()
            sync()
            first = time.perf_counter() - t0
            timed("pgd10-eval-compiled", run, x.shape[0], cm)
            out["compile"] = {"ok": "pgd10-eval-compiled" in out["items"], "first_call_seconds": first,
                              "error": out["errors"].pop("pgd10-eval-compiled", None)}
        except Exception as e:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            out["compile"] = {"ok": False, "error": f"{type(e).__name__}: {e}"}

    # FLOPs per image on this twin (FlopCounterMode, a small batch; FLOPs are linear in the batch).
    xs, ys = x[: min(4, x.shape[0])], y[: min(4, x.shape[0])]

    def count(f):
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False, custom_mapping=sdpa_cpu_flops()) as fc:
            f()
        return fc.get_total_flops() / xs.shape[0]

    def profile(model, trainable, train_mode):
        set_trainable(model, set())
        model.eval()
        r = {}
        with torch.no_grad():
            r["forward"] = count(lambda: fwd(model)(xs))

        def input_grad():  # .backward() with every parameter frozen: only the input's gradient
            xa = xs.clone().requires_grad_(True)  # (FlopCounterMode's hooks refuse autograd.grad)
            F.cross_entropy(fwd(model)(xa), ys, reduction="sum").backward()

        r["input_grad"] = count(input_grad)
        set_trainable(model, trainable)
        model.train(train_mode)

        def train():
            F.cross_entropy(fwd(model)(xs), ys).backward()

        r["train"] = count(train)
        model.zero_grad(set_to_none=True)
        set_trainable(model, set())
        model.eval()
        return r

    flops = {}
    try:
        flops["full"] = profile(full, {n for n, _ in full.named_parameters()}, True)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        out["errors"]["flops"] = f"{type(e).__name__}: {e}"

    # (a) adversarial training steps (after the evaluations: they change the weights).
    def train_item(name, model, trainable, train_mode):
        set_trainable(model, trainable)
        decay = [p for n, p in model.named_parameters() if n in trainable and "bias" not in n]
        no_decay = [p for n, p in model.named_parameters() if n in trainable and "bias" in n]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": spec["weight_decay"]},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=spec["lr"], betas=(0.9, 0.999), eps=1e-6)
        cm = Counted(fwd(model))

        def run():
            model.eval()
            adv = pgd(cm, x, y, eps, tp["step"], tp["steps"])
            model.train(train_mode)
            with autocast():
                logits = model(adv).float()
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()

        timed(name, run, x.shape[0], cm, train_examples=x.shape[0])
        model.eval()

    if "pgd7-train-full" in items:
        train_item("pgd7-train-full", full, {n for n, _ in full.named_parameters()}, True)
    del full
    if "pgd7-train-lora" in items:
        try:
            lora = make_model(spec, lora=True).to(device).eval()
            head = spec["twin"]["classifier"] + "."
            trainable = {n for n, _ in lora.named_parameters() if "lora_" in n or n.startswith("model." + head)}
            try:
                flops["lora"] = profile(lora, trainable, False)
            except Exception as e:  # noqa: BLE001
                traceback.print_exc(file=sys.stderr)
                out["errors"]["flops-lora"] = f"{type(e).__name__}: {e}"
            train_item("pgd7-train-lora", lora, trainable, False)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            out["errors"]["pgd7-train-lora"] = f"{type(e).__name__}: {e}"

    out["flops_per_image"] = flops
    out["flop_source"] = "torch.utils.flop_counter.FlopCounterMode"
    for v in out["items"].values():
        for key in ("seconds_per_iter", "forward_examples", "backward_examples"):
            if not math.isfinite(v[key]):
                v[key] = None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
