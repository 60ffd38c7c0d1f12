//! Learning-rate schedule and scaling, as the reference uses them: the LR is `base·batch/256`,
//! and a per-epoch LambdaLR factor rises linearly from 0 over the warm-up epochs, then follows a
//! half cosine. Epoch 0 therefore runs at LR 0 — faithful, and reported in plans.
use serde::{Deserialize, Serialize};

/// The reference's LR scaling rule: `BASE_LR / 256 × BATCH_SIZE`.
pub fn scaled_lr(base_lr: f64, batch_size: usize) -> f64 {
    base_lr * batch_size as f64 / 256.0
}

/// A per-epoch LR multiplier.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// `e/w` for `e < w`, then `0.5·(1 + cos(π·(e−w)/(T−w)))` (the reference's WarmupCosineSchedule).
    WarmupCosine { warmup_epochs: u32 },
    /// Always 1.
    Constant,
}

impl Schedule {
    /// The multiplier for `epoch` (0-based) of `total` epochs.
    pub fn factor(&self, epoch: u32, total: u32) -> f64 {
        match *self {
            Schedule::Constant => 1.0,
            Schedule::WarmupCosine { warmup_epochs: w } => {
                if epoch < w {
                    epoch as f64 / w.max(1) as f64
                } else {
                    let span = total.saturating_sub(w).max(1) as f64;
                    let progress = (epoch - w) as f64 / span;
                    0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        let s = Schedule::WarmupCosine { warmup_epochs: 10 };
        assert_eq!(s.factor(0, 20), 0.0);
        assert_eq!(s.factor(5, 20), 0.5);
        assert_eq!(s.factor(10, 20), 1.0);
        // Last epochs of the reference runs (spec §5): 0.024 (T=20), 0.003 (T=40), 0.001 (T=60).
        assert!((s.factor(19, 20) - 0.0245).abs() < 1e-3);
        assert!((s.factor(39, 40) - 0.0027).abs() < 1e-3);
        assert!((s.factor(59, 60) - 0.00099).abs() < 1e-4);
        assert_eq!(Schedule::Constant.factor(3, 4), 1.0);
    }

    #[test]
    fn lr_scaling_is_batch_over_256() {
        assert_eq!(scaled_lr(0.05, 64), 0.0125);
        assert_eq!(scaled_lr(5e-4, 64), 1.25e-4);
    }
}
