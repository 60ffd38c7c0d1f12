//! LayerNorm tuning (Zhao et al., "Tuning LayerNorm in Attention", ICLR 2024; also a PEFT baseline
//! in later adversarial-transfer work): only the affine weight and bias of the normalisation
//! layers train — timm's `norm`, `norm1`, `norm2`, `fc_norm`, `norm_pre`, the Swin patch-embedding
//! and patch-merging norms. No layers are added, so the backbone fingerprint is untouched.
use super::PeftMethod;

pub struct LayerNorm;

/// Is `name` the weight or bias of a normalisation layer (timm naming)?
pub fn is_norm_affine(name: &str) -> bool {
    let mut parts = name.rsplit('.');
    let (Some(param), Some(module)) = (parts.next(), parts.next()) else { return false };
    let is_norm = module == "norm"
        || module.strip_prefix("norm").is_some_and(|r| r.chars().all(|c| c.is_ascii_digit()) || r == "_pre")
        || module.ends_with("_norm");
    is_norm && (param == "weight" || param == "bias")
}

impl PeftMethod for LayerNorm {
    fn name(&self) -> &'static str {
        "layernorm"
    }
    fn stream(&self) -> u64 {
        6
    }
    fn describe(&self) -> &'static str {
        "only the LayerNorm affine weights and biases train"
    }
    fn trains(&self, name: &str) -> bool {
        is_norm_affine(name)
    }
    fn needs_blocks(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_affine_names_of_vit_and_swin() {
        for n in [
            "blocks.0.norm1.weight",
            "blocks.11.norm2.bias",
            "norm.weight",
            "fc_norm.bias",
            "norm_pre.weight",
            "patch_embed.norm.weight",
            "layers.1.downsample.norm.bias",
            "layers.3.blocks.1.norm2.weight",
        ] {
            assert!(is_norm_affine(n), "{n}");
        }
        for n in [
            "blocks.0.attn.qkv.weight",
            "normalizer.weight",
            "blocks.0.norm1",
            "layer1.0.bn1.weight",
            "head.fc.bias",
            "norm.running_mean",
            "pos_embed",
        ] {
            assert!(!is_norm_affine(n), "{n}");
        }
    }
}
