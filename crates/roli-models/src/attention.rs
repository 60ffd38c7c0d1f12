//! How the transformer families compute `softmax(q·kᵀ·scale + mask)·v`: the explicit reference
//! path or one fused `scaled_dot_product_attention` call. A model option ([`AttentionImpl`],
//! set through [`crate::BackboneDescriptor::with_attention`]); the two give the same logits and
//! gradients up to float rounding (parity tests: ≤ 1e-5 on the tiny presets), and the same
//! parameter names, so checkpoints are interchangeable.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::ModelError;

/// Attention implementation of ViT and Swin blocks (ignored by families without attention).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionImpl {
    /// The reference path: `q·kᵀ`, softmax and `·v` as separate ops, materialising the
    /// `[B, heads, N, N]` attention matrix (timm with `fused_attn = False`). The default.
    #[default]
    Explicit,
    /// One `scaled_dot_product_attention` kernel: on CUDA libtorch picks a flash or
    /// memory-efficient kernel that never stores the attention matrix (less memory, faster
    /// attacks and training); on CPU its fused or math kernel. The additive mask (Swin's
    /// relative-position bias and shifted-window mask) is passed as `attn_mask`.
    Fused,
}

impl AttentionImpl {
    /// Every choice, in the order listed by messages and `--help`.
    pub const ALL: [AttentionImpl; 2] = [AttentionImpl::Explicit, AttentionImpl::Fused];

    /// The spelling used by config files, the CLI and the sidecar (`explicit`, `fused`).
    pub fn as_str(self) -> &'static str {
        match self {
            AttentionImpl::Explicit => "explicit",
            AttentionImpl::Fused => "fused",
        }
    }

    /// True for the default; lets serde omit the field so explicit models keep their old JSON.
    pub fn is_explicit(&self) -> bool {
        *self == AttentionImpl::Explicit
    }
}

impl fmt::Display for AttentionImpl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttentionImpl {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AttentionImpl::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| ModelError::UnknownAttention {
            name: s.into(),
            known: AttentionImpl::ALL.map(AttentionImpl::as_str).join(", "),
        })
    }
}

/// `softmax(q·kᵀ·scale + mask)·v` in one kernel, for `q`, `k`, `v` of shape `[B, heads, N, d]`
/// and an additive float `mask` broadcastable to `[B, heads, N, N]`. No attention dropout:
/// neither family has any (the explicit path applies none either).
pub(crate) fn fused(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, scale: f64) -> Tensor {
    Tensor::scaled_dot_product_attention(q, k, v, mask, 0.0, false, scale, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_and_unknown_lists_the_choices() {
        for a in AttentionImpl::ALL {
            assert_eq!(a.to_string().parse::<AttentionImpl>().unwrap(), a);
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
            assert_eq!(serde_json::from_str::<AttentionImpl>(&format!("\"{a}\"")).unwrap(), a);
        }
        assert_eq!(AttentionImpl::default(), AttentionImpl::Explicit);
        let e = "flash".parse::<AttentionImpl>().unwrap_err().to_string();
        assert_eq!(e, "unknown attention implementation `flash`; choose one of: explicit, fused");
    }
}
