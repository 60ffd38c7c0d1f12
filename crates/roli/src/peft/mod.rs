//! Parameter-efficient finetuning (PEFT) methods of stage 2, one module per method behind one
//! trait ([`PeftMethod`]) and one registry ([`REGISTRY`]), after peft's config + layer + injector
//! split. Each method owns its config, the layers it adds (through the models' build-time seam,
//! [`roli_models::peft`]), the name prefix of its tensors, which tensors train and its train-mode
//! rule. Everything else is derived here from the registry: what trains ([`trainable_names`]),
//! which tensors are not the backbone's ([`is_added_tensor`], so they never enter the backbone
//! fingerprint and a strict load may miss them) and the list of method names.
//!
//! Adding a method: one new file implementing [`PeftMethod`] and one line in [`REGISTRY`].
pub mod adapter;
pub mod bias;
pub mod full;
pub mod layernorm;
pub mod lora;
pub mod vpt;

use roli_models::peft::PeftSpec;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A stage-2 finetuning method. The head always trains; a method says what else does.
pub trait PeftMethod: Sync + Send {
    /// Name in configs, results and folder names (`lora`, `full`, …); lowercase, unique.
    fn name(&self) -> &'static str;
    /// A stable word of the method's random streams (stage seed): never change or reuse one,
    /// or runs stop reproducing. The probe is 0.
    fn stream(&self) -> u64;
    /// One line for `--help` and the dry-run plan.
    fn describe(&self) -> &'static str;
    /// The substring every tensor this method adds contains (`lora_`); `None` when it adds none.
    fn prefix(&self) -> Option<&'static str> {
        None
    }
    /// Whether a model tensor (not the head) trains under this method; by default, exactly the
    /// tensors the method adds (those whose name contains its prefix).
    fn trains(&self, name: &str) -> bool {
        self.prefix().is_some_and(|p| name.contains(p))
    }
    /// Backbone in train mode during the training forward (dropout, drop path): full finetuning.
    fn backbone_train(&self) -> bool {
        false
    }
    /// The added modules in train mode while the backbone stays in eval (VPT's prompt dropout).
    fn peft_train(&self) -> bool {
        false
    }
    /// Needs transformer blocks (ViT, Swin) to attach to.
    fn needs_blocks(&self) -> bool {
        false
    }
    /// The build-time injector of the layers this method adds; `None`: the plain model.
    fn injector(&self, _settings: &Settings) -> anyhow::Result<Option<Box<dyn PeftSpec>>> {
        Ok(None)
    }
}

/// Every stage-2 method, in report order. Add a method here (and nowhere else).
pub static REGISTRY: &[&dyn PeftMethod] =
    &[&full::Full, &bias::Bias, &lora::Lora, &adapter::Adapter, &vpt::Prompt, &layernorm::LayerNorm];

/// The settings of every method with a config (`[finetune.lora]`, …) and the faithful switches
/// that change their initialisation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Settings {
    pub lora: lora::LoraConfig,
    pub adapter: adapter::AdapterConfig,
    pub prompt: vpt::PromptConfig,
    /// The reference's dead LoRA init (A = B = 0).
    pub lora_zero_init: bool,
    /// The reference's all-zero adapters.
    pub adapter_zero_init: bool,
}

/// A handle to a registered method; compares, orders (registry order) and serializes by name.
#[derive(Clone, Copy)]
pub struct Method(&'static dyn PeftMethod);

impl Method {
    /// The registered method of this name.
    pub fn named(name: &str) -> anyhow::Result<Method> {
        REGISTRY.iter().find(|m| m.name() == name).map(|m| Method(*m)).ok_or_else(|| {
            if name == "linear" {
                anyhow::anyhow!("'linear' is not a finetuning method: the linear probe is stage 1 (`probe`)")
            } else {
                anyhow::anyhow!("unknown finetuning method '{name}'; use one of {}", names().join(", "))
            }
        })
    }
    /// Every registered method.
    pub fn all() -> impl Iterator<Item = Method> {
        REGISTRY.iter().map(|m| Method(*m))
    }
    pub fn as_str(self) -> &'static str {
        self.0.name()
    }
    /// Position in the registry (report order).
    fn index(self) -> usize {
        REGISTRY.iter().position(|m| m.name() == self.0.name()).unwrap_or(usize::MAX)
    }
}

impl std::ops::Deref for Method {
    type Target = dyn PeftMethod;
    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl PartialEq for Method {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for Method {}
impl PartialOrd for Method {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Method {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.index().cmp(&other.index())
    }
}
impl std::hash::Hash for Method {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}
impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl std::str::FromStr for Method {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        Method::named(s)
    }
}
impl Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Method::named(&s).map_err(serde::de::Error::custom)
    }
}

/// The registered method names, in registry order.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|m| m.name()).collect()
}

/// Is this tensor added by a PEFT method (not part of the backbone)? Such tensors stay out of
/// the backbone fingerprint, and a strict checkpoint load may miss them.
pub fn is_added_tensor(name: &str) -> bool {
    REGISTRY.iter().filter_map(|m| m.prefix()).any(|p| name.contains(p))
}

/// The name markers of every method that adds tensors (for the strict loader's allow list).
pub fn added_markers() -> Vec<&'static str> {
    REGISTRY.iter().filter_map(|m| m.prefix()).collect()
}

/// The sorted names that train: the head always; plus, for a method, what it declares.
/// `method = None` is the stage-1 probe (only the head).
pub fn trainable_names(method: Option<Method>, all: &[String], head: &[String]) -> Vec<String> {
    let mut out: Vec<String> =
        all.iter().filter(|n| head.contains(n) || method.is_some_and(|m| m.trains(n))).cloned().collect();
    out.sort();
    out
}

/// Total elements of the named tensors.
pub fn count_elements(vars: &std::collections::HashMap<String, tch::Tensor>, names: &[String]) -> i64 {
    names.iter().filter_map(|n| vars.get(n)).map(|t| t.numel() as i64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_of(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn registry_names_prefixes_and_streams_are_unique() {
        let n = names();
        let mut s = n.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), n.len(), "duplicate method name in {n:?}");
        let mut streams: Vec<u64> = REGISTRY.iter().map(|m| m.stream()).collect();
        assert!(!streams.contains(&0), "stream 0 is the probe's");
        streams.sort();
        streams.dedup();
        assert_eq!(streams.len(), REGISTRY.len(), "duplicate random stream");
        assert!(n.iter().all(|x| x.chars().all(|c| c.is_ascii_lowercase())), "{n:?}");
        assert!(!n.contains(&"linear"), "'linear' is the probe, not a method");
    }

    #[test]
    fn method_handles_parse_compare_and_serialize_by_name() {
        let lora = Method::named("lora").unwrap();
        assert_eq!(lora.as_str(), "lora");
        assert_eq!(serde_json::to_string(&lora).unwrap(), "\"lora\"");
        let back: Method = serde_json::from_str("\"lora\"").unwrap();
        assert_eq!(back, lora);
        assert!(Method::named("full").unwrap() < Method::named("prompt").unwrap());
        let e = Method::named("lorra").unwrap_err().to_string();
        assert!(e.contains("lorra") && e.contains("adapter") && e.contains("layernorm"), "{e}");
        assert!(Method::named("linear").unwrap_err().to_string().contains("stage 1"));
    }

    #[test]
    fn added_tensors_are_derived_from_the_registry() {
        for m in ["layers.0.blocks.0.attn.lora_q_a", "blocks.1.adapter_up.bias", "deep_prompt_embeddings_2"] {
            assert!(is_added_tensor(m), "{m}");
        }
        for b in ["blocks.0.norm1.weight", "blocks.0.attn.qkv.bias", "head.fc.weight"] {
            assert!(!is_added_tensor(b), "{b}");
        }
        // Every method that adds layers declares its prefix, and the tensors it creates carry it.
        for m in Method::all() {
            let s = Settings::default();
            if m.injector(&s).unwrap().is_some() {
                assert!(m.prefix().is_some(), "{m} adds layers but declares no prefix");
            }
        }
    }

    #[test]
    fn trainable_sets_follow_each_methods_rule() {
        let all = names_of(&[
            "layers.0.blocks.0.attn.qkv.weight",
            "layers.0.blocks.0.attn.qkv.bias",
            "layers.0.blocks.0.attn.relative_position_bias_table",
            "layers.0.blocks.0.norm1.weight",
            "layers.0.blocks.0.norm1.bias",
            "layers.0.blocks.0.attn.lora_q_a",
            "layers.0.blocks.0.adapter_up.bias",
            "head.fc.weight",
            "head.fc.bias",
        ]);
        let head = names_of(&["head.fc.weight", "head.fc.bias"]);
        let t = |m: Option<&str>| trainable_names(m.map(|m| Method::named(m).unwrap()), &all, &head);
        assert_eq!(t(None), vec!["head.fc.bias", "head.fc.weight"]);
        assert_eq!(t(Some("full")).len(), all.len());
        let b = t(Some("bias"));
        assert!(b.contains(&"layers.0.blocks.0.attn.relative_position_bias_table".to_string()));
        assert!(b.contains(&"layers.0.blocks.0.adapter_up.bias".to_string()));
        assert!(!b.contains(&"layers.0.blocks.0.norm1.weight".to_string()));
        assert_eq!(t(Some("lora")), vec!["head.fc.bias", "head.fc.weight", "layers.0.blocks.0.attn.lora_q_a"]);
        assert_eq!(
            t(Some("layernorm")),
            vec!["head.fc.bias", "head.fc.weight", "layers.0.blocks.0.norm1.bias", "layers.0.blocks.0.norm1.weight"]
        );
    }
}
