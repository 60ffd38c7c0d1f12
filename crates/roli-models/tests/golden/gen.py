"""Golden data for roli-models' parity tests (run by the Rust tests; not committed output).

usage: gen.py OUT_DIR tiny            tiny random-weight timm models + TorchScript exports
       gen.py OUT_DIR lenet CACHE_DIR advertorch LeNet-5 on MNIST test images (needs the cache)
       gen.py OUT_DIR full            full-size Swin-B / ViT-B random checkpoints (slow test)
       gen.py OUT_DIR vpt             tiny ViT / Swin with VPT-deep prompts (timm + prompt insertion)

For every case NAME it writes NAME.safetensors or NAME.pth (the weights, in the format under
test) and NAME_io.safetensors with x (inputs in [0,1]), w (loss weights), logits and grad =
d(sum(logits * w))/dx, all float32, computed in eval mode on the [0,1]-input classifier
(normalisation inside, as roli does). Seeds are fixed, so reruns give identical files.
"""
import gzip
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
torch.set_num_threads(1)
OUT = sys.argv[1]
MODE = sys.argv[2]
os.makedirs(OUT, exist_ok=True)


class Wrapped(nn.Module):
    """[0,1] input -> optional resize -> normalise -> model, like roli's Classifier."""

    def __init__(self, model, mean, std, size=None):
        super().__init__()
        self.model, self.size = model, size
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        if self.size is not None and x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.model((x - self.mean) / self.std)


def randomise(model, scale=0.05):
    """Perturb every parameter/buffer so that biases, norms and tables all matter."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * scale
            if "relative_position_bias_table" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif ("norm" in n or ".bn" in n or n.startswith("bn")) and n.endswith("weight"):
                p.copy_(1.0 + noise)
            elif p.dim() == 1:
                p.copy_(noise)
            else:
                p.add_(noise)
        for n, b in model.named_buffers():
            if n.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif n.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


def io_case(name, wrapped, x, extra=None):
    wrapped.eval()
    x = x.clone().requires_grad_(True)
    logits = wrapped(x)
    w = torch.randn(logits.shape, generator=torch.Generator().manual_seed(2))
    (grad,) = torch.autograd.grad((logits * w).sum(), x)
    t = {"x": x.detach(), "w": w, "logits": logits.detach(), "grad": grad}
    if extra:
        t.update(extra)
    save_file({k: v.contiguous().float() for k, v in t.items()}, os.path.join(OUT, f"{name}_io.safetensors"))


def sd_of(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def tiny():
    import timm
    from timm.models.resnet import BasicBlock, Bottleneck, ResNet
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer import VisionTransformer

    mnist = ([0.1307], [0.3081])
    imnet = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    meta = {"timm": timm.__version__, "torch": torch.__version__}

    # Swin micro (= roli preset swin_micro_patch2_window4_32), 5 classes
    swin = SwinTransformer(img_size=32, patch_size=2, in_chans=1, embed_dim=32, depths=(2, 2, 2),
                           num_heads=(2, 4, 8), window_size=4, num_classes=5)
    randomise(swin)
    sd = sd_of(swin)
    save_file(sd, os.path.join(OUT, "swin_micro.safetensors"))
    x = torch.rand(3, 1, 28, 28)  # resized 28 -> 32 inside, as roli's Classifier with resize
    io_case("swin_micro", Wrapped(swin, *mnist, size=32), x)
    # the same weights in the legacy (official Swin / timm<0.9) layout, with its buffers,
    # inside {"model": ...} as RoLI's / fvcore's checkpoints are, saved with torch.save
    legacy = {}
    for k, v in sd.items():
        if k.startswith("head.fc."):
            k = "head." + k[len("head.fc."):]
        parts = k.split(".")
        if len(parts) > 2 and parts[0] == "layers" and parts[2] == "downsample":
            parts[1] = str(int(parts[1]) - 1)
            k = ".".join(parts)
        legacy[k] = v
    for k, v in swin.named_buffers():
        if k.endswith("relative_position_index") or (k.endswith("attn_mask") and v is not None):
            legacy[k] = v.clone()
    torch.save({"model": legacy, "epoch": 3, "meta": {"note": "fvcore-like"}}, os.path.join(OUT, "swin_micro_legacy.pth"))
    meta["swin_legacy_buffers"] = sorted(k for k in legacy if "relative_position_index" in k or "attn_mask" in k)

    # ViT micro (= vit_micro_patch4_32), in {"state_dict": ...} with a DataParallel prefix
    vit = VisionTransformer(img_size=32, patch_size=4, in_chans=1, embed_dim=64, depth=6, num_heads=4, num_classes=5)
    randomise(vit)
    sd = sd_of(vit)
    save_file(sd, os.path.join(OUT, "vit_micro.safetensors"))
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "optimizer": {"lr": 0.1}},
               os.path.join(OUT, "vit_micro_wrapped.pth"))
    io_case("vit_micro", Wrapped(vit, *mnist), torch.rand(3, 1, 32, 32))

    # tiny ResNets (timm names), flat torch.save state dicts incl. num_batches_tracked
    for name, block in [("resnet_basic", BasicBlock), ("resnet_bottleneck", Bottleneck)]:
        net = ResNet(block=block, layers=(1, 1, 1, 1), channels=(8, 16, 32, 64), in_chans=3, num_classes=5)
        randomise(net)
        torch.save(sd_of(net), os.path.join(OUT, f"{name}.pth"))
        io_case(name, Wrapped(net, *imnet), torch.rand(2, 3, 32, 32))
        if block is BasicBlock:
            # bring-your-own TorchScript: a feature extractor and a whole classifier
            class Feats(nn.Module):
                def __init__(self, m):
                    super().__init__()
                    self.m = m

                def forward(self, x):
                    return self.m.forward_head(self.m.forward_features(x), pre_logits=True)

            net.eval()
            feats = torch.jit.trace(Feats(net), torch.rand(2, 3, 32, 32))
            feats.save(os.path.join(OUT, "script_features.pt"))
            clf = torch.jit.trace(Wrapped(net, *imnet), torch.rand(2, 3, 32, 32))
            clf.save(os.path.join(OUT, "script_logits.pt"))
            xs = torch.rand(2, 3, 32, 32)
            with torch.no_grad():
                f = Feats(net)((xs - torch.tensor(imnet[0]).view(1, -1, 1, 1)) / torch.tensor(imnet[1]).view(1, -1, 1, 1))
            io_case("script_logits", Wrapped(net, *imnet), xs, {"features": f})
    with open(os.path.join(OUT, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=1)


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


def lenet(cache):
    from safetensors.torch import load_file

    class LeNet5(nn.Module):  # advertorch_examples.models.LeNet5
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
            self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
            self.linear1 = nn.Linear(7 * 7 * 64, 200)
            self.linear2 = nn.Linear(200, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            return self.linear2(F.relu(self.linear1(x.view(x.size(0), -1))))

    net = LeNet5()
    net.load_state_dict(load_file(os.path.join(cache, "advertorch", "mnist_lenet5_advtrained.safetensors")))
    imgs = read_idx(os.path.join(cache, "mnist", "t10k-images-idx3-ubyte"))[:64]
    x = imgs.float().div(255).unsqueeze(1)
    io_case("lenet_adv", Wrapped(net, [0.0], [1.0]), x)


def full():
    import timm
    counts = {}
    for name in ["swin_base_patch4_window7_224", "vit_base_patch16_224"]:
        m = timm.create_model(name, pretrained=False, num_classes=10)
        head = "head.fc." if name.startswith("swin") else "head."
        counts[name] = {"backbone": sum(p.numel() for n, p in m.named_parameters() if not n.startswith(head)),
                        "with_1000_head": sum(p.numel() for n, p in m.named_parameters() if not n.startswith(head)) + m.num_features * 1000 + 1000}
        save_file(sd_of(m), os.path.join(OUT, f"{name}.safetensors"))
        io_case(name, Wrapped(m, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), torch.rand(1, 3, 224, 224))
    with open(os.path.join(OUT, "full_counts.json"), "w") as fh:
        json.dump(counts, fh, indent=1)


def vpt():
    """VPT-deep on the tiny timm ViT and Swin, written from VPT's description (KMnP/vpt,
    src/models/vit_prompt/{vit,swin_transformer}.py): prompts after the cls token (ViT) or in
    front of the tokens (Swin), replaced before every block but the first. The Swin follows
    VPT's data flow literally, including its window-major pairing of prompts with windows.
    Writes NAME.safetensors (timm weights + prompt tensors under roli's names) and
    NAME_io.safetensors (x, w, logits, grad, and grad_<prompt> = d(sum(logits*w))/d prompt)."""
    import math
    from timm.models.swin_transformer import SwinTransformer, window_partition, window_reverse
    from timm.models.vision_transformer import VisionTransformer

    mnist = ([0.1307], [0.3081])
    T = 3

    def prompts(shapes, patch, dim):
        g = torch.Generator().manual_seed(3)
        v = math.sqrt(6.0 / (3 * patch * patch + dim))
        return {n: ((torch.rand(s, generator=g) * 2 - 1) * v).requires_grad_(True) for n, s in shapes}

    def save_case(name, model, forward, ps, x):
        model.eval()
        save_file({**sd_of(model), **{k: v.detach().contiguous() for k, v in ps.items()}},
                  os.path.join(OUT, f"{name}.safetensors"))
        x = x.clone().requires_grad_(True)
        mean, std = (torch.tensor(t).view(1, -1, 1, 1) for t in mnist)
        logits = forward((x - mean) / std)
        w = torch.randn(logits.shape, generator=torch.Generator().manual_seed(2))
        names = sorted(ps)
        grads = torch.autograd.grad((logits * w).sum(), [x] + [ps[n] for n in names])
        t = {"x": x.detach(), "w": w, "logits": logits.detach(), "grad": grads[0]}
        t.update({f"grad_{n}": g for n, g in zip(names, grads[1:])})
        save_file({k: v.contiguous().float() for k, v in t.items()}, os.path.join(OUT, f"{name}_io.safetensors"))

    # ViT micro: [cls, prompts, patches]; before block i >= 1 tokens 1..T <- deep row i-1
    vit = VisionTransformer(img_size=32, patch_size=4, in_chans=1, embed_dim=64, depth=6, num_heads=4, num_classes=5)
    randomise(vit)
    vp = prompts([("prompt_embeddings", (1, T, 64)), ("deep_prompt_embeddings", (5, T, 64))], 4, 64)

    def vit_forward(x):
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
        B = x.shape[0]
        x = torch.cat([x[:, :1], vp["prompt_embeddings"].expand(B, -1, -1), x[:, 1:]], 1)
        for i, blk in enumerate(vit.blocks):
            if i > 0:
                x = torch.cat([x[:, :1], vp["deep_prompt_embeddings"][i - 1].expand(B, -1, -1), x[:, 1 + T:]], 1)
            x = blk(x)
        return vit.forward_head(vit.norm(x))

    save_case("vit_micro_vpt", vit, vit_forward, vp, torch.rand(3, 1, 32, 32))

    # Swin micro: sequences [B, T + H*W, C] as in VPT
    swin = SwinTransformer(img_size=32, patch_size=2, in_chans=1, embed_dim=32, depths=(2, 2, 2),
                           num_heads=(2, 4, 8), window_size=4, num_classes=5)
    randomise(swin)
    sp = prompts([("prompt_embeddings", (1, T, 32)), ("deep_prompt_embeddings_0", (1, T, 32)),
                  ("deep_prompt_embeddings_1", (2, T, 64)), ("deep_prompt_embeddings_2", (2, T, 128))], 2, 32)

    def window_attention(a, x, mask):
        B_, N, C = x.shape
        q, k, v = a.qkv(x).reshape(B_, N, 3, a.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * a.scale) @ k.transpose(-2, -1)
        bias = a._get_rel_pos_bias()[0]  # nH, n, n: zero rows/columns for the prompts
        attn = attn + F.pad(bias, (T, 0, T, 0)).unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            attn = attn.view(-1, nW, a.num_heads, N, N) + F.pad(mask, (T, 0, T, 0)).unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, a.num_heads, N, N)
        x = (attn.softmax(-1) @ v).transpose(1, 2).reshape(B_, N, C)
        return a.proj(x)

    def block(blk, x, H, W):
        B, L, C = x.shape
        shortcut = x
        x = blk.norm1(x)
        p, x = x[:, :T], x[:, T:].reshape(B, H, W, C)
        sh = blk.shift_size
        if any(sh):
            x = torch.roll(x, shifts=(-sh[0], -sh[1]), dims=(1, 2))
        win = window_partition(x, blk.window_size).view(-1, blk.window_area, C)
        nW = win.shape[0] // B
        p = p.unsqueeze(0).expand(nW, -1, -1, -1).reshape(nW * B, T, C)  # VPT's pairing
        out = window_attention(blk.attn, torch.cat([p, win], 1), blk.attn_mask)
        p = out[:, :T].reshape(nW, B, T, C).mean(0)
        x = window_reverse(out[:, T:].reshape(-1, *blk.window_size, C), blk.window_size, H, W)
        if any(sh):
            x = torch.roll(x, shifts=sh, dims=(1, 2))
        x = shortcut + torch.cat([p, x.reshape(B, H * W, C)], 1)
        return x + blk.mlp(blk.norm2(x))

    def swin_forward(x):
        x = swin.patch_embed(x)
        B, H, W, C = x.shape
        x = torch.cat([sp["prompt_embeddings"].expand(B, -1, -1), x.reshape(B, H * W, C)], 1)
        for i, stage in enumerate(swin.layers):
            if i > 0:  # VPT's PromptedPatchMerging: prompts tiled x4, then the merge LN + Linear
                d = stage.downsample
                p, img = x[:, :T], x[:, T:].reshape(B, H, W, C)
                img = img.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)
                H, W = H // 2, W // 2
                x = torch.cat([torch.cat([p] * 4, -1), img.reshape(B, H * W, 4 * C)], 1)
                x = d.reduction(d.norm(x))
                C = x.shape[-1]
            deep = sp[f"deep_prompt_embeddings_{i}"]
            for j, blk in enumerate(stage.blocks):
                if i > 0 or j > 0:
                    x = torch.cat([deep[j - 1 if i == 0 else j].expand(B, -1, -1), x[:, T:]], 1)
                x = block(blk, x, H, W)
        return swin.head.fc(swin.norm(x).mean(1))  # pooled over prompts and tokens, as VPT

    save_case("swin_micro_vpt", swin, swin_forward, sp, torch.rand(3, 1, 32, 32))


if MODE == "tiny":
    tiny()
elif MODE == "lenet":
    lenet(sys.argv[3])
elif MODE == "full":
    full()
elif MODE == "vpt":
    vpt()
else:
    sys.exit(f"unknown mode {MODE}")
