//! Visual prompt tuning (VPT; Jia et al., ECCV 2022, arXiv 2203.12119) for ViT and Swin, as
//! RoLI's `prompt` transfer mode uses it (VPT's `vit_prompt/{vit,swin_transformer}.py`, copied
//! unchanged by RoLI): `T` learned tokens prepended to the token sequence, and with VPT-deep a
//! fresh set of `T` tokens replacing the previous block's prompt outputs before every block
//! but the first.
//!
//! This module owns the configuration ([`VptConfig`]), the spec that switches prompts on at
//! build time ([`Vpt`], a [`PeftSpec`]), the tensor names/shapes and their initialisation, and
//! the prompt dropout. Where the tokens go is the model's business ([`crate::vit`],
//! [`crate::swin`]):
//!
//! * ViT: `[cls, prompts, patches]` after the position embedding (prompts get no position
//!   embedding); deep: before block `i ≥ 1`, tokens `1..=T` are replaced by row `i−1` of
//!   `deep_prompt_embeddings`. Output: the cls token after the final norm.
//! * Swin: the prompts are prepended after patch embedding; deep: every block but block 0 of
//!   stage 0 has its prompts replaced by its row of `deep_prompt_embeddings_{stage}`. Inside
//!   window attention the prompts are concatenated to every window (zero relative-position bias
//!   and zero shift mask at prompt positions) and their outputs averaged over the windows
//!   (each sample with its own prompts; see the deviation noted in `swin.rs`); patch merging
//!   tiles them ×4 along channels through the merge LayerNorm and Linear (in VPT-deep the
//!   result is replaced by the next block's deep prompts at once; it matters for VPT-shallow);
//!   the final average pool runs over **all** `T + H·W` tokens, prompts included, as VPT's
//!   `avgpool(norm(x))` does.
//!
//! Train mode: the reference keeps the backbone in eval and only the prompt dropout in train
//! mode (its `train()` override). Here the prompt dropout follows the separate `peft_train`
//! flag of [`crate::Classifier::forward_peft`] / [`crate::Backbone::forward_features_peft`];
//! `forward_with(x, train)` uses `train` for both.

use serde::{Deserialize, Serialize};
use tch::nn;
use tch::Tensor;

use crate::descriptor::ArchConfig;
use crate::peft::{BlockExtras, BlockSite, PeftSpec};
use crate::swin::SwinConfig;
use crate::vit::VitConfig;

/// Substring contained in every prompt variable name (the reference freezes by this match).
pub const PROMPT_MARKER: &str = "prompt";
/// Name of the input (first-block) prompt tensor, `(1, T, C)`.
pub const INPUT_PROMPT_NAME: &str = "prompt_embeddings";
/// Name of ViT's deep prompts `(L−1, T, D)`; Swin appends `_{stage}`.
pub const DEEP_PROMPT_NAME: &str = "deep_prompt_embeddings";

/// VPT hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VptConfig {
    /// Prompt tokens per block, `T` (reference: 10; 20 for CUB).
    pub tokens: i64,
    /// Prompt dropout probability (reference: 0.1), active only when the prompts train.
    pub dropout: f64,
    /// VPT-deep (every block gets its own prompts; the reference's setting). `false` is VPT-shallow:
    /// only the input prompts, carried through every block.
    pub deep: bool,
}

impl VptConfig {
    /// RoLI's VPT configs (`vpt/*_ranli.yaml`, except CUB): 10 tokens, dropout 0.1, deep.
    pub const REFERENCE: VptConfig = VptConfig { tokens: 10, dropout: 0.1, deep: true };

    /// Checks the values; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.tokens < 1 {
            return Err(format!("VPT needs at least 1 prompt token, got tokens = {}", self.tokens));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("VPT prompt dropout must be in [0,1), got {}", self.dropout));
        }
        Ok(())
    }
}

impl Default for VptConfig {
    fn default() -> Self {
        VptConfig::REFERENCE
    }
}

/// The [`PeftSpec`] that builds VPT prompts into a ViT or Swin (no per-block hooks).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Vpt(pub VptConfig);

impl PeftSpec for Vpt {
    fn block_extras(&self, _block_path: &nn::Path, _site: &BlockSite) -> BlockExtras {
        BlockExtras::default()
    }

    fn vpt(&self) -> Option<VptConfig> {
        Some(self.0)
    }
}

/// VPT's prompt initialisation bound `v = sqrt(6 / (3·patch² + dim))` for `uniform(−v, v)`
/// (a Xavier-uniform bound for a 3-channel patch; the `3` is the reference's constant, kept
/// for 1-channel inputs too). Swin uses its `embed_dim` for every stage.
pub fn init_bound(patch_size: i64, dim: i64) -> f64 {
    (6.0 / (3 * patch_size * patch_size + dim) as f64).sqrt()
}

/// Name and shape of one prompt tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptVar {
    /// Variable name relative to the backbone root (e.g. `deep_prompt_embeddings_2`).
    pub name: String,
    /// Shape `(rows, T, C)`.
    pub shape: Vec<i64>,
}

fn var(name: String, rows: i64, tokens: i64, dim: i64) -> PromptVar {
    PromptVar { name, shape: vec![rows, tokens, dim] }
}

/// ViT prompt tensors: `prompt_embeddings (1, T, D)` and, if deep, `deep_prompt_embeddings
/// (L−1, T, D)`.
pub fn vit_prompt_vars(c: &VitConfig, v: &VptConfig) -> Vec<PromptVar> {
    let mut out = vec![var(INPUT_PROMPT_NAME.into(), 1, v.tokens, c.embed_dim)];
    if v.deep {
        out.push(var(DEEP_PROMPT_NAME.into(), c.depth - 1, v.tokens, c.embed_dim));
    }
    out
}

/// Swin prompt tensors: `prompt_embeddings (1, T, C₀)` and, if deep,
/// `deep_prompt_embeddings_{i} (rows_i, T, C_i)` with `rows_0 = depths[0] − 1` (block 0 of
/// stage 0 uses the input prompts) and `rows_i = depths[i]` after that.
pub fn swin_prompt_vars(c: &SwinConfig, v: &VptConfig) -> Vec<PromptVar> {
    let mut out = vec![var(INPUT_PROMPT_NAME.into(), 1, v.tokens, c.embed_dim)];
    if v.deep {
        for (i, &depth) in c.depths.iter().enumerate() {
            let rows = if i == 0 { depth - 1 } else { depth };
            out.push(var(format!("{DEEP_PROMPT_NAME}_{i}"), rows, v.tokens, c.embed_dim << i));
        }
    }
    out
}

/// The prompt tensors VPT adds to an architecture, or `None` for a family without transformer
/// blocks.
pub fn prompt_vars(arch: &ArchConfig, v: &VptConfig) -> Option<Vec<PromptVar>> {
    match arch {
        ArchConfig::Swin(c) => Some(swin_prompt_vars(c, v)),
        ArchConfig::Vit(c) => Some(vit_prompt_vars(c, v)),
        _ => None,
    }
}

/// Number of prompt parameters (Swin-B, T = 10, deep: 120,320), or `None` for a family
/// without transformer blocks.
pub fn prompt_param_count(arch: &ArchConfig, v: &VptConfig) -> Option<i64> {
    prompt_vars(arch, v).map(|vars| vars.iter().map(|p| p.shape.iter().product::<i64>()).sum())
}

/// How the dropout mask of the deep prompts is drawn. VPT's ViT applies the dropout after
/// expanding to the batch (one mask per sample); its Swin applies it to the parameter before
/// expanding (one mask shared by the batch). The input prompts get per-sample masks in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeepMask {
    PerSample,
    SharedByBatch,
}

/// The learned prompt tokens of one model and their dropout.
#[derive(Debug)]
pub(crate) struct Prompts {
    input: Tensor,
    /// One tensor per stage (ViT: a single "stage"); empty for VPT-shallow.
    deep: Vec<Tensor>,
    tokens: i64,
    dropout: f64,
    deep_mask: DeepMask,
}

impl Prompts {
    fn new(p: &nn::Path, vars: &[PromptVar], bound: f64, v: &VptConfig, mask: DeepMask) -> Self {
        let init = nn::Init::Uniform { lo: -bound, up: bound };
        let mut tensors = vars.iter().map(|pv| p.var(&pv.name, &pv.shape, init));
        let input = tensors.next().expect("prompt var lists start with the input prompts");
        Prompts { input, deep: tensors.collect(), tokens: v.tokens, dropout: v.dropout, deep_mask: mask }
    }

    /// ViT prompts under the backbone root `p`.
    pub(crate) fn vit(p: &nn::Path, c: &VitConfig, v: &VptConfig) -> Self {
        let bound = init_bound(c.patch_size, c.embed_dim);
        Self::new(p, &vit_prompt_vars(c, v), bound, v, DeepMask::PerSample)
    }

    /// Swin prompts under the backbone root `p`.
    pub(crate) fn swin(p: &nn::Path, c: &SwinConfig, v: &VptConfig) -> Self {
        let bound = init_bound(c.patch_size, c.embed_dim);
        Self::new(p, &swin_prompt_vars(c, v), bound, v, DeepMask::SharedByBatch)
    }

    /// Number of prompt tokens T.
    pub(crate) fn tokens(&self) -> i64 {
        self.tokens
    }

    fn drop(&self, x: &Tensor, train: bool) -> Tensor {
        crate::layers::dropout(x, self.dropout, train)
    }

    /// The first block's prompts, `[batch, T, C₀]` (per-sample dropout when `train`).
    pub(crate) fn input(&self, batch: i64, train: bool) -> Tensor {
        self.drop(&self.input.expand([batch, -1, -1], false), train)
    }

    /// Deep prompts of row `row` of stage `stage`, `[batch, T, C]`, or `None` for VPT-shallow.
    pub(crate) fn deep(&self, stage: usize, row: i64, batch: i64, train: bool) -> Option<Tensor> {
        let t = self.deep.get(stage)?.get(row);
        Some(match self.deep_mask {
            DeepMask::PerSample => self.drop(&t.expand([batch, -1, -1], false), train),
            DeepMask::SharedByBatch => self.drop(&t, train).expand([batch, -1, -1], false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn init_bound_is_vpts_rule() {
        assert!((init_bound(4, 128) - 0.184_637_574).abs() < 1e-6);
        assert!((init_bound(16, 768) - 0.0625).abs() < 1e-12);
    }

    #[test]
    fn swin_b_prompt_count_is_the_specs() {
        let arch = ArchConfig::Swin(SwinConfig::base_patch4_window7_224());
        let t10 = prompt_param_count(&arch, &VptConfig::REFERENCE).unwrap();
        assert_eq!(t10, 120_320);
        let t20 = VptConfig { tokens: 20, ..VptConfig::REFERENCE };
        assert_eq!(prompt_param_count(&arch, &t20), Some(2 * t10));
        let shapes: Vec<_> = swin_prompt_vars(&SwinConfig::base_patch4_window7_224(), &VptConfig::REFERENCE)
            .into_iter()
            .map(|p| (p.name, p.shape))
            .collect();
        assert_eq!(
            shapes,
            vec![
                ("prompt_embeddings".to_string(), vec![1, 10, 128]),
                ("deep_prompt_embeddings_0".to_string(), vec![1, 10, 128]),
                ("deep_prompt_embeddings_1".to_string(), vec![2, 10, 256]),
                ("deep_prompt_embeddings_2".to_string(), vec![18, 10, 512]),
                ("deep_prompt_embeddings_3".to_string(), vec![2, 10, 1024]),
            ]
        );
        let shallow = VptConfig { deep: false, ..VptConfig::REFERENCE };
        assert_eq!(prompt_param_count(&arch, &shallow), Some(1280));
    }

    #[test]
    fn vit_b_prompt_shapes() {
        let v = vit_prompt_vars(&VitConfig::base_patch16_224(), &VptConfig::REFERENCE);
        assert_eq!(v[0].shape, vec![1, 10, 768]);
        assert_eq!(v[1].name, "deep_prompt_embeddings");
        assert_eq!(v[1].shape, vec![11, 10, 768]);
        let lenet = ArchConfig::Lenet(crate::lenet::LeNetConfig::advertorch());
        assert_eq!(prompt_param_count(&lenet, &VptConfig::REFERENCE), None);
    }

    #[test]
    fn validation_names_the_bad_value() {
        let mut v = VptConfig::REFERENCE;
        v.tokens = 0;
        assert!(v.validate().unwrap_err().contains("tokens = 0"));
        v.tokens = 5;
        v.dropout = 1.0;
        assert!(v.validate().unwrap_err().contains("dropout"));
        assert!(VptConfig::REFERENCE.validate().is_ok());
    }

    #[test]
    fn prompts_are_uniform_within_the_bound_and_dropout_masks_follow_the_reference() {
        let vs = nn::VarStore::new(Device::Cpu);
        let c = SwinConfig::micro_patch2_window4_32();
        let v = VptConfig { tokens: 64, dropout: 0.5, deep: true };
        let pr = Prompts::swin(&vs.root(), &c, &v);
        let bound = init_bound(c.patch_size, c.embed_dim);
        for (name, t) in vs.variables() {
            let m = f64::try_from(t.abs().max()).unwrap();
            assert!(m <= bound && m > 0.8 * bound, "{name}: max |value| {m} vs bound {bound}");
        }
        // eval: no dropout, identical rows across the batch
        let e = pr.deep(1, 1, 3, false).unwrap();
        assert_eq!(e.size(), vec![3, 64, 64]);
        assert_eq!(f64::try_from((e.get(0) - e.get(2)).abs().max()).unwrap(), 0.0);
        // Swin deep prompts: one mask for the whole batch
        let d = pr.deep(1, 1, 3, true).unwrap();
        assert_eq!(f64::try_from((d.get(0) - d.get(2)).abs().max()).unwrap(), 0.0);
        let zeros = f64::try_from(d.eq(0.0).to_kind(Kind::Float).mean(Kind::Float)).unwrap();
        assert!((0.35..0.65).contains(&zeros), "dropped fraction {zeros}");
        // input prompts: one mask per sample
        let i = pr.input(3, true);
        assert!(f64::try_from((i.get(0) - i.get(2)).abs().max()).unwrap() > 0.0);
        assert!(pr.deep(2, 1, 3, false).is_some() && pr.deep(3, 0, 1, false).is_none());
    }
}
