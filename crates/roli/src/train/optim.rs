//! Optimisers written out (not tch's), because the reference's behaviour must be exact and their
//! state must be saved for resumable runs:
//! * SGD with momentum (PyTorch semantics: `d = g + wd·p`, `buf = μ·buf + d`, `p -= lr·buf`), with a
//!   weight decay per parameter (the reference gives the head bias none);
//! * HuggingFace-style AdamW (transformers' `AdamW`: eps added to `√v` before bias correction,
//!   decoupled decay `p -= lr·wd·p` applied after the Adam step), with no decay on any name
//!   containing `bias` — including Swin's `relative_position_bias_table`, as in the reference.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

/// Which update rule, with its constants.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerKind {
    Sgd { momentum: f64 },
    AdamW { beta1: f64, beta2: f64, eps: f64 },
}

impl OptimizerKind {
    /// The reference's SGD (momentum 0.9, no Nesterov).
    pub const REFERENCE_SGD: OptimizerKind = OptimizerKind::Sgd { momentum: 0.9 };
    /// The reference's AdamW (betas 0.9/0.999, eps 1e-6).
    pub const REFERENCE_ADAMW: OptimizerKind = OptimizerKind::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-6 };
}

/// Weight decay of one parameter under the reference's rules. SGD: `wd` except the head bias
/// (`head_bias`, the classifier's own bias name: `head.fc.bias`, `linear2.bias`, …);
impl std::fmt::Display for OptimizerKind {
    /// `SGD(momentum 0.9)`, `AdamW-HF(β 0.9/0.999, eps 1e-6)`: plans and dry runs print this.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptimizerKind::Sgd { momentum } => write!(f, "SGD(momentum {momentum})"),
            OptimizerKind::AdamW { beta1, beta2, eps } => write!(f, "AdamW-HF(β {beta1}/{beta2}, eps {eps:e})"),
        }
    }
}

/// AdamW: `wd` except names containing "bias".
pub fn weight_decay_for(kind: &OptimizerKind, name: &str, wd: f64, head_bias: &str) -> f64 {
    match kind {
        OptimizerKind::Sgd { .. } if name == head_bias => 0.0,
        OptimizerKind::Sgd { .. } => wd,
        OptimizerKind::AdamW { .. } if name.contains("bias") => 0.0,
        OptimizerKind::AdamW { .. } => wd,
    }
}

struct Param {
    name: String,
    tensor: Tensor,
    weight_decay: f64,
}

/// An optimiser over named parameters, with savable state.
pub struct Optimizer {
    pub kind: OptimizerKind,
    params: Vec<Param>,
    /// Per parameter: SGD `buf` or AdamW `m`, `v`.
    state: BTreeMap<String, Vec<Tensor>>,
    pub steps: u64,
    pub lr: f64,
}

impl Optimizer {
    /// `params` are (name, tensor) pairs that require grad; decay per [`weight_decay_for`].
    pub fn new(
        kind: OptimizerKind,
        params: Vec<(String, Tensor)>,
        weight_decay: f64,
        lr: f64,
        head_bias: &str,
    ) -> Self {
        let params = params
            .into_iter()
            .map(|(name, tensor)| Param {
                weight_decay: weight_decay_for(&kind, &name, weight_decay, head_bias),
                name,
                tensor,
            })
            .collect();
        Optimizer { kind, params, state: BTreeMap::new(), steps: 0, lr }
    }

    /// Names and weight decays, for the run's plan.
    pub fn groups(&self) -> Vec<(String, f64)> {
        self.params.iter().map(|p| (p.name.clone(), p.weight_decay)).collect()
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.tensor.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// One update from the current `.grad()`s. Parameters without a gradient are skipped
    /// (PyTorch does the same), but their state still counts the step.
    pub fn step(&mut self) {
        self.steps += 1;
        let t = self.steps as f64;
        let lr = self.lr;
        tch::no_grad(|| {
            for p in &mut self.params {
                let g = p.tensor.grad();
                if !g.defined() {
                    continue;
                }
                match self.kind {
                    OptimizerKind::Sgd { momentum } => {
                        let d = if p.weight_decay != 0.0 { &g + &p.tensor * p.weight_decay } else { g.shallow_clone() };
                        let st = self.state.entry(p.name.clone()).or_default();
                        let upd = if momentum != 0.0 {
                            if st.is_empty() {
                                st.push(d.detach().copy());
                            } else {
                                let _ = st[0].g_mul_scalar_(momentum).g_add_(&d);
                            }
                            st[0].shallow_clone()
                        } else {
                            d
                        };
                        let _ = p.tensor.g_sub_(&(upd * lr));
                    }
                    OptimizerKind::AdamW { beta1, beta2, eps } => {
                        let st = self.state.entry(p.name.clone()).or_default();
                        if st.is_empty() {
                            st.push(p.tensor.zeros_like());
                            st.push(p.tensor.zeros_like());
                        }
                        let _ = st[0].g_mul_scalar_(beta1).g_add_(&(&g * (1.0 - beta1)));
                        let _ = st[1].g_mul_scalar_(beta2).g_add_(&(&g * &g * (1.0 - beta2)));
                        let denom = st[1].sqrt() + eps;
                        let step_size = lr * (1.0 - beta2.powf(t)).sqrt() / (1.0 - beta1.powf(t));
                        let _ = p.tensor.g_sub_(&(&st[0] / denom * step_size));
                        if p.weight_decay != 0.0 {
                            let decay = &p.tensor * (lr * p.weight_decay);
                            let _ = p.tensor.g_sub_(&decay);
                        }
                    }
                }
            }
        });
    }

    /// The state as named tensors (`<param>#0`, `<param>#1`) for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.state
            .iter()
            .flat_map(|(n, v)| v.iter().enumerate().map(move |(i, t)| (format!("{n}#{i}"), t.shallow_clone())))
            .collect()
    }

    /// Restores state saved by [`Optimizer::state_tensors`]; names must match this optimiser's parameters.
    pub fn load_state(&mut self, steps: u64, tensors: Vec<(String, Tensor)>) -> Result<(), String> {
        let known: std::collections::HashSet<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
        let mut state: BTreeMap<String, Vec<(usize, Tensor)>> = BTreeMap::new();
        for (k, t) in tensors {
            let (name, idx) = k.rsplit_once('#').ok_or_else(|| format!("optimiser state key '{k}' lacks '#index'"))?;
            if !known.contains(name) {
                return Err(format!("optimiser state for unknown parameter '{name}' (the checkpoint was made with another trainable set)"));
            }
            let i: usize = idx.parse().map_err(|_| format!("bad optimiser state key '{k}'"))?;
            state.entry(name.to_string()).or_default().push((i, t));
        }
        self.state = state
            .into_iter()
            .map(|(n, mut v)| {
                v.sort_by_key(|(i, _)| *i);
                (n, v.into_iter().map(|(_, t)| t).collect())
            })
            .collect();
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn param(vals: &[f32]) -> Tensor {
        Tensor::from_slice(vals).set_requires_grad(true)
    }

    fn grad_of_sum_sq(p: &Tensor) {
        // L = sum(p^2) → g = 2p
        let l = (p * p).sum(Kind::Float);
        l.backward();
    }

    #[test]
    fn sgd_momentum_matches_pytorch_by_hand() {
        let p = param(&[1.0, -2.0]);
        let mut o = Optimizer::new(
            OptimizerKind::Sgd { momentum: 0.9 },
            vec![("w".into(), p.shallow_clone())],
            0.1,
            0.5,
            "head.bias",
        );
        // step 1: g = 2p = [2,-4]; d = g + 0.1p = [2.1,-4.2]; buf=d; p -= 0.5 d → [-0.05, 0.1]
        grad_of_sum_sq(&p);
        o.step();
        let v = Vec::<f32>::try_from(&p).unwrap();
        assert!((v[0] + 0.05).abs() < 1e-6 && (v[1] - 0.1).abs() < 1e-6, "{v:?}");
        // step 2: g = [-0.1, 0.2]; d = g + 0.1p = [-0.105, 0.21]; buf = 0.9·[2.1,-4.2] + d = [1.785, -3.57]
        o.zero_grad();
        grad_of_sum_sq(&p);
        o.step();
        let v = Vec::<f32>::try_from(&p).unwrap();
        assert!((v[0] - (-0.05 - 0.5 * 1.785)).abs() < 1e-5, "{v:?}");
    }

    #[test]
    fn hf_adamw_first_step_and_decay() {
        let p = param(&[1.0]);
        let mut o = Optimizer::new(
            OptimizerKind::REFERENCE_ADAMW,
            vec![("w".into(), p.shallow_clone())],
            0.01,
            0.1,
            "head.bias",
        );
        grad_of_sum_sq(&p);
        o.step();
        // m = 0.1·2 = 0.2; v = 0.001·4 = 0.004; denom = √0.004 + 1e-6;
        // step = 0.1·√(0.001)/0.1; p = 1 − step·m/denom, then p −= 0.1·0.01·p.
        let m = 0.2f64;
        let denom = 0.004f64.sqrt() + 1e-6;
        let step = 0.1 * (0.001f64).sqrt() / 0.1;
        let mut expect = 1.0 - step * m / denom;
        expect -= 0.1 * 0.01 * expect;
        let got = Vec::<f32>::try_from(&p).unwrap()[0] as f64;
        assert!((got - expect).abs() < 1e-6, "{got} vs {expect}");
    }

    #[test]
    fn decay_rules_follow_the_reference() {
        let a = OptimizerKind::REFERENCE_ADAMW;
        assert_eq!(
            weight_decay_for(&a, "layers.0.blocks.1.attn.relative_position_bias_table", 0.01, "head.fc.bias"),
            0.0
        );
        assert_eq!(weight_decay_for(&a, "blocks.0.norm1.weight", 0.01, "head.fc.bias"), 0.01);
        let s = OptimizerKind::REFERENCE_SGD;
        assert_eq!(weight_decay_for(&s, "head.fc.bias", 0.01, "head.fc.bias"), 0.0);
        assert_eq!(weight_decay_for(&s, "head.fc.weight", 0.01, "head.fc.bias"), 0.01);
        assert_eq!(weight_decay_for(&s, "linear2.bias", 0.01, "linear2.bias"), 0.0);
    }

    #[test]
    fn state_roundtrip_continues_identically() {
        let run = |split: bool| {
            let p = param(&[0.5, 1.5, -1.0]);
            let mut o = Optimizer::new(
                OptimizerKind::REFERENCE_ADAMW,
                vec![("w".into(), p.shallow_clone())],
                0.01,
                0.05,
                "head.bias",
            );
            for i in 0..4 {
                if split && i == 2 {
                    let saved: Vec<(String, Tensor)> =
                        o.state_tensors().into_iter().map(|(k, t)| (k, t.copy())).collect();
                    let steps = o.steps;
                    o = Optimizer::new(
                        OptimizerKind::REFERENCE_ADAMW,
                        vec![("w".into(), p.shallow_clone())],
                        0.01,
                        0.05,
                        "head.bias",
                    );
                    o.load_state(steps, saved).unwrap();
                }
                o.zero_grad();
                grad_of_sum_sq(&p);
                o.step();
            }
            Vec::<f32>::try_from(&p).unwrap()
        };
        assert_eq!(run(false), run(true));
        let mut o =
            Optimizer::new(OptimizerKind::REFERENCE_ADAMW, vec![("w".into(), param(&[1.0]))], 0.0, 0.1, "head.bias");
        assert!(o
            .load_state(1, vec![("other#0".into(), Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)))])
            .unwrap_err()
            .contains("unknown parameter"));
    }
}
