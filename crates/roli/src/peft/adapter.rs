//! Pfeiffer adapter after the MLP: `m + up(gelu(down(m)))`, hidden width `C / reduction`. The down
//! projection is kaiming-uniform and the up projection zero, so the model starts as the backbone
//! with live gradients; the reference's all-zero adapters are `[faithful] adapter_zero_init`.
use super::lora::kaiming_uniform_a5;
use super::{PeftMethod, Settings};
use roli_models::peft::{BlockExtras, BlockSite, MlpHook, PeftSpec};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Init};
use tch::Tensor;

/// Every adapter tensor name contains this (`adapter_down.weight`, …).
pub const PREFIX: &str = "adapter_";

/// `[finetune.adapter]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    #[serde(default = "default_reduction")]
    pub reduction: i64,
}

fn default_reduction() -> i64 {
    8
}

impl Default for AdapterConfig {
    fn default() -> Self {
        AdapterConfig { reduction: default_reduction() }
    }
}

pub struct Adapter;

impl PeftMethod for Adapter {
    fn name(&self) -> &'static str {
        "adapter"
    }
    fn stream(&self) -> u64 {
        4
    }
    fn describe(&self) -> &'static str {
        "Pfeiffer bottleneck adapters after each MLP"
    }
    fn prefix(&self) -> Option<&'static str> {
        Some(PREFIX)
    }
    fn needs_blocks(&self) -> bool {
        true
    }
    fn injector(&self, s: &Settings) -> anyhow::Result<Option<Box<dyn PeftSpec>>> {
        if s.adapter.reduction < 1 {
            anyhow::bail!("finetune.adapter.reduction = {} must be ≥ 1", s.adapter.reduction);
        }
        Ok(Some(Box::new(AdapterSpec { reduction: s.adapter.reduction, zero_init: s.adapter_zero_init })))
    }
}

/// The build-time spec: one [`AdapterLayer`] per block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdapterSpec {
    pub reduction: i64,
    /// The reference's all-zero init: only `up.bias` ever receives gradient.
    pub zero_init: bool,
}

#[derive(Debug)]
struct AdapterLayer {
    down: nn::Linear,
    up: nn::Linear,
}

impl MlpHook for AdapterLayer {
    fn mlp_out(&self, m: Tensor, _train: bool) -> Tensor {
        let h = m.apply(&self.down).gelu("none").apply(&self.up);
        m + h
    }
}

impl PeftSpec for AdapterSpec {
    fn block_extras(&self, p: &nn::Path, site: &BlockSite) -> BlockExtras {
        let c = site.dim;
        let h = (c / self.reduction).max(1);
        let zero = nn::LinearConfig { ws_init: Init::Const(0.0), bs_init: Some(Init::Const(0.0)), bias: true };
        let down_cfg = if self.zero_init {
            zero
        } else {
            nn::LinearConfig { ws_init: kaiming_uniform_a5(c), bs_init: Some(Init::Const(0.0)), bias: true }
        };
        let layer = AdapterLayer {
            down: nn::linear(p / format!("{PREFIX}down"), c, h, down_cfg),
            up: nn::linear(p / format!("{PREFIX}up"), h, c, zero),
        };
        BlockExtras::new(None, Some(Box::new(layer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn adapter_sound_init_is_identity_with_live_gradients() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let site = BlockSite { name: "blocks.0".into(), stage: None, index: 0, dim: 8, num_heads: 1 };
        let ex = AdapterSpec { reduction: 4, zero_init: false }.block_extras(&(vs.root() / "blocks" / 0), &site);
        let hook = ex.mlp.unwrap();
        let m = Tensor::randn([2, 3, 8], (Kind::Float, tch::Device::Cpu));
        let out = hook.mlp_out(m.shallow_clone(), false);
        assert_eq!(f64::try_from((&out - &m).abs().max()).unwrap(), 0.0);
        out.sum(Kind::Float).backward();
        let vars = vs.variables();
        let g = vars["blocks.0.adapter_up.weight"].grad();
        assert!(
            f64::try_from(g.abs().sum(Kind::Float)).unwrap() > 0.0,
            "up.weight must receive gradient with a random down projection"
        );
        assert!(vars.keys().all(|n| Adapter.trains(n) && super::super::is_added_tensor(n)));
    }
}
