//! Swin Transformer (Liu et al., ICCV 2021, arXiv 2103.14030) with timm ≥ 0.9 parameter names
//! (timm `models/swin_transformer.py`): window attention with a relative position bias,
//! shifted windows with the −100 attention mask, patch merging at the *start* of stages 1…,
//! final LayerNorm and mean pooling over tokens. Activations are NHWC between stages as in timm.
//!
//! Legacy checkpoints (official Microsoft code as vendored by VPT/RoLI, timm < 0.9) keep
//! `layers.i.downsample` at the *end* of stage i and name the classifier `head`; they load with
//! [`SourceLayout::SwinLegacy`] through [`legacy_key`]. The buffers `relative_position_index`
//! and `attn_mask` are computed here and only compared against checkpoint copies.
//!
//! With a VPT spec ([`crate::prompt`]) the prompt tokens travel beside the `[B, H, W, C]` map
//! as `[B, T, C]`: norms, residuals, MLP and drop-path see the reference's `[prompts, tokens]`
//! sequence, window attention prepends them to every window, patch merging tiles them ×4.
//!
//! Window attention is explicit (the reference) or one fused kernel ([`crate::attention`],
//! `SwinConfig::attention`) that takes bias + shift mask as its additive `attn_mask`.
//!
//! Weights: ARES 2.0 adversarially trained Swin-B (RobustBench `Liu2023Comprehensive_Swin-B`),
//! Microsoft's ImageNet Swin-B; neither is bundled.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

use crate::attention::{self, AttentionImpl};
use crate::backbone::{default_native_fate, Backbone, KeyFate, SourceLayout};
use crate::descriptor::BackboneDescriptor;
use crate::layers::{self, drop_path, Mlp};
use crate::peft::{AttnHook, BlockSite, MlpHook, PeftSpec};
use crate::prompt::Prompts;

/// LayerNorm epsilon of every Swin norm (PyTorch default).
const SWIN_LN_EPS: f64 = 1e-5;
/// Additive attention mask between tokens of different regions in a shifted window.
const SHIFT_MASK_VALUE: f64 = -100.0;

/// Swin hyper-parameters (timm `SwinTransformer` arguments).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwinConfig {
    /// Square input size in pixels.
    pub img_size: i64,
    /// Patch size of the patch-embedding convolution.
    pub patch_size: i64,
    /// Input channels.
    pub in_chans: i64,
    /// Width of stage 0; doubles at each patch merging.
    pub embed_dim: i64,
    /// Blocks per stage.
    pub depths: Vec<i64>,
    /// Attention heads per stage.
    pub num_heads: Vec<i64>,
    /// Target window size (reduced to the stage resolution where that is smaller).
    pub window_size: i64,
    /// MLP hidden width / token width.
    pub mlp_ratio: f64,
    /// Bias on the qkv projection.
    pub qkv_bias: bool,
    /// Maximum stochastic-depth rate (linearly increasing over blocks).
    pub drop_path_rate: f64,
    /// Attention implementation (explicit or fused, same results); left out of the JSON when
    /// explicit, so sidecars written before the option load unchanged and explicit models
    /// write the same JSON as before.
    #[serde(default, skip_serializing_if = "AttentionImpl::is_explicit")]
    pub attention: AttentionImpl,
}

impl SwinConfig {
    /// Swin-B @ 224 (`swin_base_patch4_window7_224`), the RoLI backbone.
    pub fn base_patch4_window7_224() -> Self {
        SwinConfig {
            img_size: 224,
            patch_size: 4,
            in_chans: 3,
            embed_dim: 128,
            depths: vec![2, 2, 18, 2],
            num_heads: vec![4, 8, 16, 32],
            window_size: 7,
            mlp_ratio: 4.0,
            qkv_bias: true,
            drop_path_rate: 0.0,
            attention: AttentionImpl::Explicit,
        }
    }

    /// A ~0.5 M-parameter Swin for 32-px 1-channel inputs (MNIST after a 28→32 resize):
    /// patch 2 → 16×16 tokens, window 4, stages 16/8/4 px with widths 32/64/128.
    pub fn micro_patch2_window4_32() -> Self {
        SwinConfig {
            img_size: 32,
            patch_size: 2,
            in_chans: 1,
            embed_dim: 32,
            depths: vec![2, 2, 2],
            num_heads: vec![2, 4, 8],
            window_size: 4,
            mlp_ratio: 4.0,
            qkv_bias: true,
            drop_path_rate: 0.0,
            attention: AttentionImpl::Explicit,
        }
    }

    /// A ~0.1 M-parameter Swin for 28-px 1-channel inputs (MNIST-family at native size): patch 2
    /// → 14×14 tokens in 2×2 windows of 7 (shifted every other block), then one merge to 7×7
    /// (a single window, no shift); widths 32/64.
    pub fn nano_patch2_window7_28() -> Self {
        SwinConfig {
            img_size: 28,
            patch_size: 2,
            in_chans: 1,
            embed_dim: 32,
            depths: vec![2, 2],
            num_heads: vec![2, 4],
            window_size: 7,
            mlp_ratio: 4.0,
            qkv_bias: true,
            drop_path_rate: 0.0,
            attention: AttentionImpl::Explicit,
        }
    }

    /// Width after the last stage.
    pub fn num_features(&self) -> i64 {
        self.embed_dim << (self.depths.len().saturating_sub(1))
    }

    fn stage_dim(&self, i: usize) -> i64 {
        self.embed_dim << i
    }

    fn stage_resolution(&self, i: usize) -> i64 {
        (self.img_size / self.patch_size) >> i
    }

    /// Effective (window, shift) at a stage resolution: timm and the official code shrink the
    /// window to the resolution and disable the shift when the resolution fits in one window.
    fn window_and_shift(&self, resolution: i64, shifted: bool) -> (i64, i64) {
        let window = resolution.min(self.window_size);
        let shift = if !shifted || resolution <= window { 0 } else { self.window_size / 2 };
        (window, shift)
    }

    /// Checks the sizes fit together (no padding paths are implemented).
    pub fn validate(&self) -> Result<(), String> {
        if self.depths.is_empty() || self.depths.len() != self.num_heads.len() {
            return Err(format!(
                "depths ({:?}) and num_heads ({:?}) must be non-empty and of equal length",
                self.depths, self.num_heads
            ));
        }
        // Before the divisions below (a model.json with window_size 0 or a 0-head stage panicked).
        if self.window_size < 1 || self.embed_dim < 1 || self.num_heads.iter().any(|&h| h < 1) || self.depths.len() > 8
        {
            return Err(format!(
                "window_size ({}), embed_dim ({}) and num_heads ({:?}) must be ≥ 1, with at most 8 stages",
                self.window_size, self.embed_dim, self.num_heads
            ));
        }
        if self.patch_size < 1 || self.img_size % self.patch_size != 0 {
            return Err(format!("img_size {} must be a multiple of patch_size {}", self.img_size, self.patch_size));
        }
        for i in 0..self.depths.len() {
            let res = self.stage_resolution(i);
            if i > 0 && (self.stage_resolution(i - 1) % 2 != 0) {
                return Err(format!(
                    "stage {} input resolution {} is odd; patch merging needs even sizes",
                    i,
                    self.stage_resolution(i - 1)
                ));
            }
            let (w, _) = self.window_and_shift(res, false);
            if res < 1 || res % w != 0 {
                return Err(format!("stage {i} resolution {res} is not a multiple of window {w}; choose img_size/patch_size/window_size so it is"));
            }
            if self.stage_dim(i) % self.num_heads[i] != 0 {
                return Err(format!(
                    "stage {i} width {} is not divisible by {} heads",
                    self.stage_dim(i),
                    self.num_heads[i]
                ));
            }
        }
        Ok(())
    }
}

/// `relative_position_index` for a `w×w` window: `[w², w²]` indices into the `(2w−1)²` table.
pub fn relative_position_index(w: i64) -> Vec<i64> {
    let n = w * w;
    let mut out = Vec::with_capacity((n * n) as usize);
    for i in 0..n {
        for j in 0..n {
            let dh = i / w - j / w + (w - 1);
            let dw = i % w - j % w + (w - 1);
            out.push(dh * (2 * w - 1) + dw);
        }
    }
    out
}

/// Shifted-window attention mask `[nW, w², w²]` for an `r×r` map, window `w`, shift `s`:
/// 0 within a region, −100 across the regions created by the cyclic shift.
pub fn shifted_window_mask(r: i64, w: i64, s: i64) -> Vec<f32> {
    let bounds = |x: i64| -> usize {
        // region id along one axis: [0, r−w) → 0, [r−w, r−s) → 1, [r−s, r) → 2
        if x < r - w {
            0
        } else if x < r - s {
            1
        } else {
            2
        }
    };
    let nw = r / w;
    let mut out = Vec::with_capacity((nw * nw * w * w * w * w) as usize);
    for wh in 0..nw {
        for ww in 0..nw {
            let ids: Vec<usize> = (0..w * w).map(|t| bounds(wh * w + t / w) * 3 + bounds(ww * w + t % w)).collect();
            for a in &ids {
                for b in &ids {
                    out.push(if a == b { 0.0 } else { SHIFT_MASK_VALUE as f32 });
                }
            }
        }
    }
    out
}

#[derive(Debug)]
struct PatchEmbed {
    proj: nn::Conv2D,
    norm: nn::LayerNorm,
}

#[derive(Debug)]
struct WindowAttention {
    qkv: nn::Linear,
    proj: nn::Linear,
    relative_position_bias_table: Tensor,
    relative_position_index: Tensor,
    num_heads: i64,
    scale: f64,
    imp: AttentionImpl,
    hook: Option<Box<dyn AttnHook>>,
}

impl WindowAttention {
    fn new(
        p: &nn::Path,
        dim: i64,
        num_heads: i64,
        window: i64,
        qkv_bias: bool,
        imp: AttentionImpl,
        hook: Option<Box<dyn AttnHook>>,
    ) -> Self {
        let table = p.var(
            "relative_position_bias_table",
            &[(2 * window - 1) * (2 * window - 1), num_heads],
            nn::Init::Randn { mean: 0.0, stdev: layers::TRANSFORMER_LINEAR_STD },
        );
        let index = Tensor::from_slice(&relative_position_index(window))
            .view([window * window, window * window])
            .to_device(p.device());
        WindowAttention {
            qkv: layers::linear(p / "qkv", dim, 3 * dim, qkv_bias),
            proj: layers::linear(p / "proj", dim, dim, true),
            relative_position_bias_table: table,
            relative_position_index: index,
            num_heads,
            scale: ((dim / num_heads) as f64).powf(-0.5),
            imp,
            hook,
        }
    }

    /// `x`: `[B·nW, N, C]` windows whose first `prompts` tokens are VPT prompts; `mask`:
    /// `[nW, N−prompts, N−prompts]` for shifted blocks. Prompt rows and columns get zero
    /// relative-position bias and zero mask (VPT's `PromptedWindowAttention`).
    ///
    /// The fused path passes the same sum, bias (+ mask), as one additive `attn_mask`
    /// `[1 | B·nW, heads, N, N]`; with a shift mask it is materialised per window (4-D inputs
    /// keep the flash / memory-efficient CUDA kernels eligible).
    fn forward(&self, x: &Tensor, mask: Option<&Tensor>, prompts: i64, train: bool) -> Tensor {
        let (b, n, c) = x.size3().expect("window tokens are 3-D");
        let mut qkv = self.qkv.forward(x);
        if let Some(h) = &self.hook {
            qkv = h.qkv(x, qkv, train);
        }
        let qkv = qkv.reshape([b, n, 3, self.num_heads, -1]).permute([2, 0, 3, 1, 4]);
        let t = prompts;
        let pad = |x: Tensor| {
            if t > 0 {
                x.constant_pad_nd([t, 0, t, 0])
            } else {
                x
            }
        };
        let bias = self
            .relative_position_bias_table
            .index_select(0, &self.relative_position_index.view([-1]))
            .view([n - t, n - t, -1])
            .permute([2, 0, 1]);
        let out = match self.imp {
            AttentionImpl::Explicit => {
                let (q, k, v) = (qkv.get(0) * self.scale, qkv.get(1), qkv.get(2));
                let mut attn = q.matmul(&k.transpose(-2, -1)) + pad(bias).unsqueeze(0);
                if let Some(m) = mask {
                    let nw = m.size()[0];
                    attn = (attn.view([-1, nw, self.num_heads, n, n])
                        + pad(m.shallow_clone()).unsqueeze(1).unsqueeze(0))
                    .view([-1, self.num_heads, n, n]);
                }
                layers::softmax_last(&attn).matmul(&v)
            }
            AttentionImpl::Fused => {
                let mut add = pad(bias).unsqueeze(0);
                if let Some(m) = mask {
                    let nw = m.size()[0];
                    add = (add + pad(m.shallow_clone()).unsqueeze(1))
                        .unsqueeze(0)
                        .expand([b / nw, nw, self.num_heads, n, n], false)
                        .reshape([b, self.num_heads, n, n]);
                }
                attention::fused(&qkv.get(0), &qkv.get(1), &qkv.get(2), Some(&add), self.scale)
            }
        };
        self.proj.forward(&out.transpose(1, 2).reshape([b, n, c]))
    }
}

#[derive(Debug)]
struct SwinBlock {
    norm1: nn::LayerNorm,
    attn: WindowAttention,
    norm2: nn::LayerNorm,
    mlp: Mlp,
    window: i64,
    shift: i64,
    attn_mask: Option<Tensor>,
    drop_path: f64,
    mlp_hook: Option<Box<dyn MlpHook>>,
}

/// The token sequence `[prompts, map]`, `[B, T + H·W, C]` (just the map when there are no
/// prompts).
fn sequence(map: &Tensor, prompts: Option<&Tensor>) -> Tensor {
    let (b, _, _, c) = map.size4().expect("NHWC tokens");
    let flat = map.reshape([b, -1, c]);
    match prompts {
        Some(p) => Tensor::cat(&[p.shallow_clone(), flat], 1),
        None => flat,
    }
}

impl SwinBlock {
    /// `x`: `[B, H, W, C]`; `prompts`: `[B, T, C]` VPT tokens (or none). Returns both, updated.
    fn forward(&self, x: &Tensor, prompts: Option<&Tensor>, train: bool) -> (Tensor, Option<Tensor>) {
        let (b, h, w, c) = x.size4().expect("NHWC tokens");
        let pn = prompts.map(|p| self.norm1.forward(p));
        let (y, py) = self.attn_windows(&self.norm1.forward(x), pn.as_ref(), train);
        let x = sequence(x, prompts) + drop_path(&sequence(&y, py.as_ref()), self.drop_path, train);
        let mut m = drop_path(&self.mlp.forward_t(&self.norm2.forward(&x), train), self.drop_path, train);
        if let Some(hk) = &self.mlp_hook {
            m = hk.mlp_out(m, train);
        }
        let x = x + m;
        match prompts {
            Some(p) => {
                let t = p.size()[1];
                (x.narrow(1, t, h * w).reshape([b, h, w, c]), Some(x.narrow(1, 0, t)))
            }
            None => (x.reshape([b, h, w, c]), None),
        }
    }

    /// (Shifted) window attention of the normalised map `x`; the normalised `prompts`
    /// `[B, T, C]` are prepended to each of the sample's windows and their outputs averaged
    /// over those windows.
    ///
    /// Deviation: VPT pairs window `b·nW + w` with the prompts of sample `(b·nW + w) mod B`
    /// (window-major expand against batch-major windows) and averages the same way, which
    /// mixes samples whenever the prompts differ between samples; here each sample's windows
    /// get its own prompts, so a sample's output does not depend on its batch. In VPT-deep the
    /// two agree except (a) block 0 under prompt dropout (per-sample masks, training only) and
    /// (b) a last stage with more than one window (not Swin-B at 224: 7×7, window 7), because
    /// every other block's prompt inputs are the same for all samples and its prompt outputs
    /// are replaced. gen.py's `vpt` golden data uses VPT's pairing; parity holds at 0 error.
    fn attn_windows(&self, x: &Tensor, prompts: Option<&Tensor>, train: bool) -> (Tensor, Option<Tensor>) {
        let (b, h, w, c) = x.size4().expect("NHWC tokens");
        let ws = self.window;
        let s = self.shift;
        let shifted = if s > 0 { x.roll([-s, -s], [1, 2]) } else { x.shallow_clone() };
        let windows =
            shifted.view([b, h / ws, ws, w / ws, ws, c]).permute([0, 1, 3, 2, 4, 5]).reshape([-1, ws * ws, c]);
        let nw = (h / ws) * (w / ws);
        let t = prompts.map_or(0, |p| p.size()[1]);
        let windows = match prompts {
            Some(p) => {
                let pw = p.unsqueeze(1).expand([b, nw, t, c], false).reshape([b * nw, t, c]);
                Tensor::cat(&[pw, windows], 1)
            }
            None => windows,
        };
        let out = self.attn.forward(&windows, self.attn_mask.as_ref(), t, train);
        let prompts_out =
            prompts.map(|_| out.narrow(1, 0, t).view([b, nw, t, c]).mean_dim([1i64].as_slice(), false, out.kind()));
        let merged = out
            .narrow(1, t, ws * ws)
            .reshape([b, h / ws, w / ws, ws, ws, c])
            .permute([0, 1, 3, 2, 4, 5])
            .reshape([b, h, w, c]);
        let merged = if s > 0 { merged.roll([s, s], [1, 2]) } else { merged };
        (merged, prompts_out)
    }
}

#[derive(Debug)]
struct PatchMerging {
    norm: nn::LayerNorm,
    reduction: nn::Linear,
}

impl PatchMerging {
    /// `[B, H, W, C]` → `[B, H/2, W/2, 2C]`; the 2×2 neighbours are concatenated in the official
    /// order (h0w0, h1w0, h0w1, h1w1).
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, h, w, c) = x.size4().expect("NHWC tokens");
        let x = x.reshape([b, h / 2, 2, w / 2, 2, c]).permute([0, 1, 3, 4, 2, 5]).flatten(3, -1);
        self.reduction.forward(&self.norm.forward(&x))
    }

    /// VPT prompts `[B, T, C]` → `[B, T, 2C]`: tiled ×4 along channels in place of the 2×2
    /// neighbours, then the same LayerNorm and reduction.
    fn forward_prompts(&self, p: &Tensor) -> Tensor {
        let tiled = Tensor::cat(&[p, p, p, p], -1);
        self.reduction.forward(&self.norm.forward(&tiled))
    }
}

#[derive(Debug)]
struct SwinStage {
    downsample: Option<PatchMerging>,
    blocks: Vec<SwinBlock>,
}

/// A Swin Transformer feature extractor.
#[derive(Debug)]
pub struct Swin {
    descriptor: BackboneDescriptor,
    patch_embed: PatchEmbed,
    layers: Vec<SwinStage>,
    norm: nn::LayerNorm,
    prompts: Option<Prompts>,
}

impl Swin {
    /// Builds the model under `p` (timm names relative to `p`), calling `peft` once per block.
    /// The configuration must have been validated.
    pub(crate) fn new(p: &nn::Path, descriptor: BackboneDescriptor, config: SwinConfig, peft: &dyn PeftSpec) -> Self {
        let dev = p.device();
        let pe = p / "patch_embed";
        let fan_in = config.in_chans * config.patch_size * config.patch_size;
        let proj = nn::conv2d(
            &pe / "proj",
            config.in_chans,
            config.embed_dim,
            config.patch_size,
            nn::ConvConfig {
                stride: config.patch_size,
                ws_init: layers::torch_default_uniform(fan_in),
                bs_init: layers::torch_default_uniform(fan_in),
                ..Default::default()
            },
        );
        let patch_embed = PatchEmbed { proj, norm: layers::layer_norm(&pe / "norm", config.embed_dim, SWIN_LN_EPS) };
        let total: i64 = config.depths.iter().sum();
        let dpr = layers::drop_path_schedule(config.drop_path_rate, total as usize);
        let mut block_idx = 0usize;
        let mut stages = Vec::new();
        for (i, (&depth, &heads)) in config.depths.iter().zip(&config.num_heads).enumerate() {
            let sp = p / "layers" / i;
            let dim = config.stage_dim(i);
            let downsample = (i > 0).then(|| {
                let dp = &sp / "downsample";
                PatchMerging {
                    norm: layers::layer_norm(&dp / "norm", 2 * dim, SWIN_LN_EPS),
                    reduction: layers::linear(&dp / "reduction", 2 * dim, dim, false),
                }
            });
            let res = config.stage_resolution(i);
            let mut blocks = Vec::new();
            for j in 0..depth as usize {
                let bp = &sp / "blocks" / j;
                let (window, shift) = config.window_and_shift(res, j % 2 == 1);
                let site = BlockSite {
                    name: format!("layers.{i}.blocks.{j}"),
                    stage: Some(i),
                    index: j,
                    dim,
                    num_heads: heads,
                };
                let extras = peft.block_extras(&bp, &site);
                let attn_mask = (shift > 0).then(|| {
                    let nw = (res / window) * (res / window);
                    Tensor::from_slice(&shifted_window_mask(res, window, shift))
                        .view([nw, window * window, window * window])
                        .to_device(dev)
                });
                let hidden = (dim as f64 * config.mlp_ratio) as i64;
                blocks.push(SwinBlock {
                    norm1: layers::layer_norm(&bp / "norm1", dim, SWIN_LN_EPS),
                    attn: WindowAttention::new(
                        &(&bp / "attn"),
                        dim,
                        heads,
                        window,
                        config.qkv_bias,
                        config.attention,
                        extras.attn,
                    ),
                    norm2: layers::layer_norm(&bp / "norm2", dim, SWIN_LN_EPS),
                    mlp: Mlp::new(&(&bp / "mlp"), dim, hidden, 0.0),
                    window,
                    shift,
                    attn_mask,
                    drop_path: dpr[block_idx],
                    mlp_hook: extras.mlp,
                });
                block_idx += 1;
            }
            stages.push(SwinStage { downsample, blocks });
        }
        let norm = layers::layer_norm(p / "norm", config.num_features(), SWIN_LN_EPS);
        // created last, so a prompted model draws the same backbone init as a plain one
        let prompts = peft.vpt().map(|v| Prompts::swin(p, &config, &v));
        Swin { descriptor, patch_embed, layers: stages, norm, prompts }
    }

    /// Per-block drop-path rates, in forward order.
    pub fn drop_path_rates(&self) -> Vec<f64> {
        self.layers.iter().flat_map(|s| s.blocks.iter().map(|b| b.drop_path)).collect()
    }
}

impl Backbone for Swin {
    fn forward_features(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_features_peft(x, train, train)
    }

    /// With prompts, block 0 of stage 0 sees the input prompts and every later block its deep
    /// prompts (VPT-deep; VPT-shallow carries the input prompts through). The features are
    /// the mean over all `T + H·W` normalised tokens, prompts included, as in VPT.
    fn forward_features_peft(&self, x: &Tensor, train: bool, prompt_train: bool) -> Tensor {
        let x = self.patch_embed.proj.forward(x).permute([0, 2, 3, 1]);
        let mut x = self.patch_embed.norm.forward(&x);
        let batch = x.size()[0];
        let mut p = self.prompts.as_ref().map(|pr| pr.input(batch, prompt_train));
        for (i, stage) in self.layers.iter().enumerate() {
            if let Some(d) = &stage.downsample {
                x = d.forward(&x);
                p = p.map(|p| d.forward_prompts(&p));
            }
            for (j, b) in stage.blocks.iter().enumerate() {
                if let Some(pr) = &self.prompts {
                    // stage 0's deep rows start at block 1 (block 0 has the input prompts)
                    let row = if i == 0 { j as i64 - 1 } else { j as i64 };
                    if row >= 0 {
                        if let Some(deep) = pr.deep(i, row, batch, prompt_train) {
                            p = Some(deep);
                        }
                    }
                }
                let (nx, np) = b.forward(&x, p.as_ref(), train);
                x = nx;
                p = np;
            }
        }
        let tokens = self.norm.forward(&sequence(&x, p.as_ref()));
        tokens.mean_dim([1i64].as_slice(), false, tokens.kind())
    }

    fn descriptor(&self) -> &BackboneDescriptor {
        &self.descriptor
    }

    fn map_checkpoint_key(&self, layout: SourceLayout, key: &str) -> KeyFate {
        if key.ends_with(".attn.relative_position_index") || key.ends_with(".attn_mask") {
            return KeyFate::Derived(key.to_string());
        }
        match layout {
            SourceLayout::Native => default_native_fate(&self.descriptor.classifier, key),
            SourceLayout::SwinLegacy => legacy_key(key, &self.descriptor.classifier),
        }
    }

    fn derived_buffers(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, s) in self.layers.iter().enumerate() {
            for (j, b) in s.blocks.iter().enumerate() {
                out.push((
                    format!("layers.{i}.blocks.{j}.attn.relative_position_index"),
                    b.attn.relative_position_index.shallow_clone(),
                ));
                if let Some(m) = &b.attn_mask {
                    out.push((format!("layers.{i}.blocks.{j}.attn_mask"), m.shallow_clone()));
                }
            }
        }
        out
    }
}

/// Legacy Swin key → current timm key: `layers.i.downsample.*` → `layers.(i+1).downsample.*`,
/// `head.*` → `<classifier>.*` (timm: `head.fc.*`). The remap table of this family.
pub fn legacy_key(key: &str, classifier: &str) -> KeyFate {
    if let Some(rest) = key.strip_prefix("head.") {
        return KeyFate::Head(format!("{classifier}.{rest}"));
    }
    if let Some(rest) = key.strip_prefix("layers.") {
        if let Some((idx, tail)) = rest.split_once('.') {
            if let (Ok(i), Some(t)) = (idx.parse::<usize>(), tail.strip_prefix("downsample.")) {
                return KeyFate::Param(format!("layers.{}.downsample.{t}", i + 1));
            }
        }
    }
    KeyFate::Param(key.to_string())
}

#[cfg(test)]
mod tests;
