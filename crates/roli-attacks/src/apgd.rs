//! Auto-PGD (Croce & Hein, ICML 2020): APGD-CE, APGD-DLR and the targeted APGD-T.
//!
//! Written from the paper and the behaviour of the official AutoAttack code (`autopgd_base.py`):
//! step size 2·eps halved at the checkpoints of [`checkpoints`] when the loss oscillates or stalls
//! (ρ = 0.75), momentum 0.75 after the first step, restart from the best point after each halving,
//! AutoAttack's normalised random start, and the same order of random draws so that, with the same
//! seed and batch, results match the official code example by example on CPU.

use crate::attack::{check_inputs, nonzero1, put, Attack};
use crate::loss;
use crate::model::{loss_and_grad, Model};
use crate::restarts::{restart_loop, Round};
use crate::rng::seed_all;
use crate::stage_id::StageId;
use crate::threat::{bcast_shape, Norm, ThreatModel};
use crate::AttackError;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The loss APGD maximises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApgdLoss {
    /// Cross-entropy (APGD-CE).
    Ce,
    /// Untargeted DLR (APGD-DLR).
    Dlr,
    /// Targeted DLR against each of the top-`targets` wrong classes in turn (APGD-T).
    TargetedDlr {
        /// Number of target classes, taken in order of decreasing clean logit (default 9).
        targets: usize,
    },
}

/// APGD settings; `Default` is AutoAttack's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApgdConfig {
    /// Iterations per restart (100).
    pub n_iter: usize,
    /// Restarts (1 in AA standard, 5 in AA plus); each attacks only points not yet fooled.
    pub restarts: usize,
    /// Oscillation threshold ρ for halving the step size (0.75).
    pub rho: f64,
    /// Momentum weight of the previous step, used from the second iteration on (0.75).
    pub momentum: f64,
    /// Gradient samples averaged per step, Expectation over Transformation (1; 20 in AA rand).
    pub eot_iter: usize,
    /// The loss.
    pub loss: ApgdLoss,
    /// L1 only: run each restart as 30% / 30% / 40% of the iterations at 3·eps, 2·eps, eps, each
    /// stage starting from the previous result (AutoAttack's `use_largereps`, on in its L1 standard).
    pub large_reps: bool,
}

impl ApgdConfig {
    /// AutoAttack's APGD-CE.
    pub const OFFICIAL_CE: ApgdConfig = ApgdConfig {
        n_iter: 100,
        restarts: 1,
        rho: 0.75,
        momentum: 0.75,
        eot_iter: 1,
        loss: ApgdLoss::Ce,
        large_reps: false,
    };
    /// AutoAttack's APGD-DLR.
    pub const OFFICIAL_DLR: ApgdConfig = ApgdConfig { loss: ApgdLoss::Dlr, ..Self::OFFICIAL_CE };
    /// AutoAttack's APGD-T (9 targets).
    pub const OFFICIAL_T: ApgdConfig = ApgdConfig { loss: ApgdLoss::TargetedDlr { targets: 9 }, ..Self::OFFICIAL_CE };
}

impl Default for ApgdConfig {
    fn default() -> Self {
        Self::OFFICIAL_CE
    }
}

/// The step-size checkpoints for `n_iter` iterations, as `(iteration, window)` pairs: after
/// 0-based iteration `iteration` the last `window` losses are checked for oscillation.
/// The first window is ⌊0.22·n_iter⌋ iterations; each next one is 0.03·n_iter shorter, but at least
/// 0.06·n_iter (the paper's p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)).
pub fn checkpoints(n_iter: usize) -> Vec<(usize, usize)> {
    let first = ((0.22 * n_iter as f64) as usize).max(1);
    let min = ((0.06 * n_iter as f64) as usize).max(1);
    let decr = ((0.03 * n_iter as f64) as usize).max(1);
    let mut out = Vec::new();
    let mut k = first;
    let mut at = k;
    while at <= n_iter {
        out.push((at - 1, k));
        k = k.saturating_sub(decr).max(min);
        at += k;
    }
    out
}

/// L1 checkpoints: every ⌊0.04·n_iter⌋ (≥ 1) iterations, the sparsity and step size adapt.
pub fn l1_checkpoints(n_iter: usize) -> Vec<(usize, usize)> {
    let k = ((0.04 * n_iter as f64) as usize).max(1);
    (1..=n_iter / k).map(|j| (j * k - 1, k)).collect()
}

/// The smallest correction `d` such that `‖y + d‖₁ ≤ eps` and `x + y + d ∈ [0, 1]`, per example
/// (AutoAttack's `L1_projection`, a sort plus a bisection over the breakpoints).
pub fn l1_projection(x: &Tensor, y: &Tensor, eps: f64) -> Tensor {
    let shape = x.size();
    let n = shape[0];
    let dev = x.device();
    let xf = x.reshape([n, -1]).to_kind(Kind::Float);
    let yf = y.reshape([n, -1]).to_kind(Kind::Float);
    let dim = xf.size()[1];
    let sigma = yf.sign();
    let upper: Tensor = 1.0 - &xf - &yf;
    let u = upper.minimum(&(&xf + &yf));
    let u = yf.zeros_like().minimum(&u);
    let l = -yf.abs();
    let mut d = u.copy();
    let (bs, indbs) = (-Tensor::cat(&[&u, &l], 1)).sort(1, false);
    let bs2 = Tensor::cat(&[bs.narrow(1, 1, 2 * dim - 1), Tensor::zeros([n, 1], (Kind::Float, dev))], 1);
    let inu = indbs.lt(dim).to_kind(Kind::Float) * 2.0 - 1.0;
    let size1 = inu.cumsum(1, Kind::Float);
    let s1 = -u.sum_dim_intlist(&[1i64][..], false, Kind::Float);
    let c = eps - yf.abs().sum_dim_intlist(&[1i64][..], false, Kind::Float);
    let c2 = nonzero1(&(&s1 + &c).lt(0.0));
    let s = s1.unsqueeze(-1) + ((&bs2 - &bs) * &size1).cumsum(1, Kind::Float);
    let m = c2.numel() as i64;
    if m > 0 {
        let s_ = s.index_select(0, &c2);
        let c_ = c.index_select(0, &c2);
        let mut lb = Tensor::zeros([m], (Kind::Float, dev));
        let mut ub = Tensor::ones([m], (Kind::Float, dev)) * (2 * dim - 1) as f64;
        let nitermax = ((2 * dim) as f64).log2().ceil() as usize;
        for _ in 0..nitermax {
            let counter4 = ((&lb + &ub) / 2.0).floor();
            let counter2 = counter4.to_kind(Kind::Int64).unsqueeze(1);
            let c8 = (s_.gather(1, &counter2, false).squeeze_dim(1) + &c_).lt(0.0);
            lb = counter4.where_self(&c8, &lb);
            ub = ub.where_self(&c8, &counter4);
        }
        let lb2 = lb.to_kind(Kind::Int64).unsqueeze(1);
        let alpha = (-s_.gather(1, &lb2, false).squeeze_dim(1) - &c_)
            / size1.index_select(0, &c2).gather(1, &(&lb2 + 1), false).squeeze_dim(1)
            + bs2.index_select(0, &c2).gather(1, &lb2, false).squeeze_dim(1);
        let v = -(-u.index_select(0, &c2)).maximum(&alpha.unsqueeze(-1)).minimum(&(-l.index_select(0, &c2)));
        put(&mut d, &c2, &v);
    }
    (sigma * d).view(shape.as_slice())
}

/// APGD in one threat model (L∞, L2 or L1).
#[derive(Clone, Debug)]
pub struct Apgd {
    /// The ball.
    pub threat: ThreatModel,
    /// The settings.
    pub config: ApgdConfig,
}

struct RunOut {
    x_best: Tensor,
    acc: Tensor,
    x_best_adv: Tensor,
    zero_grad_points: i64,
}

impl Apgd {
    /// APGD in `threat` with `config`.
    pub fn new(threat: ThreatModel, config: ApgdConfig) -> Self {
        Self { threat, config }
    }

    fn criterion(&self, logits: &Tensor, y: &Tensor, target: Option<&Tensor>) -> Tensor {
        match (self.config.loss, target) {
            (ApgdLoss::Ce, _) => loss::ce(logits, y),
            (ApgdLoss::Dlr, _) => loss::dlr(logits, y),
            (ApgdLoss::TargetedDlr { .. }, Some(t)) => loss::dlr_targeted(logits, y, t),
            (ApgdLoss::TargetedDlr { .. }, None) => unreachable!("targeted APGD always passes targets"),
        }
    }

    /// One run on a batch whose points are all attacked; mirrors `attack_single_run`.
    #[allow(
        clippy::too_many_arguments,
        reason = "mirrors the reference's attack_single_run(x, y, x_init) plus eps, n_iter, target"
    )]
    fn single_run(
        &self,
        model: &dyn Model,
        x: &Tensor,
        y: &Tensor,
        target: Option<&Tensor>,
        eps: f64,
        n_iter: usize,
        x_init: Option<&Tensor>,
    ) -> Result<RunOut, AttackError> {
        let norm = self.threat.norm();
        let n = x.size()[0];
        let bshape = bcast_shape(x);
        let crit = |z: &Tensor| self.criterion(z, y, target);

        let x_adv = match norm {
            Norm::L1 => {
                // The reference draws this start even when x_init replaces it; keep the draw.
                let t = crate::rng::randn_like_ref(&x.size(), x.device());
                x + &t + l1_projection(x, &t, eps)
            }
            _ => ThreatModel::new(norm, eps).random_init_normalized(x),
        };
        let mut x_adv = match x_init {
            Some(xi) => xi.copy(),
            None => x_adv,
        }
        .clamp(0.0, 1.0);
        let mut x_best = x_adv.copy();
        let mut x_best_adv = x_adv.copy();
        let zeros_n = Tensor::zeros([n], (Kind::Float, x.device()));
        let mut loss_steps: Vec<Tensor> = (0..n_iter).map(|_| zeros_n.copy()).collect();

        let (logits, loss_indiv, mut grad) = loss_and_grad(model, &x_adv, self.config.eot_iter, &crit)?;
        let mut grad_best = grad.copy();
        let zero_grad_points = if matches!(self.config.loss, ApgdLoss::Dlr | ApgdLoss::TargetedDlr { .. }) {
            grad.abs()
                .reshape([n, -1])
                .sum_dim_intlist(&[1i64][..], false, Kind::Float)
                .eq(0.0)
                .sum(Kind::Int64)
                .int64_value(&[])
        } else {
            0
        };
        let mut acc = logits.argmax(1, false).eq_tensor(y);
        let mut loss_best = loss_indiv.copy();

        let alpha = if norm == Norm::L1 { 1.0 } else { 2.0 };
        let mut step_size = Tensor::ones(
            bshape.iter().map(|&d| if d == -1 { n } else { d }).collect::<Vec<_>>(),
            (Kind::Float, x.device()),
        ) * (alpha * eps);
        let mut x_adv_old = x_adv.copy();
        let schedule = if norm == Norm::L1 { l1_checkpoints(n_iter) } else { checkpoints(n_iter) };
        // L1: the fraction of coordinates moved per step adapts to the sparsity of the best point.
        let n_fts = x.numel() as i64 / n.max(1);
        let l0 = |d: &Tensor| d.ne(0.0).reshape([n, -1]).sum_dim_intlist(&[1i64][..], false, Kind::Float);
        let (mut topk, mut sp_old) = match x_init {
            None => (
                Tensor::ones([n], (Kind::Float, x.device())) * 0.2,
                Tensor::ones([n], (Kind::Float, x.device())) * n_fts as f64,
            ),
            Some(_) => {
                let sp = l0(&(&x_adv - x));
                (&sp / n_fts as f64 / 1.5, sp)
            }
        };
        let mut next_check = 0usize;
        let mut loss_best_last_check = loss_best.copy();
        let mut reduced_last_check = loss_best.ones_like();

        for i in 0..n_iter {
            let _guard = tch::no_grad_guard();
            let grad2 = &x_adv - &x_adv_old;
            x_adv_old = x_adv.copy();
            let a = if i > 0 { self.config.momentum } else { 1.0 };
            let x_new = match norm {
                Norm::Linf => {
                    let x1 = &x_adv + &step_size * grad.sign();
                    let x1 = x1.maximum(&(x - eps)).minimum(&(x + eps)).clamp(0.0, 1.0);
                    (&x_adv + (&x1 - &x_adv) * a + &grad2 * (1.0 - a))
                        .maximum(&(x - eps))
                        .minimum(&(x + eps))
                        .clamp(0.0, 1.0)
                }
                Norm::L2 => {
                    let l2proj = |z: &Tensor| {
                        let d = z - x;
                        let nrm = Norm::L2.per_example(&d).view(bshape.as_slice());
                        (x + Norm::L2.normalize(&d) * (x.ones_like() * eps).minimum(&nrm)).clamp(0.0, 1.0)
                    };
                    let x1 = l2proj(&(&x_adv + &step_size * Norm::L2.normalize(&grad)));
                    l2proj(&(&x_adv + (&x1 - &x_adv) * a + &grad2 * (1.0 - a)))
                }
                Norm::L1 => {
                    let flat = grad.abs().reshape([n, -1]);
                    let (sorted, _) = flat.sort(-1, false);
                    let frac: Tensor = 1.0 - &topk;
                    let topk_curr = (frac * n_fts as f64).clamp(0.0, (n_fts - 1) as f64).to_kind(Kind::Int64);
                    let thr = sorted.gather(1, &topk_curr.unsqueeze(1), false).view(bshape.as_slice());
                    let sparse = &grad * grad.abs().ge_tensor(&thr).to_kind(Kind::Float);
                    let sg = sparse.sign();
                    let x1 = &x_adv + &step_size * &sg / (Norm::L1.per_example(&sg).view(bshape.as_slice()) + 1e-10);
                    let delta_u = &x1 - x;
                    let delta_p = l1_projection(x, &delta_u, eps);
                    x + delta_u + delta_p
                }
            };
            x_adv = x_new;
            drop(_guard);

            let (logits, loss_indiv, g) = loss_and_grad(model, &x_adv, self.config.eot_iter, &crit)?;
            grad = g;
            let _guard = tch::no_grad_guard();
            let pred = logits.argmax(1, false).eq_tensor(y);
            acc = acc.logical_and(&pred);
            let ind_pred = nonzero1(&pred.logical_not());
            put(&mut x_best_adv, &ind_pred, &x_adv.index_select(0, &ind_pred));

            loss_steps[i] = loss_indiv.copy();
            let ind = nonzero1(&loss_indiv.gt_tensor(&loss_best));
            put(&mut x_best, &ind, &x_adv.index_select(0, &ind));
            put(&mut grad_best, &ind, &grad.index_select(0, &ind));
            put(&mut loss_best, &ind, &loss_indiv.index_select(0, &ind));

            if next_check < schedule.len() && schedule[next_check].0 == i && norm == Norm::L1 {
                next_check += 1;
                let sp_curr = l0(&(&x_best - x));
                let fl = (&sp_curr / &sp_old).lt(0.95);
                topk = &sp_curr / n_fts as f64 / 1.5;
                let full = step_size.ones_like() * (alpha * eps);
                let fl_b = fl.view(bshape.as_slice());
                step_size = full.where_self(&fl_b, &(&step_size / 1.5)).clamp(alpha * eps / 10.0, alpha * eps);
                sp_old = sp_curr;
                let ind = nonzero1(&fl);
                if ind.numel() > 0 {
                    put(&mut x_adv, &ind, &x_best.index_select(0, &ind));
                    put(&mut grad, &ind, &grad_best.index_select(0, &ind));
                }
            } else if next_check < schedule.len() && schedule[next_check].0 == i {
                let k = schedule[next_check].1;
                next_check += 1;
                // Count increases over the last k steps; the index wraps like Python's negative indexing.
                let mut t = zeros_n.copy();
                for c in 0..k {
                    let j = i as i64 - c as i64;
                    let cur = &loss_steps[j.rem_euclid(n_iter as i64) as usize];
                    let prev = &loss_steps[(j - 1).rem_euclid(n_iter as i64) as usize];
                    t += cur.gt_tensor(prev).to_kind(Kind::Float);
                }
                let fl_osc = t.le_tensor(&(zeros_n.ones_like() * (k as f64 * self.config.rho))).to_kind(Kind::Float);
                let fl_noimpr =
                    (1.0 - &reduced_last_check) * loss_best_last_check.ge_tensor(&loss_best).to_kind(Kind::Float);
                let fl = fl_osc.maximum(&fl_noimpr);
                reduced_last_check = fl.copy();
                loss_best_last_check = loss_best.copy();
                let ind = nonzero1(&fl.gt(0.0));
                if ind.numel() > 0 {
                    let halved = step_size.index_select(0, &ind) / 2.0;
                    put(&mut step_size, &ind, &halved);
                    put(&mut x_adv, &ind, &x_best.index_select(0, &ind));
                    put(&mut grad, &ind, &grad_best.index_select(0, &ind));
                }
            }
        }
        Ok(RunOut { x_best, acc, x_best_adv, zero_grad_points })
    }

    /// AutoAttack's `decr_eps_pgd`: 3·eps, 2·eps, eps with 30/30/40% of the iterations, chained.
    fn large_reps_run(
        &self,
        model: &dyn Model,
        x: &Tensor,
        y: &Tensor,
        target: Option<&Tensor>,
    ) -> Result<RunOut, AttackError> {
        let eps = self.threat.eps();
        let n = self.config.n_iter;
        let a = (0.3 * n as f64).ceil() as usize;
        let plan = [(3.0 * eps, a), (2.0 * eps, a), (eps, n.saturating_sub(2 * a))];
        let mut x_init = x + crate::rng::randn_like_ref(&x.size(), x.device());
        x_init = &x_init + l1_projection(x, &(&x_init - x), plan[0].0);
        let mut zero = 0;
        let mut last = None;
        for (e, iters) in plan {
            x_init = &x_init + l1_projection(x, &(&x_init - x), e);
            let run = self.single_run(model, x, y, target, e, iters.max(1), Some(&x_init))?;
            zero += run.zero_grad_points;
            x_init = run.x_best.copy();
            last = Some(run);
        }
        let mut run = last.expect("three stages");
        run.zero_grad_points = zero;
        Ok(run)
    }

    /// Runs the attack and also returns how many (point, run) pairs started with an all-zero
    /// gradient under a DLR loss (AutoAttack's `check_zero_gradients`).
    pub fn perturb_with_stats(
        &self,
        model: &dyn Model,
        x: &Tensor,
        y: &Tensor,
        seed: u64,
    ) -> Result<(Tensor, i64), AttackError> {
        check_inputs(x, y)?;
        if self.config.large_reps && self.threat.norm() != Norm::L1 {
            return Err(AttackError::BadConfig("APGD's large-eps schedule (large_reps) is defined for L1 only".into()));
        }
        if self.config.n_iter == 0 || self.config.restarts == 0 || self.config.eot_iter == 0 {
            return Err(AttackError::BadConfig("APGD needs n_iter, restarts and eot_iter >= 1".into()));
        }
        let x = x.detach();
        let clean_logits = tch::no_grad(|| model.logits(&x));
        let k = clean_logits.size()[1];
        let acc = clean_logits.argmax(1, false).eq_tensor(y);
        let mut zero_grads = 0;
        seed_all(seed);
        let targets = match self.config.loss {
            ApgdLoss::TargetedDlr { targets } => {
                if k < 4 || targets + 1 > k as usize {
                    return Err(AttackError::BadConfig(format!(
                        "APGD-T with {targets} targets needs at least {} classes and targeted DLR needs 4; the model has {k}",
                        targets + 1
                    )));
                }
                (2..targets + 2).map(Some).collect::<Vec<_>>()
            }
            _ => vec![None],
        };
        // One round per (target class, restart); the target is ranked on the points still robust.
        let restarts = self.config.restarts;
        let rounds = targets.into_iter().flat_map(|t| std::iter::repeat_n(t, restarts));
        let adv = restart_loop(&x, y, acc, rounds, |target_rank, b| {
            let y_target = target_rank.map(|r| {
                let out = tch::no_grad(|| model.logits(&b.x));
                let (_, order) = out.sort(1, false);
                order.select(1, k - r as i64)
            });
            let run = if self.config.large_reps {
                self.large_reps_run(model, &b.x, &b.y, y_target.as_ref())?
            } else {
                self.single_run(model, &b.x, &b.y, y_target.as_ref(), self.threat.eps(), self.config.n_iter, None)?
            };
            zero_grads += run.zero_grad_points;
            // APGD's own running accuracy decides (as the reference), not a re-classification.
            Ok(Round { x_adv: run.x_best_adv, fooled: run.acc.logical_not(), keep: None })
        })?;
        Ok((adv, zero_grads))
    }
}

impl Attack for Apgd {
    fn id(&self) -> StageId {
        match self.config.loss {
            ApgdLoss::Ce => StageId::ApgdCe,
            ApgdLoss::Dlr => StageId::ApgdDlr,
            ApgdLoss::TargetedDlr { .. } => StageId::ApgdT,
        }
    }

    fn perturb(&self, model: &dyn Model, x: &Tensor, y: &Tensor, seed: u64) -> Result<Tensor, AttackError> {
        self.perturb_with_stats(model, x, y, seed).map(|(adv, _)| adv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_for_100_iterations_match_the_paper() {
        // Paper: p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 of 100 iterations.
        let c = checkpoints(100);
        let ends: Vec<usize> = c.iter().map(|&(i, _)| i + 1).collect();
        assert_eq!(ends, vec![22, 41, 57, 70, 80, 87, 93, 99]);
        let windows: Vec<usize> = c.iter().map(|&(_, k)| k).collect();
        assert_eq!(windows, vec![22, 19, 16, 13, 10, 7, 6, 6]);
    }

    #[test]
    fn checkpoints_small_budgets() {
        // n_iter = 10: first window 2, min 1, decrement 1.
        assert_eq!(checkpoints(10), vec![(1, 2), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (7, 1), (8, 1), (9, 1)]);
        assert_eq!(checkpoints(1), vec![(0, 1)]);
    }

    #[test]
    fn l1_schedule_and_projection() {
        assert_eq!(l1_checkpoints(100), (1..=25).map(|j| (4 * j - 1, 4)).collect::<Vec<_>>());
        tch::manual_seed(4);
        let x = Tensor::rand([5, 1, 6, 6], (Kind::Float, tch::Device::Cpu));
        let y = Tensor::randn([5, 1, 6, 6], (Kind::Float, tch::Device::Cpu));
        for eps in [0.5, 3.0, 100.0] {
            let d = l1_projection(&x, &y, eps);
            let z = &x + &y + &d;
            let l1 = Norm::L1.per_example(&(&z - &x)).max().double_value(&[]);
            assert!(l1 <= eps * (1.0 + 1e-4), "eps {eps}: L1 {l1}");
            assert!(z.min().double_value(&[]) >= -1e-6 && z.max().double_value(&[]) <= 1.0 + 1e-6);
        }
        // A feasible y (inside box and ball) needs no correction.
        let small = (&x * 0.0 + 0.01).minimum(&(1.0 - &x));
        let d = l1_projection(&x, &small, 100.0);
        assert!(d.abs().max().double_value(&[]) < 1e-7);
    }

    #[test]
    fn official_defaults() {
        let c = ApgdConfig::default();
        assert_eq!((c.n_iter, c.restarts, c.rho, c.momentum, c.eot_iter, c.large_reps), (100, 1, 0.75, 0.75, 1, false));
        assert_eq!(ApgdConfig::OFFICIAL_T.loss, ApgdLoss::TargetedDlr { targets: 9 });
    }
}
