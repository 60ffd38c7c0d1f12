//! The [`Backbone`] trait every family implements, and how a family maps checkpoint keys.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::descriptor::BackboneDescriptor;

/// Key layout of a checkpoint file, chosen by the caller (never guessed from key names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceLayout {
    /// Keys are the backbone's own names (timm ≥ 0.9 for Swin/ViT/ResNet, advertorch for LeNet).
    Native,
    /// Official Microsoft / timm < 0.9 Swin: `layers.i.downsample` at the end of stage i and the
    /// classifier named `head` (instead of `layers.i+1.downsample` and `head.fc`).
    SwinLegacy,
}

impl std::fmt::Display for SourceLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceLayout::Native => "native",
            SourceLayout::SwinLegacy => "swin-legacy",
        })
    }
}

/// What happens to one checkpoint key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyFate {
    /// A backbone parameter/buffer stored in the `VarStore` under this name.
    Param(String),
    /// A classifier tensor, under the model's own head name.
    Head(String),
    /// A buffer the model computes itself (e.g. `relative_position_index`): compared, not loaded.
    Derived(String),
    /// Dropped on purpose, with the reason (e.g. BatchNorm's `num_batches_tracked`).
    Ignore(&'static str),
    /// The layout does not apply to this family (e.g. a Swin remap on a ViT).
    WrongLayout,
}

/// A feature extractor: `[0,1]`-normalised images in, pooled features `[B, num_features]` out.
///
/// Parameters live in the caller's `VarStore` under timm's state_dict names. `train` switches
/// dropout, drop-path and BatchNorm statistics; callers pass it explicitly (attacks: `false`).
pub trait Backbone: Send + std::fmt::Debug {
    /// Pooled pre-logit features of already-normalised NCHW input.
    fn forward_features(&self, x: &Tensor, train: bool) -> Tensor;

    /// [`Self::forward_features`] with the prompt modules' mode given separately: `peft_train`
    /// switches VPT's prompt dropout, `backbone_train` everything else (including LoRA/adapter
    /// hooks, which the reference keeps in eval with the frozen encoder). VPT trains with
    /// `(false, true)`, as the reference's `train()` override does. The default (families
    /// without prompts) ignores `peft_train`.
    fn forward_features_peft(&self, x: &Tensor, backbone_train: bool, _peft_train: bool) -> Tensor {
        self.forward_features(x, backbone_train)
    }

    /// Feature width (input of the linear head).
    fn num_features(&self) -> i64 {
        self.descriptor().num_features()
    }

    /// The description this backbone was built from.
    fn descriptor(&self) -> &BackboneDescriptor;

    /// Maps a checkpoint key (after wrapper/`module.` stripping) to its fate under `layout`.
    /// The default is the identity for [`SourceLayout::Native`], with keys under the
    /// descriptor's classifier prefix going to the head.
    fn map_checkpoint_key(&self, layout: SourceLayout, key: &str) -> KeyFate {
        match layout {
            SourceLayout::Native => default_native_fate(&self.descriptor().classifier, key),
            SourceLayout::SwinLegacy => KeyFate::WrongLayout,
        }
    }

    /// Buffers the model computes itself, by checkpoint name, so that checkpoint copies can be
    /// verified instead of silently overwriting them.
    fn derived_buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}

pub(crate) fn default_native_fate(classifier: &str, key: &str) -> KeyFate {
    match key.strip_prefix(classifier) {
        Some(rest) if rest.starts_with('.') => KeyFate::Head(key.to_string()),
        _ => KeyFate::Param(key.to_string()),
    }
}
