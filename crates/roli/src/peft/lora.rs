//! LoRA on attention query and value (the reference design): `q += s·B_q(A_q(drop(x)))`,
//! `v += s·B_v(A_v(drop(x)))`, `s = alpha/rank`, on the fused `attn.qkv` output. A is
//! kaiming-uniform (PyTorch's Linear default) and B zero, so the model starts as the backbone;
//! the reference's dead A = B = 0 is `[faithful] lora_zero_init`.
use super::{PeftMethod, Settings};
use roli_models::peft::{AttnHook, BlockExtras, BlockSite, PeftSpec};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Init};
use tch::Tensor;

/// Every LoRA tensor name contains this (`attn.lora_q_a`, …).
pub const PREFIX: &str = "lora_";

/// `[finetune.lora]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    #[serde(default = "default_rank")]
    pub rank: i64,
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Inactive in the reference (the encoder runs in eval mode).
    #[serde(default = "default_dropout")]
    pub dropout: f64,
}

fn default_rank() -> i64 {
    16
}
fn default_alpha() -> f64 {
    16.0
}
fn default_dropout() -> f64 {
    0.1
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig { rank: default_rank(), alpha: default_alpha(), dropout: default_dropout() }
    }
}

pub struct Lora;

impl PeftMethod for Lora {
    fn name(&self) -> &'static str {
        "lora"
    }
    fn stream(&self) -> u64 {
        3
    }
    fn describe(&self) -> &'static str {
        "low-rank updates of attention q and v"
    }
    fn prefix(&self) -> Option<&'static str> {
        Some(PREFIX)
    }
    fn needs_blocks(&self) -> bool {
        true
    }
    fn injector(&self, s: &Settings) -> anyhow::Result<Option<Box<dyn PeftSpec>>> {
        if s.lora.rank < 1 {
            anyhow::bail!("finetune.lora.rank = {} must be ≥ 1", s.lora.rank);
        }
        Ok(Some(Box::new(LoraSpec {
            rank: s.lora.rank,
            alpha: s.lora.alpha,
            dropout: s.lora.dropout,
            zero_init: s.lora_zero_init,
        })))
    }
}

/// The build-time spec: one [`LoraQv`] per block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoraSpec {
    pub rank: i64,
    pub alpha: f64,
    pub dropout: f64,
    /// The reference's `ZEROINIT` (A = 0 as well as B): gradients stay exactly zero.
    pub zero_init: bool,
}

/// kaiming_uniform_(a=√5) on a `[out, in]` weight, i.e. U(±1/√in) — PyTorch's Linear default and
/// LoRA's A init.
pub(crate) fn kaiming_uniform_a5(fan_in: i64) -> Init {
    let b = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -b, up: b }
}

#[derive(Debug)]
struct LoraQv {
    a_q: Tensor,
    b_q: Tensor,
    a_v: Tensor,
    b_v: Tensor,
    scale: f64,
    dropout: f64,
    dim: i64,
}

impl AttnHook for LoraQv {
    fn qkv(&self, x: &Tensor, qkv: Tensor, train: bool) -> Tensor {
        let xd = if train && self.dropout > 0.0 { x.dropout(self.dropout, true) } else { x.shallow_clone() };
        let dq = xd.matmul(&self.a_q.tr()).matmul(&self.b_q.tr()) * self.scale;
        let dv = xd.matmul(&self.a_v.tr()).matmul(&self.b_v.tr()) * self.scale;
        let c = self.dim;
        let q = qkv.narrow(-1, 0, c) + dq;
        let k = qkv.narrow(-1, c, c);
        let v = qkv.narrow(-1, 2 * c, c) + dv;
        Tensor::cat(&[q, k, v], -1)
    }
}

impl PeftSpec for LoraSpec {
    fn block_extras(&self, p: &nn::Path, site: &BlockSite) -> BlockExtras {
        let c = site.dim;
        let a_init = if self.zero_init { Init::Const(0.0) } else { kaiming_uniform_a5(c) };
        let ap = p / "attn";
        let var = |what: &str, dims: &[i64], init| ap.var(&format!("{PREFIX}{what}"), dims, init);
        let hook = LoraQv {
            a_q: var("q_a", &[self.rank, c], a_init),
            b_q: var("q_b", &[c, self.rank], Init::Const(0.0)),
            a_v: var("v_a", &[self.rank, c], a_init),
            b_v: var("v_b", &[c, self.rank], Init::Const(0.0)),
            scale: self.alpha / self.rank as f64,
            dropout: self.dropout,
            dim: c,
        };
        BlockExtras::new(Some(Box::new(hook)), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn lora_starts_as_identity_and_adds_to_q_and_v_only() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let site = BlockSite { name: "blocks.0".into(), stage: None, index: 0, dim: 4, num_heads: 1 };
        let spec = LoraSpec { rank: 2, alpha: 2.0, dropout: 0.0, zero_init: false };
        let ex = spec.block_extras(&(vs.root() / "blocks" / 0), &site);
        let hook = ex.attn.unwrap();
        let x = Tensor::randn([1, 3, 4], (Kind::Float, tch::Device::Cpu));
        let qkv = Tensor::randn([1, 3, 12], (Kind::Float, tch::Device::Cpu));
        let out = hook.qkv(&x, qkv.shallow_clone(), false);
        assert_eq!(f64::try_from((&out - &qkv).abs().max()).unwrap(), 0.0, "B = 0 must make LoRA an identity at init");
        // Move B away from zero: k must stay untouched, q and v must change.
        tch::no_grad(|| {
            for (n, mut t) in vs.variables() {
                if n.ends_with("_b") {
                    let _ = t.fill_(0.5);
                }
            }
        });
        let out = hook.qkv(&x, qkv.shallow_clone(), false);
        let d = (&out - &qkv).abs();
        assert_eq!(f64::try_from(d.narrow(-1, 4, 4).max()).unwrap(), 0.0);
        assert!(f64::try_from(d.narrow(-1, 0, 4).max()).unwrap() > 0.0);
        assert!(f64::try_from(d.narrow(-1, 8, 4).max()).unwrap() > 0.0);
        let names: Vec<String> = vs.variables().into_keys().collect();
        assert!(names.iter().all(|n| n.starts_with("blocks.0.attn.lora_")), "{names:?}");
        assert!(names.iter().all(|n| Lora.trains(n) && super::super::is_added_tensor(n)));
    }
}
