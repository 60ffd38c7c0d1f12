//! The trainability audit: which declared trainable elements actually receive a gradient.
//!
//! Until the first epoch that could move anything (LR > 0) is over, every batch ORs "gradient
//! non-zero" into a per-tensor mask; then the masks are summarised into a [`Trainability`] and a
//! stage whose tensors never received a gradient (e.g. all-zero LoRA/adapter initialisations)
//! stops with an error unless the plan allows dead tensors.
use anyhow::bail;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// Trainability as measured, not as declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trainability {
    pub nominal_tensors: usize,
    pub nominal_elements: i64,
    /// Elements whose gradient was non-zero at least once in the check window.
    pub effective_elements: i64,
    /// Tensors whose gradient was zero everywhere in the check window.
    pub dead_tensors: Vec<String>,
}

impl Trainability {
    /// From (name, elements, elements that ever had a non-zero gradient), in parameter order.
    pub fn from_counts<'a>(counts: impl IntoIterator<Item = (&'a str, i64, i64)>) -> Self {
        let mut tr =
            Trainability { nominal_tensors: 0, nominal_elements: 0, effective_elements: 0, dead_tensors: vec![] };
        for (name, nominal, effective) in counts {
            tr.nominal_tensors += 1;
            tr.nominal_elements += nominal;
            tr.effective_elements += effective;
            if effective == 0 {
                tr.dead_tensors.push(name.to_string());
            }
        }
        tr
    }

    /// Errors if some tensors are dead and the plan does not allow it.
    pub fn check(&self, label: &str, allow_dead: bool) -> anyhow::Result<()> {
        if !self.dead_tensors.is_empty() && !allow_dead {
            bail!(
                "{}: {} of {} declared trainable tensors never received a gradient (dead), e.g. {}; effective {} of {} elements. This happens with all-zero LoRA or adapter initialisations; use the default (sound) initialisation, or set the matching [faithful] flag to reproduce the reference deliberately",
                label,
                self.dead_tensors.len(),
                self.nominal_tensors,
                self.dead_tensors.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
                self.effective_elements,
                self.nominal_elements
            );
        }
        Ok(())
    }
}

/// Per trainable tensor: the mask of elements whose gradient was ever non-zero.
#[derive(Default)]
pub struct GradientAudit {
    ever: HashMap<String, Tensor>,
}

impl GradientAudit {
    /// ORs the current gradients' non-zero pattern into the masks (call after `backward`).
    pub fn record(&mut self, params: &[(String, Tensor)]) {
        for (name, t) in params {
            let g = t.grad();
            let nz = if g.defined() { g.ne(0.0) } else { t.zeros_like().to_kind(Kind::Bool) };
            let e = self.ever.entry(name.clone()).or_insert_with(|| nz.zeros_like());
            *e = e.logical_or(&nz);
        }
    }

    /// The masks so far as named CPU tensors (uint8), for a checkpoint taken before the window
    /// closes: a resumed stage then concludes the same [`Trainability`].
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> =
            self.ever.iter().map(|(n, m)| (n.clone(), m.to_kind(Kind::Uint8).to_device(tch::Device::Cpu))).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// An audit holding the masks of [`GradientAudit::state_tensors`], on `device`.
    pub fn from_state(device: tch::Device, tensors: Vec<(String, Tensor)>) -> Self {
        GradientAudit { ever: tensors.into_iter().map(|(n, m)| (n, m.to_kind(Kind::Bool).to_device(device))).collect() }
    }

    /// Summarises the masks of `params` and starts a new window.
    pub fn conclude(&mut self, params: &[(String, Tensor)]) -> Trainability {
        let tr = Trainability::from_counts(params.iter().map(|(name, t)| {
            let eff = self.ever.get(name).map(|e| e.sum(Kind::Int64).int64_value(&[])).unwrap_or(0);
            (name.as_str(), t.numel() as i64, eff)
        }));
        self.ever.clear();
        tr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_elements_and_dead_tensors_in_order() {
        let tr = Trainability::from_counts([("a", 6, 6), ("b", 4, 0), ("c", 10, 3), ("d", 1, 0)]);
        assert_eq!(tr.nominal_tensors, 4);
        assert_eq!((tr.nominal_elements, tr.effective_elements), (21, 9));
        assert_eq!(tr.dead_tensors, vec!["b", "d"]);
        assert!(tr.check("x", true).is_ok());
        let e = tr.check("full/roli", false).unwrap_err().to_string();
        assert!(e.starts_with("full/roli: 2 of 4 declared trainable tensors never received a gradient (dead), e.g. b, d; effective 9 of 21 elements."), "{e}");
        assert!(Trainability::from_counts([("a", 2, 1)]).check("x", false).is_ok());
    }

    #[test]
    fn masks_accumulate_until_concluded() {
        let opts = (Kind::Float, tch::Device::Cpu);
        let w = Tensor::zeros([2, 2], opts).set_requires_grad(true);
        let z = Tensor::zeros([3], opts).set_requires_grad(true);
        let untouched = Tensor::zeros([5], opts).set_requires_grad(true);
        let params = vec![
            ("w".to_string(), w.shallow_clone()),
            ("z".to_string(), z.shallow_clone()),
            ("u".to_string(), untouched),
        ];
        let mut audit = GradientAudit::default();
        // Batch 1: gradient on w[0,0] only; z's gradient is zero (multiplied by 0).
        let mask = Tensor::from_slice(&[1f32, 0., 0., 0.]).view([2, 2]);
        ((&w * &mask).sum(Kind::Float) + (&z * 0.0).sum(Kind::Float)).backward();
        audit.record(&params);
        // Batch 2: gradient on w[1,1].
        let _ = w.grad().zero_();
        let mask = Tensor::from_slice(&[0f32, 0., 0., 1.]).view([2, 2]);
        (&w * &mask).sum(Kind::Float).backward();
        audit.record(&params);
        let saved = GradientAudit::from_state(tch::Device::Cpu, audit.state_tensors()).conclude(&params);
        let tr = audit.conclude(&params);
        assert_eq!(saved, tr, "a checkpointed window concludes the same");
        assert_eq!((tr.nominal_tensors, tr.nominal_elements, tr.effective_elements), (3, 12, 2));
        assert_eq!(tr.dead_tensors, vec!["z", "u"]);
        // A new window starts empty.
        assert_eq!(audit.conclude(&params).effective_elements, 0);
    }
}
