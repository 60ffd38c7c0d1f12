//! Per-example attack losses on logits: cross-entropy, DLR (Croce & Hein 2020), targeted DLR, margin.
//!
//! All return shape `[N]`; attacks maximise them. The formulas and the 1e-12 guards follow
//! AutoAttack's `dlr_loss` / `dlr_loss_targeted` so results can be compared per example.

use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

/// Which loss an untargeted attack maximises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Cross-entropy.
    Ce,
    /// Difference of Logits Ratio: scale-invariant margin, robust to logit rescaling (masking).
    Dlr,
    /// Logit margin z_y − max_{j≠y} z_j, negated so that larger is more adversarial.
    Margin,
}

impl LossKind {
    /// The loss of `logits` for true labels `y`.
    pub fn eval(self, logits: &Tensor, y: &Tensor) -> Tensor {
        match self {
            LossKind::Ce => ce(logits, y),
            LossKind::Dlr => dlr(logits, y),
            LossKind::Margin => -margin(logits, y),
        }
    }
}

/// Per-example cross-entropy.
pub fn ce(logits: &Tensor, y: &Tensor) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(y, None, Reduction::None, -100, 0.0)
}

fn at(t: &Tensor, idx: &Tensor) -> Tensor {
    t.gather(1, &idx.unsqueeze(1), false).squeeze_dim(1)
}

fn col(t: &Tensor, from_end: i64) -> Tensor {
    let k = t.size()[1];
    t.select(1, k - from_end)
}

/// Untargeted DLR: −(z_y − max_{j≠y} z_j) / (z_π1 − z_π3 + 1e-12), π = logits sorted descending.
pub fn dlr(logits: &Tensor, y: &Tensor) -> Tensor {
    let (sorted, ind) = logits.sort(1, false);
    let ind_top = (col(&ind, 1).eq_tensor(y)).to_kind(Kind::Float);
    let zy = at(logits, y);
    let num: Tensor = zy - col(&sorted, 2) * &ind_top - col(&sorted, 1) * (1.0 - &ind_top);
    let den: Tensor = col(&sorted, 1) - col(&sorted, 3) + 1e-12;
    -num / den
}

/// Targeted DLR: −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12). Needs at least 4 classes.
pub fn dlr_targeted(logits: &Tensor, y: &Tensor, y_target: &Tensor) -> Tensor {
    let (sorted, _) = logits.sort(1, false);
    let num: Tensor = at(logits, y) - at(logits, y_target);
    let den: Tensor = col(&sorted, 1) - (col(&sorted, 3) + col(&sorted, 4)) * 0.5 + 1e-12;
    -num / den
}

/// Margin z_y − max_{j≠y} z_j (negative means misclassified).
pub fn margin(logits: &Tensor, y: &Tensor) -> Tensor {
    let zy = at(logits, y);
    let others = logits.scatter_value(1, &y.unsqueeze(1), f64::NEG_INFINITY).amax([1i64], false);
    zy - others
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], k: i64) -> Tensor {
        Tensor::from_slice(v).view([-1, k])
    }

    #[test]
    fn dlr_matches_hand_computation() {
        // logits sorted: 4 > 3 > 1 > 0; true class 1 (logit 3, not top): -(3 - 4)/(4 - 1) = 1/3
        let z = t(&[0.0, 3.0, 4.0, 1.0], 4);
        let y = Tensor::from_slice(&[1i64]);
        let v = dlr(&z, &y).double_value(&[0]);
        assert!((v - 1.0 / 3.0).abs() < 1e-6, "{v}");
        // true class 2 is top: -(4 - 3)/(4 - 1) = -1/3
        let y = Tensor::from_slice(&[2i64]);
        assert!((dlr(&z, &y).double_value(&[0]) + 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn dlr_is_scale_invariant() {
        let z = t(&[0.2, 1.5, -0.3, 0.9, 0.1], 5);
        let y = Tensor::from_slice(&[3i64]);
        let a = dlr(&z, &y).double_value(&[0]);
        let b = dlr(&(&z * 100.0), &y).double_value(&[0]);
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }

    #[test]
    fn targeted_dlr_and_margin() {
        let z = t(&[0.0, 3.0, 4.0, 1.0], 4);
        let y = Tensor::from_slice(&[2i64]);
        let tgt = Tensor::from_slice(&[1i64]);
        // -(4 - 3) / (4 - (1 + 0)/2) = -1/3.5
        let v = dlr_targeted(&z, &y, &tgt).double_value(&[0]);
        assert!((v + 1.0 / 3.5).abs() < 1e-6, "{v}");
        assert!((margin(&z, &y).double_value(&[0]) - 1.0).abs() < 1e-6);
        let y1 = Tensor::from_slice(&[1i64]);
        assert!((margin(&z, &y1).double_value(&[0]) + 1.0).abs() < 1e-6);
    }
}
