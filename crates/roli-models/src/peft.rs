//! The seam for parameter-efficient finetuning (PEFT) inside transformer blocks.
//!
//! tch has no module tree to rewrite after construction, so extensions are injected when a
//! model is built: the Swin and ViT builders call [`PeftSpec::block_extras`] once per block with
//! the block's `nn::Path` (e.g. `layers.2.blocks.5` or `blocks.3`) and a [`BlockSite`]; the spec
//! may create its own variables under that path and returns hooks the block calls during its
//! forward pass:
//!
//! * [`AttnHook::qkv`] sees the attention input tokens and the fused `attn.qkv` output
//!   (`[.., N, 3C]`, q|k|v along the last dim, heads inside each third) and returns the qkv to
//!   use. LoRA on query and value (the reference design) adds `s·B(A(x))` to the first and last
//!   thirds. For Swin the tokens are the windowed ones, `[B·nW, N, C]`.
//! * [`MlpHook::mlp_out`] sees `drop_path(mlp(norm2(x)))` just before the residual add and returns
//!   its replacement; a Pfeiffer adapter returns `m + up(gelu(down(m)))`.
//!
//! The `train` flag the hooks receive is the backbone's, so LoRA dropout is inactive whenever
//! the encoder runs in eval mode, as in the reference.
//!
//! VPT prompts act on the whole token sequence rather than inside one block, so they are a
//! model-level switch: [`PeftSpec::vpt`] (default `None`) returns a [`VptConfig`] and the ViT /
//! Swin builders then create the prompt tensors and thread them through every block
//! (see [`crate::prompt`]). [`crate::prompt::Vpt`] is the spec that does only that; a combined
//! spec may return hooks and prompts at once.

use tch::nn;
use tch::Tensor;

use crate::prompt::VptConfig;

/// Identifies the block a hook is built for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSite {
    /// timm-style name of the block, e.g. `layers.2.blocks.5` or `blocks.3`.
    pub name: String,
    /// Stage index (Swin) or `None` (ViT).
    pub stage: Option<usize>,
    /// Block index within the stage (Swin) or the model (ViT).
    pub index: usize,
    /// Token width C of the block.
    pub dim: i64,
    /// Number of attention heads.
    pub num_heads: i64,
}

/// Hook on the fused qkv projection of a block's attention.
pub trait AttnHook: Send + std::fmt::Debug {
    /// Returns the qkv tensor to use, given the attention input `x` (`[.., N, C]`) and the base
    /// `attn.qkv(x)` output `qkv` (`[.., N, 3C]`).
    fn qkv(&self, x: &Tensor, qkv: Tensor, train: bool) -> Tensor;
}

/// Hook on the MLP branch of a block, before the residual add.
pub trait MlpHook: Send + std::fmt::Debug {
    /// Returns the branch output to add to the residual, given `m = drop_path(mlp(norm2(x)))`.
    fn mlp_out(&self, m: Tensor, train: bool) -> Tensor;
}

/// Optional extensions of one transformer block (default: none).
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct BlockExtras {
    /// Attention qkv hook (LoRA).
    pub attn: Option<Box<dyn AttnHook>>,
    /// MLP-output hook (adapters).
    pub mlp: Option<Box<dyn MlpHook>>,
}

impl BlockExtras {
    /// Extras with the given hooks.
    pub fn new(attn: Option<Box<dyn AttnHook>>, mlp: Option<Box<dyn MlpHook>>) -> Self {
        BlockExtras { attn, mlp }
    }
}

/// Decides, at build time, which extensions each block gets.
pub trait PeftSpec {
    /// Called once per block, in forward order, with the block's path.
    fn block_extras(&self, block_path: &nn::Path, site: &BlockSite) -> BlockExtras;

    /// VPT prompts to build into a ViT or Swin (default: none). Building a family without
    /// transformer blocks with prompts is an error.
    fn vpt(&self) -> Option<VptConfig> {
        None
    }
}

/// No extensions: the plain model.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPeft;

impl PeftSpec for NoPeft {
    fn block_extras(&self, _block_path: &nn::Path, _site: &BlockSite) -> BlockExtras {
        BlockExtras::default()
    }
}
