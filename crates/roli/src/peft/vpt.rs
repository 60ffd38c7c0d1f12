//! VPT-deep visual prompts (Jia et al., ECCV 2022): learned tokens before every block. The prompt
//! layers themselves live with the model families (`roli_models::prompt`), because they act on
//! the whole token sequence; this method switches them on and trains them, with the prompt
//! dropout in train mode while the backbone stays in eval (the reference's `train()` override).
use super::{PeftMethod, Settings};
use roli_models::peft::{BlockExtras, BlockSite, PeftSpec};
use roli_models::prompt::{VptConfig, PROMPT_MARKER};
use serde::{Deserialize, Serialize};
use tch::nn;

/// `[finetune.prompt]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptConfig {
    #[serde(default = "default_tokens")]
    pub tokens: i64,
    #[serde(default = "default_dropout")]
    pub dropout: f64,
}

fn default_tokens() -> i64 {
    10
}
fn default_dropout() -> f64 {
    0.1
}

impl Default for PromptConfig {
    fn default() -> Self {
        PromptConfig { tokens: default_tokens(), dropout: default_dropout() }
    }
}

pub struct Prompt;

impl PeftMethod for Prompt {
    fn name(&self) -> &'static str {
        "prompt"
    }
    fn stream(&self) -> u64 {
        5
    }
    fn describe(&self) -> &'static str {
        "VPT-deep prompt tokens before every block"
    }
    fn prefix(&self) -> Option<&'static str> {
        Some(PROMPT_MARKER)
    }
    fn peft_train(&self) -> bool {
        true
    }
    fn needs_blocks(&self) -> bool {
        true
    }
    fn injector(&self, s: &Settings) -> anyhow::Result<Option<Box<dyn PeftSpec>>> {
        let c = VptConfig { tokens: s.prompt.tokens, dropout: s.prompt.dropout, ..VptConfig::REFERENCE };
        c.validate().map_err(|e| anyhow::anyhow!("finetune.prompt: {e}"))?;
        Ok(Some(Box::new(PromptSpec(c))))
    }
}

/// The build-time spec: prompts only, no per-block hooks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromptSpec(pub VptConfig);

impl PeftSpec for PromptSpec {
    fn block_extras(&self, _p: &nn::Path, _site: &BlockSite) -> BlockExtras {
        BlockExtras::default()
    }
    fn vpt(&self) -> Option<VptConfig> {
        Some(self.0)
    }
}
