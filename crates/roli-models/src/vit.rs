//! Vision Transformer (Dosovitskiy et al., ICLR 2021, arXiv 2010.11929) with timm parameter names
//! (timm `models/vision_transformer.py`): conv patch embedding, cls token, learned position
//! embedding, pre-LN blocks (LayerNorm eps 1e-6, exact-erf GELU), final norm, cls-token output.
//! `qkv` stays fused as in timm; the reference's split query/key/value is the same tensor cut
//! in three along dim 0. Dropout (reference: 0.1 on embeddings and MLP) is a config value.
//! With a VPT spec ([`crate::prompt`]) the sequence is `[cls, prompts, patches]`.
//! Attention is explicit (the reference) or one fused kernel ([`crate::attention`],
//! `VitConfig::attention`); prompts are ordinary tokens to both.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

use crate::attention::{self, AttentionImpl};
use crate::backbone::Backbone;
use crate::descriptor::BackboneDescriptor;
use crate::layers::{self, drop_path, dropout, Mlp};
use crate::peft::{AttnHook, BlockSite, MlpHook, PeftSpec};
use crate::prompt::Prompts;

/// LayerNorm epsilon of timm's and jeonsworld's ViT.
const VIT_LN_EPS: f64 = 1e-6;
/// timm initialises the cls token with N(0, 1e-6).
const CLS_TOKEN_STD: f64 = 1e-6;

/// ViT hyper-parameters (timm `VisionTransformer` arguments).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    /// Square input size in pixels.
    pub img_size: i64,
    /// Patch size.
    pub patch_size: i64,
    /// Input channels.
    pub in_chans: i64,
    /// Token width.
    pub embed_dim: i64,
    /// Number of blocks.
    pub depth: i64,
    /// Attention heads.
    pub num_heads: i64,
    /// MLP hidden width / token width.
    pub mlp_ratio: f64,
    /// Bias on the qkv projection.
    pub qkv_bias: bool,
    /// Maximum stochastic-depth rate (linear over blocks).
    pub drop_path_rate: f64,
    /// Dropout after the position embedding and inside the MLP (timm `drop_rate`/`proj_drop_rate`).
    pub dropout: f64,
    /// Attention implementation (explicit or fused, same results); left out of the JSON when
    /// explicit, so sidecars written before the option load unchanged and explicit models
    /// write the same JSON as before.
    #[serde(default, skip_serializing_if = "AttentionImpl::is_explicit")]
    pub attention: AttentionImpl,
}

impl VitConfig {
    /// ViT-B/16 @ 224 (`vit_base_patch16_224`).
    pub fn base_patch16_224() -> Self {
        VitConfig {
            img_size: 224,
            patch_size: 16,
            in_chans: 3,
            embed_dim: 768,
            depth: 12,
            num_heads: 12,
            mlp_ratio: 4.0,
            qkv_bias: true,
            drop_path_rate: 0.0,
            dropout: 0.0,
            attention: AttentionImpl::Explicit,
        }
    }

    /// A ~0.3 M-parameter ViT for 32-px 1-channel inputs: patch 4 → 64 tokens, width 64, 6 blocks.
    pub fn micro_patch4_32() -> Self {
        VitConfig {
            img_size: 32,
            patch_size: 4,
            in_chans: 1,
            embed_dim: 64,
            depth: 6,
            num_heads: 4,
            mlp_ratio: 4.0,
            qkv_bias: true,
            drop_path_rate: 0.0,
            dropout: 0.0,
            attention: AttentionImpl::Explicit,
        }
    }

    /// A ~0.2 M-parameter ViT for 28-px 1-channel inputs (MNIST-family at native size): patch 7
    /// → 16 tokens, width 64, 4 blocks. Small enough that adversarial training of every transfer
    /// method fits in minutes on 2 CPU cores (the built-in demo's backbone).
    pub fn nano_patch7_28() -> Self {
        VitConfig {
            img_size: 28,
            patch_size: 7,
            in_chans: 1,
            embed_dim: 64,
            depth: 4,
            num_heads: 4,
            mlp_ratio: 4.0,
            qkv_bias: true,
            drop_path_rate: 0.0,
            dropout: 0.0,
            attention: AttentionImpl::Explicit,
        }
    }

    fn num_patches(&self) -> i64 {
        (self.img_size / self.patch_size) * (self.img_size / self.patch_size)
    }

    /// Checks the sizes fit together.
    pub fn validate(&self) -> Result<(), String> {
        if self.patch_size < 1 || self.img_size % self.patch_size != 0 {
            return Err(format!("img_size {} must be a multiple of patch_size {}", self.img_size, self.patch_size));
        }
        if self.num_heads < 1 || self.embed_dim % self.num_heads != 0 {
            return Err(format!("embed_dim {} is not divisible by {} heads", self.embed_dim, self.num_heads));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout must be in [0,1), got {}", self.dropout));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Attention {
    qkv: nn::Linear,
    proj: nn::Linear,
    num_heads: i64,
    scale: f64,
    imp: AttentionImpl,
    hook: Option<Box<dyn AttnHook>>,
}

impl Attention {
    /// Global self-attention over all tokens (cls, VPT prompts, patches). The PEFT hook sees
    /// the fused qkv first, so LoRA acts the same in both implementations.
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let (b, n, c) = x.size3().expect("tokens are 3-D");
        let mut qkv = self.qkv.forward(x);
        if let Some(h) = &self.hook {
            qkv = h.qkv(x, qkv, train);
        }
        let qkv = qkv.reshape([b, n, 3, self.num_heads, -1]).permute([2, 0, 3, 1, 4]);
        let out = match self.imp {
            AttentionImpl::Explicit => {
                let (q, k, v) = (qkv.get(0) * self.scale, qkv.get(1), qkv.get(2));
                layers::softmax_last(&q.matmul(&k.transpose(-2, -1))).matmul(&v)
            }
            AttentionImpl::Fused => attention::fused(&qkv.get(0), &qkv.get(1), &qkv.get(2), None, self.scale),
        };
        self.proj.forward(&out.transpose(1, 2).reshape([b, n, c]))
    }
}

#[derive(Debug)]
struct Block {
    norm1: nn::LayerNorm,
    attn: Attention,
    norm2: nn::LayerNorm,
    mlp: Mlp,
    drop_path: f64,
    mlp_hook: Option<Box<dyn MlpHook>>,
}

impl Block {
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let x = x + drop_path(&self.attn.forward(&self.norm1.forward(x), train), self.drop_path, train);
        let mut m = drop_path(&self.mlp.forward_t(&self.norm2.forward(&x), train), self.drop_path, train);
        if let Some(h) = &self.mlp_hook {
            m = h.mlp_out(m, train);
        }
        x + m
    }
}

/// A ViT feature extractor returning the normalised cls token.
#[derive(Debug)]
pub struct Vit {
    descriptor: BackboneDescriptor,
    config: VitConfig,
    proj: nn::Conv2D,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    prompts: Option<Prompts>,
}

impl Vit {
    /// Builds the model under `p`, calling `peft` once per block. The config must be valid.
    pub(crate) fn new(p: &nn::Path, descriptor: BackboneDescriptor, config: VitConfig, peft: &dyn PeftSpec) -> Self {
        let d = config.embed_dim;
        let fan_in = config.in_chans * config.patch_size * config.patch_size;
        let proj = nn::conv2d(
            p / "patch_embed" / "proj",
            config.in_chans,
            d,
            config.patch_size,
            nn::ConvConfig {
                stride: config.patch_size,
                ws_init: layers::torch_default_uniform(fan_in),
                bs_init: layers::torch_default_uniform(fan_in),
                ..Default::default()
            },
        );
        let cls_token = p.var("cls_token", &[1, 1, d], nn::Init::Randn { mean: 0.0, stdev: CLS_TOKEN_STD });
        let pos_embed = p.var(
            "pos_embed",
            &[1, config.num_patches() + 1, d],
            nn::Init::Randn { mean: 0.0, stdev: layers::TRANSFORMER_LINEAR_STD },
        );
        let dpr = layers::drop_path_schedule(config.drop_path_rate, config.depth as usize);
        let hidden = (d as f64 * config.mlp_ratio) as i64;
        let blocks = (0..config.depth as usize)
            .map(|i| {
                let bp = p / "blocks" / i;
                let site = BlockSite {
                    name: format!("blocks.{i}"),
                    stage: None,
                    index: i,
                    dim: d,
                    num_heads: config.num_heads,
                };
                let extras = peft.block_extras(&bp, &site);
                let ap = &bp / "attn";
                Block {
                    norm1: layers::layer_norm(&bp / "norm1", d, VIT_LN_EPS),
                    attn: Attention {
                        qkv: layers::linear(&ap / "qkv", d, 3 * d, config.qkv_bias),
                        proj: layers::linear(&ap / "proj", d, d, true),
                        num_heads: config.num_heads,
                        scale: ((d / config.num_heads) as f64).powf(-0.5),
                        imp: config.attention,
                        hook: extras.attn,
                    },
                    norm2: layers::layer_norm(&bp / "norm2", d, VIT_LN_EPS),
                    mlp: Mlp::new(&(&bp / "mlp"), d, hidden, config.dropout),
                    drop_path: dpr[i],
                    mlp_hook: extras.mlp,
                }
            })
            .collect();
        let norm = layers::layer_norm(p / "norm", d, VIT_LN_EPS);
        // created last, so a prompted model draws the same backbone init as a plain one
        let prompts = peft.vpt().map(|v| Prompts::vit(p, &config, &v));
        Vit { descriptor, config, proj, cls_token, pos_embed, blocks, norm, prompts }
    }
}

/// `[cls, prompts, rest]`: puts `prompts` after the cls token, dropping the first `drop`
/// tokens after it (the previous block's prompt outputs).
fn with_prompts(x: &Tensor, prompts: &Tensor, drop: i64) -> Tensor {
    let n = x.size()[1];
    Tensor::cat(&[x.narrow(1, 0, 1), prompts.shallow_clone(), x.narrow(1, 1 + drop, n - 1 - drop)], 1)
}

impl Backbone for Vit {
    fn forward_features(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_features_peft(x, train, train)
    }

    fn forward_features_peft(&self, x: &Tensor, train: bool, prompt_train: bool) -> Tensor {
        let b = x.size()[0];
        let tokens = self.proj.forward(x).flatten(2, -1).transpose(1, 2);
        let cls = self.cls_token.expand([b, -1, -1], false);
        let mut x = Tensor::cat(&[cls, tokens], 1) + &self.pos_embed;
        x = dropout(&x, self.config.dropout, train);
        if let Some(pr) = &self.prompts {
            x = with_prompts(&x, &pr.input(b, prompt_train), 0);
        }
        for (i, blk) in self.blocks.iter().enumerate() {
            if let (Some(pr), true) = (&self.prompts, i > 0) {
                if let Some(deep) = pr.deep(0, i as i64 - 1, b, prompt_train) {
                    x = with_prompts(&x, &deep, pr.tokens());
                }
            }
            x = blk.forward(&x, train);
        }
        self.norm.forward(&x).select(1, 0)
    }

    fn descriptor(&self) -> &BackboneDescriptor {
        &self.descriptor
    }
}
