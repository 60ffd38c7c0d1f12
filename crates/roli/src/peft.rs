//! Parameter-efficient finetuning methods, injected at build time through the models' PEFT seam
//! ([`roli_models::peft`]): LoRA on attention query and value, and the Pfeiffer adapter after the
//! MLP. Each method is a small config + the layers it adds + the rule for what trains
//! ([`trainable_names`]). Defaults are the sound initialisations; the reference's dead ones
//! (LoRA A = B = 0, all-zero adapters) are explicit `zero_init` flags (`[faithful]`).
use crate::config::Method;
use roli_models::peft::{AttnHook, BlockExtras, BlockSite, MlpHook, PeftSpec};
use tch::nn::{self, Init};
use tch::Tensor;

/// LoRA on q and v: `q += s·B_q(A_q(drop(x)))`, `v += s·B_v(A_v(drop(x)))`, `s = alpha/rank`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoraSpec {
    pub rank: i64,
    pub alpha: f64,
    pub dropout: f64,
    /// The reference's `ZEROINIT` (A = 0 as well as B): gradients stay exactly zero.
    pub zero_init: bool,
}

/// Pfeiffer adapter: `m + up(gelu(down(m)))`, hidden width `C / reduction`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdapterSpec {
    pub reduction: i64,
    /// The reference's all-zero init: only `up.bias` ever receives gradient.
    pub zero_init: bool,
}

/// A PEFT method's build-time spec.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Peft {
    None,
    Lora(LoraSpec),
    Adapter(AdapterSpec),
    /// VPT-deep prompts (built by `roli_models::prompt`).
    Prompt(roli_models::prompt::VptConfig),
}

/// kaiming_uniform_(a=√5) on a `[out, in]` weight, i.e. U(±1/√in) — PyTorch's Linear default and
/// LoRA's A init.
fn kaiming_uniform_a5(fan_in: i64) -> Init {
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

#[derive(Debug)]
struct Adapter {
    down: nn::Linear,
    up: nn::Linear,
}

impl MlpHook for Adapter {
    fn mlp_out(&self, m: Tensor, _train: bool) -> Tensor {
        let h = m.apply(&self.down).gelu("none").apply(&self.up);
        m + h
    }
}

impl PeftSpec for Peft {
    fn vpt(&self) -> Option<roli_models::prompt::VptConfig> {
        match self {
            Peft::Prompt(c) => Some(*c),
            _ => None,
        }
    }

    fn block_extras(&self, p: &nn::Path, site: &BlockSite) -> BlockExtras {
        match *self {
            Peft::None | Peft::Prompt(_) => BlockExtras::default(),
            Peft::Lora(s) => {
                let c = site.dim;
                let a_init = if s.zero_init { Init::Const(0.0) } else { kaiming_uniform_a5(c) };
                let ap = p / "attn";
                let hook = LoraQv {
                    a_q: ap.var("lora_q_a", &[s.rank, c], a_init),
                    b_q: ap.var("lora_q_b", &[c, s.rank], Init::Const(0.0)),
                    a_v: ap.var("lora_v_a", &[s.rank, c], a_init),
                    b_v: ap.var("lora_v_b", &[c, s.rank], Init::Const(0.0)),
                    scale: s.alpha / s.rank as f64,
                    dropout: s.dropout,
                    dim: c,
                };
                BlockExtras::new(Some(Box::new(hook)), None)
            }
            Peft::Adapter(s) => {
                let c = site.dim;
                let h = (c / s.reduction).max(1);
                let zero = nn::LinearConfig { ws_init: Init::Const(0.0), bs_init: Some(Init::Const(0.0)), bias: true };
                let down_cfg = if s.zero_init {
                    zero
                } else {
                    nn::LinearConfig { ws_init: kaiming_uniform_a5(c), bs_init: Some(Init::Const(0.0)), bias: true }
                };
                let hook = Adapter {
                    down: nn::linear(p / "adapter_down", c, h, down_cfg),
                    up: nn::linear(p / "adapter_up", h, c, zero),
                };
                BlockExtras::new(None, Some(Box::new(hook)))
            }
        }
    }
}

/// Substring that marks a method's own tensors.
pub fn method_marker(method: Method) -> Option<&'static str> {
    match method {
        Method::Lora => Some("lora_"),
        Method::Adapter => Some("adapter_"),
        Method::Prompt => Some("prompt"),
        _ => None,
    }
}

/// The names that train under `method`: the head always; plus nothing (linear), everything
/// (full), every name containing `bias` incl. Swin's relative-position tables (bias, as in the
/// reference's substring match), or the method's own tensors (LoRA, adapter, prompt).
pub fn trainable_names(method: Method, all: &[String], head: &[String]) -> Vec<String> {
    let mut out: Vec<String> = all
        .iter()
        .filter(|n| {
            head.contains(n)
                || match method {
                    Method::Linear => false,
                    Method::Full => true,
                    Method::Bias => n.contains("bias"),
                    m => method_marker(m).is_some_and(|mk| n.contains(mk)),
                }
        })
        .cloned()
        .collect();
    out.sort();
    out
}

/// Total elements of the named tensors.
pub fn count_elements(vars: &std::collections::HashMap<String, Tensor>, names: &[String]) -> i64 {
    names.iter().filter_map(|n| vars.get(n)).map(|t| t.numel() as i64).sum()
}

/// Does this method apply to a backbone family? (LoRA/adapter/prompt need transformer blocks.)
pub fn applies_to(method: Method, is_transformer: bool) -> bool {
    is_transformer || matches!(method, Method::Linear | Method::Full | Method::Bias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn trainable_sets_follow_the_reference_rules() {
        let all: Vec<String> = [
            "layers.0.blocks.0.attn.qkv.weight",
            "layers.0.blocks.0.attn.qkv.bias",
            "layers.0.blocks.0.attn.relative_position_bias_table",
            "layers.0.blocks.0.norm1.weight",
            "layers.0.blocks.0.attn.lora_q_a",
            "layers.0.blocks.0.adapter_up.bias",
            "head.fc.weight",
            "head.fc.bias",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let head = vec!["head.fc.weight".to_string(), "head.fc.bias".to_string()];
        assert_eq!(trainable_names(Method::Linear, &all, &head), vec!["head.fc.bias", "head.fc.weight"]);
        assert_eq!(trainable_names(Method::Full, &all, &head).len(), all.len());
        let b = trainable_names(Method::Bias, &all, &head);
        assert!(b.contains(&"layers.0.blocks.0.attn.relative_position_bias_table".to_string()));
        assert!(b.contains(&"layers.0.blocks.0.adapter_up.bias".to_string()));
        assert!(!b.contains(&"layers.0.blocks.0.norm1.weight".to_string()));
        assert_eq!(
            trainable_names(Method::Lora, &all, &head),
            vec!["head.fc.bias", "head.fc.weight", "layers.0.blocks.0.attn.lora_q_a"]
        );
    }

    #[test]
    fn lora_starts_as_identity_and_adds_to_q_and_v_only() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let site = BlockSite { name: "blocks.0".into(), stage: None, index: 0, dim: 4, num_heads: 1 };
        let spec = Peft::Lora(LoraSpec { rank: 2, alpha: 2.0, dropout: 0.0, zero_init: false });
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
    }

    #[test]
    fn adapter_sound_init_is_identity_with_live_gradients() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let site = BlockSite { name: "blocks.0".into(), stage: None, index: 0, dim: 8, num_heads: 1 };
        let ex = Peft::Adapter(AdapterSpec { reduction: 4, zero_init: false })
            .block_extras(&(vs.root() / "blocks" / 0), &site);
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
    }
}
