//! Evaluation-integrity checks: pure functions returning typed flags.
//!
//! A robust-accuracy number is only as good as the attack behind it. Each function here tests one
//! symptom of a broken evaluation (AutoAttack's `checks.py` plus field.md §3) and returns
//! `Some(Flag)` when it fires. Checks never print; flags go into the report, and the caller decides
//! whether a flag blocks a headline number. `FLAGS.md` in this crate explains each flag.

use crate::model::Model;
use crate::stage_id::StageId;
use crate::threat::ThreatModel;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Tolerance (fraction of examples) for the accuracy comparisons, AutoAttack's 0.2%.
pub const ACC_TOLERANCE: f64 = 0.002;
/// Logit spread across repeated passes above which a model counts as randomised (AutoAttack's 1e-4).
pub const RANDOMIZED_ALPHA: f64 = 1e-4;
/// Slack on ‖δ‖ ≤ eps for float rounding.
pub const NORM_SLACK: f64 = 1e-5;

/// A failed integrity check. Each variant says what was seen, its threshold and what to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "flag", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Flag {
    /// The attack at eps = 0 gave a different accuracy than the clean pass (tolerance 0).
    /// Means the model is not deterministic or not in eval mode (dropout, batch-norm statistics), or
    /// the attack changes inputs it should not. Put the model in eval mode; check for randomness.
    EpsZeroMismatch {
        /// Clean accuracy.
        clean: f64,
        /// Accuracy under the eps = 0 attack.
        attacked: f64,
    },
    /// Robust accuracy rose with a larger eps (beyond [`ACC_TOLERANCE`]). A stronger threat model can
    /// only lower the true robust accuracy, so the attack is failing at the larger eps: gradient
    /// masking or a bad step size. Use more steps/restarts, APGD or Square.
    NonMonotoneInEps {
        /// The smaller eps.
        eps_lo: f64,
        /// Accuracy at the smaller eps.
        acc_lo: f64,
        /// The larger eps.
        eps_hi: f64,
        /// Accuracy at the larger eps.
        acc_hi: f64,
    },
    /// Robust accuracy rose with more attack steps or restarts (beyond [`ACC_TOLERANCE`]). More budget
    /// can only help a working attack: suspect masking or an unstable step size.
    NonMonotoneInSteps {
        /// The smaller budget.
        steps_lo: usize,
        /// Accuracy with it.
        acc_lo: f64,
        /// The larger budget.
        steps_hi: usize,
        /// Accuracy with it.
        acc_hi: f64,
    },
    /// AutoAttack left more points robust than PGD (beyond [`ACC_TOLERANCE`]). AA includes stronger
    /// attacks and must not be weaker; this points to a bug or a misconfigured AA. Compare per example.
    AaWeakerThanPgd {
        /// AA robust accuracy.
        aa: f64,
        /// PGD robust accuracy.
        pgd: f64,
    },
    /// Some perturbation exceeds eps (by more than [`NORM_SLACK`] relative) or some x_adv leaves [0, 1]
    /// or is NaN. The number is invalid: an attack bug. Do not report it.
    PerturbationOutOfBounds {
        /// Examples violating the ball.
        over_eps: usize,
        /// Largest perturbation norm seen.
        max_norm: f64,
        /// Entries outside [0, 1].
        out_of_box: usize,
        /// NaN entries.
        nan: usize,
    },
    /// Some examples have an all-zero (or NaN) input gradient. Gradient attacks cannot move them, so
    /// their robustness is not tested: typical of quantisation, `sign`, saturated softmax or
    /// non-differentiable preprocessing. Use Square, BPDA, or margin/DLR losses. Raised if any.
    ZeroGradient {
        /// Examples with ‖∇ₓL‖₁ = 0.
        zero: usize,
        /// Examples with NaN gradients.
        nan: usize,
        /// Examples checked.
        total: usize,
    },
    /// Logits differ across repeated forward passes of the same input (spread above
    /// [`RANDOMIZED_ALPHA`]) or the predictions change. The model is randomised; deterministic attacks
    /// are then unreliable. Use the `aa-rand` preset (EoT) or remove the randomness.
    Randomized {
        /// Largest L2 distance between normalised logits of two passes.
        max_logit_diff: f64,
    },
    /// The outputs look like probabilities (in [0, 1], rows sum to 1), not logits. CE on softmax
    /// output saturates and masks gradients. Return logits from the model.
    SoftmaxOutput,
    /// Square (black-box) broke points that the white-box attacks before it did not (robust accuracy
    /// dropped by more than [`ACC_TOLERANCE`]). Gradients are misleading: gradient masking. Use more
    /// Square queries/restarts or an adaptive attack.
    SquareBeatsWhiteBox {
        /// Drop in robust accuracy due to Square.
        delta: f64,
    },
    /// More target classes requested than the model has wrong classes. Fewer targets were possible.
    TooManyTargets {
        /// The stage.
        stage: StageId,
        /// Requested targets.
        requested: usize,
        /// Classes − 1.
        possible: usize,
    },
}

impl Flag {
    /// Section anchor in `FLAGS.md`.
    pub fn doc_anchor(&self) -> &'static str {
        match self {
            Flag::EpsZeroMismatch { .. } => "eps-zero-mismatch",
            Flag::NonMonotoneInEps { .. } => "non-monotone-in-eps",
            Flag::NonMonotoneInSteps { .. } => "non-monotone-in-steps",
            Flag::AaWeakerThanPgd { .. } => "aa-weaker-than-pgd",
            Flag::PerturbationOutOfBounds { .. } => "perturbation-out-of-bounds",
            Flag::ZeroGradient { .. } => "zero-gradient",
            Flag::Randomized { .. } => "randomized",
            Flag::SoftmaxOutput => "softmax-output",
            Flag::SquareBeatsWhiteBox { .. } => "square-beats-white-box",
            Flag::TooManyTargets { .. } => "too-many-targets",
        }
    }

    /// A one-line message for logs, pointing to the documentation.
    pub fn message(&self) -> String {
        let body = match self {
            Flag::EpsZeroMismatch { clean, attacked } => {
                format!("attack at eps=0 gives {attacked:.4} but clean accuracy is {clean:.4}")
            }
            Flag::NonMonotoneInEps { eps_lo, acc_lo, eps_hi, acc_hi } => {
                format!("robust accuracy rises from {acc_lo:.4} at eps {eps_lo} to {acc_hi:.4} at eps {eps_hi}")
            }
            Flag::NonMonotoneInSteps { steps_lo, acc_lo, steps_hi, acc_hi } => {
                format!("robust accuracy rises from {acc_lo:.4} with {steps_lo} steps to {acc_hi:.4} with {steps_hi}")
            }
            Flag::AaWeakerThanPgd { aa, pgd } => format!("AutoAttack robust accuracy {aa:.4} is above PGD's {pgd:.4}"),
            Flag::PerturbationOutOfBounds { over_eps, max_norm, out_of_box, nan } => {
                format!("{over_eps} perturbations exceed eps (max {max_norm:.6}), {out_of_box} values outside [0,1], {nan} NaN")
            }
            Flag::ZeroGradient { zero, nan, total } => {
                format!("{zero} of {total} points have zero input gradient and {nan} NaN")
            }
            Flag::Randomized { max_logit_diff } => {
                format!("logits vary across passes (max diff {max_logit_diff:.2e}): randomised model")
            }
            Flag::SoftmaxOutput => "model output looks like probabilities, not logits".to_string(),
            Flag::SquareBeatsWhiteBox { delta } => {
                format!("Square lowered robust accuracy by {:.2}% after the white-box attacks", delta * 100.0)
            }
            Flag::TooManyTargets { stage, requested, possible } => {
                format!("{stage}: {requested} target classes requested, {possible} possible")
            }
        };
        format!("{body} (see roli-attacks FLAGS.md#{})", self.doc_anchor())
    }
}

/// Clean accuracy vs. the accuracy under an attack with eps = 0: they must be equal.
pub fn eps_zero(clean: f64, attacked_at_zero: f64) -> Option<Flag> {
    (clean != attacked_at_zero).then_some(Flag::EpsZeroMismatch { clean, attacked: attacked_at_zero })
}

/// `(eps, robust accuracy)` pairs: accuracy must not rise with eps.
pub fn monotone_in_eps(curve: &[(f64, f64)]) -> Option<Flag> {
    let mut c = curve.to_vec();
    c.sort_by(|a, b| a.0.total_cmp(&b.0));
    c.windows(2).find(|w| w[1].1 > w[0].1 + ACC_TOLERANCE).map(|w| Flag::NonMonotoneInEps {
        eps_lo: w[0].0,
        acc_lo: w[0].1,
        eps_hi: w[1].0,
        acc_hi: w[1].1,
    })
}

/// `(steps or restarts, robust accuracy)` pairs: accuracy must not rise with budget.
pub fn monotone_in_steps(curve: &[(usize, f64)]) -> Option<Flag> {
    let mut c = curve.to_vec();
    c.sort_by_key(|p| p.0);
    c.windows(2).find(|w| w[1].1 > w[0].1 + ACC_TOLERANCE).map(|w| Flag::NonMonotoneInSteps {
        steps_lo: w[0].0,
        acc_lo: w[0].1,
        steps_hi: w[1].0,
        acc_hi: w[1].1,
    })
}

/// AutoAttack must be at least as strong as PGD on the same points.
pub fn aa_not_weaker_than_pgd(aa: f64, pgd: f64) -> Option<Flag> {
    (aa > pgd + ACC_TOLERANCE).then_some(Flag::AaWeakerThanPgd { aa, pgd })
}

/// AutoAttack vs PGD example by example, on the examples both evaluated (matched by index).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AaVsPgd {
    /// Examples both attacks evaluated.
    pub n: usize,
    /// Robust accuracy under AutoAttack on them.
    pub aa: f64,
    /// Robust accuracy under PGD on the same examples.
    pub pgd: f64,
    /// Examples AutoAttack left robust that PGD broke (expected rare: AA runs other attacks, but
    /// a weaker overall AA shows up as many of these).
    pub aa_robust_pgd_broken: usize,
    /// [`Flag::AaWeakerThanPgd`] when AA's accuracy on the shared examples exceeds PGD's by more
    /// than [`ACC_TOLERANCE`].
    pub flag: Option<Flag>,
}

/// [`aa_not_weaker_than_pgd`] on the examples both evaluations hold: `pgd` and `aa` are
/// `(example index, robust)` pairs; indices in only one of them are ignored. `None` when no index
/// is shared (nothing to compare).
pub fn aa_vs_pgd_examples(pgd: &[(usize, bool)], aa: &[(usize, bool)]) -> Option<AaVsPgd> {
    let pgd: std::collections::HashMap<usize, bool> = pgd.iter().copied().collect();
    let (mut n, mut aa_k, mut pgd_k, mut only_aa) = (0usize, 0usize, 0usize, 0usize);
    for &(i, aa_robust) in aa {
        let Some(&pgd_robust) = pgd.get(&i) else { continue };
        n += 1;
        aa_k += aa_robust as usize;
        pgd_k += pgd_robust as usize;
        only_aa += (aa_robust && !pgd_robust) as usize;
    }
    if n == 0 {
        return None;
    }
    let (aa_acc, pgd_acc) = (aa_k as f64 / n as f64, pgd_k as f64 / n as f64);
    Some(AaVsPgd {
        n,
        aa: aa_acc,
        pgd: pgd_acc,
        aa_robust_pgd_broken: only_aa,
        flag: aa_not_weaker_than_pgd(aa_acc, pgd_acc),
    })
}

/// Every ‖x_adv − x‖ ≤ eps (relative slack [`NORM_SLACK`]), x_adv ∈ [0, 1] and finite.
pub fn perturbation_bounds(x: &Tensor, x_adv: &Tensor, threat: &ThreatModel) -> Option<Flag> {
    let mut acc = BoundsAccumulator::new(*threat);
    acc.add(x, x_adv);
    acc.flag()
}

/// [`perturbation_bounds`] over a split seen batch by batch: the flag after adding every batch
/// (in any order) is the flag of one call on their concatenation.
#[derive(Clone, Debug, PartialEq)]
pub struct BoundsAccumulator {
    threat: ThreatModel,
    over_eps: usize,
    max_norm: f64,
    out_of_box: usize,
    nan: usize,
}

impl BoundsAccumulator {
    /// Nothing seen yet.
    pub fn new(threat: ThreatModel) -> Self {
        Self { threat, over_eps: 0, max_norm: 0.0, out_of_box: 0, nan: 0 }
    }

    /// Adds a batch of clean inputs `x` and their adversarial versions `x_adv`.
    pub fn add(&mut self, x: &Tensor, x_adv: &Tensor) {
        let _g = tch::no_grad_guard();
        self.nan += x_adv.isnan().sum(Kind::Int64).int64_value(&[]) as usize;
        let norms = self.threat.norm().per_example(&(x_adv - x)).nan_to_num(0.0, None, None);
        self.over_eps += norms.gt(self.limit()).sum(Kind::Int64).int64_value(&[]) as usize;
        if norms.numel() > 0 {
            // Norms are >= 0 (NaN mapped to 0), so folding from 0 equals the maximum over all rows.
            self.max_norm = self.max_norm.max(norms.max().double_value(&[]));
        }
        self.out_of_box += (x_adv.lt(0.0).logical_or(&x_adv.gt(1.0))).sum(Kind::Int64).int64_value(&[]) as usize;
    }

    /// Adds `rows` examples returned unchanged (x_adv = x, perturbation 0) that hold `nan` NaN entries
    /// and `out_of_box` entries outside [0, 1]: what [`BoundsAccumulator::add`] counts for them.
    pub fn add_unchanged(&mut self, rows: usize, nan: usize, out_of_box: usize) {
        if rows == 0 {
            return;
        }
        // A zero norm (x − x, or NaN − NaN mapped to 0) is over eps only for a negative limit,
        // compared in f32 as the tensor comparison does.
        if 0.0f32 > self.limit() as f32 {
            self.over_eps += rows;
        }
        self.nan += nan;
        self.out_of_box += out_of_box;
    }

    /// NaN entries of x_adv seen so far.
    pub fn nan(&self) -> usize {
        self.nan
    }

    /// The flag, if anything seen so far is out of bounds.
    pub fn flag(&self) -> Option<Flag> {
        let (over_eps, max_norm, out_of_box, nan) = (self.over_eps, self.max_norm, self.out_of_box, self.nan);
        (over_eps + out_of_box + nan > 0).then_some(Flag::PerturbationOutOfBounds {
            over_eps,
            max_norm,
            out_of_box,
            nan,
        })
    }

    fn limit(&self) -> f64 {
        self.threat.eps() * (1.0 + NORM_SLACK) + 1e-7
    }
}

/// Fraction of examples whose CE input gradient is all zero or NaN, at the clean points.
pub fn zero_gradients(model: &dyn Model, x: &Tensor, y: &Tensor) -> Result<Option<Flag>, crate::AttackError> {
    let (_, _, g) = crate::model::loss_and_grad(model, x, 1, &|z| crate::loss::ce(z, y))?;
    Ok(zero_gradient_flag(&g))
}

/// The [`Flag::ZeroGradient`] test on a gradient batch.
pub fn zero_gradient_flag(grad: &Tensor) -> Option<Flag> {
    let n = grad.size()[0];
    let flat = grad.reshape([n, -1]);
    let nan = flat.isnan().any_dim(1, false).sum(Kind::Int64).int64_value(&[]) as usize;
    let zero =
        flat.abs().sum_dim_intlist(&[1i64][..], false, Kind::Float).eq(0.0).sum(Kind::Int64).int64_value(&[]) as usize;
    (zero + nan > 0).then_some(Flag::ZeroGradient { zero, nan, total: n as usize })
}

/// Runs `passes` forward passes on the same batch; flags spread of L2-normalised logits above
/// [`RANDOMIZED_ALPHA`] or any change in the number of correct predictions (AutoAttack's check).
pub fn randomized(model: &dyn Model, x: &Tensor, y: &Tensor, passes: usize) -> Option<Flag> {
    let _g = tch::no_grad_guard();
    let mut outs = Vec::new();
    let mut correct = Vec::new();
    for _ in 0..passes.max(2) {
        let z = model.logits(x);
        correct.push(z.argmax(1, false).eq_tensor(y).sum(Kind::Int64).int64_value(&[]));
        let nrm = crate::threat::Norm::L2.per_example(&z).unsqueeze(1);
        outs.push(&z / (nrm + 1e-10));
    }
    let mut max_diff = 0.0f64;
    for i in 0..outs.len() {
        for j in i + 1..outs.len() {
            let d = crate::threat::Norm::L2.per_example(&(&outs[i] - &outs[j])).max().double_value(&[]);
            max_diff = max_diff.max(d);
        }
    }
    let changed = correct.windows(2).any(|w| w[0] != w[1]);
    (changed || max_diff > RANDOMIZED_ALPHA).then_some(Flag::Randomized { max_logit_diff: max_diff })
}

/// Flags probability-like outputs (AutoAttack's `check_range_output`).
pub fn softmax_output(logits: &Tensor) -> Option<Flag> {
    let a = 1e-5;
    let max_ok = logits.max().double_value(&[]) < 1.0 + a;
    let min_ok = logits.min().double_value(&[]) > -a;
    let sums = (logits.sum_dim_intlist(&[-1i64][..], false, Kind::Float) - 1.0).abs();
    let sum_ok = sums.lt(a).all().int64_value(&[]) == 1;
    (max_ok && min_ok && sum_ok).then_some(Flag::SoftmaxOutput)
}

/// `(stage, robust accuracy after it)` in cascade order: flags Square lowering the accuracy left by
/// the white-box stages before it by more than [`ACC_TOLERANCE`].
pub fn square_vs_white_box(stages: &[(StageId, f64)]) -> Option<Flag> {
    let pos = stages.iter().position(|(id, _)| *id == StageId::Square)?;
    if pos == 0 {
        return None;
    }
    let before = stages[pos - 1].1;
    let after = stages[pos].1;
    (after < before - ACC_TOLERANCE).then_some(Flag::SquareBeatsWhiteBox { delta: before - after })
}

/// Target count vs. classes.
pub fn too_many_targets(stage: StageId, requested: usize, n_classes: usize) -> Option<Flag> {
    let possible = n_classes.saturating_sub(1);
    (requested > possible).then_some(Flag::TooManyTargets { stage, requested, possible })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn eps_zero_flag() {
        assert_eq!(eps_zero(0.9, 0.9), None);
        assert!(matches!(eps_zero(0.9, 0.89), Some(Flag::EpsZeroMismatch { .. })));
    }

    #[test]
    fn monotonicity_flags() {
        assert_eq!(monotone_in_eps(&[(0.0, 0.99), (0.1, 0.9), (0.3, 0.5)]), None);
        let f = monotone_in_eps(&[(0.3, 0.6), (0.1, 0.5)]).unwrap();
        assert_eq!(f, Flag::NonMonotoneInEps { eps_lo: 0.1, acc_lo: 0.5, eps_hi: 0.3, acc_hi: 0.6 });
        assert_eq!(monotone_in_steps(&[(10, 0.5), (40, 0.45)]), None);
        assert!(monotone_in_steps(&[(10, 0.5), (40, 0.55)]).is_some());
        // Within tolerance is fine.
        assert_eq!(monotone_in_steps(&[(10, 0.5), (40, 0.501)]), None);
    }

    #[test]
    fn aa_vs_pgd_and_square_flags() {
        assert_eq!(aa_not_weaker_than_pgd(0.4, 0.45), None);
        assert!(aa_not_weaker_than_pgd(0.5, 0.45).is_some());
        let ok = [(StageId::ApgdCe, 0.5), (StageId::ApgdT, 0.48), (StageId::Square, 0.48)];
        assert_eq!(square_vs_white_box(&ok), None);
        let bad = [(StageId::ApgdCe, 0.5), (StageId::ApgdT, 0.48), (StageId::Square, 0.40)];
        let f = square_vs_white_box(&bad).unwrap();
        assert!(matches!(f, Flag::SquareBeatsWhiteBox { delta } if (delta - 0.08).abs() < 1e-9));
        assert!(f.message().contains("FLAGS.md#square-beats-white-box"));
    }

    #[test]
    fn aa_vs_pgd_on_shared_examples() {
        // PGD on 0..6, AA on 0..4: only indices 0..4 count.
        let pgd = [(0, true), (1, true), (2, false), (3, false), (4, true), (5, true)];
        let ok = aa_vs_pgd_examples(&pgd, &[(0, true), (1, false), (2, false), (3, false)]).unwrap();
        assert_eq!((ok.n, ok.aa_robust_pgd_broken, ok.flag.clone()), (4, 0, None));
        assert_eq!((ok.aa, ok.pgd), (0.25, 0.5));
        // AA robust where PGD broke them: counted, and the aggregate flags.
        let bad = aa_vs_pgd_examples(&pgd, &[(0, true), (1, true), (2, true), (3, false)]).unwrap();
        assert_eq!(bad.aa_robust_pgd_broken, 1);
        assert_eq!(bad.flag, Some(Flag::AaWeakerThanPgd { aa: 0.75, pgd: 0.5 }));
        // Swapped per-example disagreement with equal totals: counted, not flagged.
        let even = aa_vs_pgd_examples(&pgd, &[(0, false), (1, true), (2, true), (3, false)]).unwrap();
        assert_eq!((even.aa_robust_pgd_broken, even.flag), (1, None));
        // Indices AA ran on but PGD did not are not compared; nothing shared: None.
        assert_eq!(aa_vs_pgd_examples(&pgd, &[(9, true)]), None);
        assert_eq!(aa_vs_pgd_examples(&pgd, &[(9, true), (2, false)]).unwrap().n, 1);
    }

    #[test]
    fn bounds_flag() {
        let x = Tensor::full([2, 1, 2, 2], 0.5, (Kind::Float, Device::Cpu));
        let tm = ThreatModel::Linf { eps: 0.1 };
        assert_eq!(perturbation_bounds(&x, &(&x + 0.1), &tm), None);
        let f = perturbation_bounds(&x, &(&x + 0.2), &tm).unwrap();
        assert!(matches!(f, Flag::PerturbationOutOfBounds { over_eps: 2, out_of_box: 0, nan: 0, .. }));
        let f = perturbation_bounds(&(&x + 0.5), &(&x + 0.55), &tm).unwrap();
        assert!(matches!(f, Flag::PerturbationOutOfBounds { over_eps: 0, out_of_box: 8, .. }));
    }

    #[test]
    fn bounds_accumulated_over_batches_equal_one_call() {
        tch::manual_seed(2);
        let x = Tensor::rand([7, 1, 3, 3], (Kind::Float, Device::Cpu)) * 1.2 - 0.1;
        let d = (Tensor::rand([7, 1, 3, 3], (Kind::Float, Device::Cpu)) - 0.5) * 0.25;
        let x_adv = (&x + d).clamp(-0.05, 1.0);
        let _ = x_adv.get(2).get(0).get(1).get(1).fill_(f64::NAN);
        for tm in [ThreatModel::Linf { eps: 0.1 }, ThreatModel::L2 { eps: 0.2 }, ThreatModel::L1 { eps: 0.5 }] {
            let whole = perturbation_bounds(&x, &x_adv, &tm);
            assert!(whole.is_some());
            let mut acc = BoundsAccumulator::new(tm);
            for (s, l) in [(0, 3), (3, 1), (4, 3)] {
                acc.add(&x.narrow(0, s, l), &x_adv.narrow(0, s, l));
            }
            assert_eq!(acc.flag(), whole, "{tm:?}");
        }
        // Unchanged rows count their NaN and out-of-box entries, never a perturbation.
        let x = Tensor::full([2, 1, 2, 2], 0.5, (Kind::Float, Device::Cpu));
        let tm = ThreatModel::Linf { eps: 0.1 };
        let mut acc = BoundsAccumulator::new(tm);
        acc.add_unchanged(5, 0, 0);
        acc.add(&x, &(&x + 0.05));
        assert_eq!(acc.flag(), None);
        acc.add_unchanged(1, 2, 3);
        let f = acc.flag();
        assert!(
            matches!(f, Some(Flag::PerturbationOutOfBounds { over_eps: 0, out_of_box: 3, nan: 2, max_norm })
                if (max_norm - 0.05).abs() < 1e-6),
            "{f:?}"
        );
        assert_eq!(acc.nan(), 2);
    }

    #[test]
    fn gradient_randomness_and_softmax_flags() {
        let g = Tensor::cat(
            &[Tensor::zeros([1, 4], (Kind::Float, Device::Cpu)), Tensor::ones([2, 4], (Kind::Float, Device::Cpu))],
            0,
        );
        assert_eq!(zero_gradient_flag(&g), Some(Flag::ZeroGradient { zero: 1, nan: 0, total: 3 }));
        assert_eq!(zero_gradient_flag(&Tensor::ones([2, 4], (Kind::Float, Device::Cpu))), None);

        let x = Tensor::rand([4, 3], (Kind::Float, Device::Cpu));
        let y = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
        let det = |x: &Tensor| x * 2.0;
        assert_eq!(randomized(&det, &x, &y, 5), None);
        let noisy = |x: &Tensor| x + Tensor::randn(x.size(), (Kind::Float, Device::Cpu)) * 0.1;
        assert!(matches!(randomized(&noisy, &x, &y, 5), Some(Flag::Randomized { .. })));

        let p = Tensor::from_slice(&[0.2f32, 0.8, 0.5, 0.5]).view([2, 2]);
        assert_eq!(softmax_output(&p), Some(Flag::SoftmaxOutput));
        assert_eq!(softmax_output(&(p * 3.0)), None);
        assert!(too_many_targets(StageId::ApgdT, 9, 10).is_none());
        assert!(too_many_targets(StageId::FabT, 9, 5).is_some());
    }
}
