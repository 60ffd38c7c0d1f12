//! FAB, the Fast Adaptive Boundary attack (Croce & Hein, ICML 2020), untargeted and targeted (FAB-T).
//!
//! A minimum-norm attack: it linearises the decision boundary, projects onto the linearised
//! hyperplane (from the current point and from the clean point, mixed with weight ≤ alpha_max),
//! overshoots by eta and, once adversarial, steps back towards the clean point by beta. A point counts
//! as broken only if the smallest adversarial perturbation found is within eps. Written from the paper
//! and the behaviour of the official `fab_base.py` / `fab_projections.py` (same order of operations,
//! so results match it on CPU). L∞ and L2 only.

use crate::attack::{check_inputs, nonzero1, put, Attack};
use crate::model::{predict, Model};
use crate::restarts::{restart_loop, Round};
use crate::rng::seed_all;
use crate::stage_id::StageId;
use crate::threat::{bcast_shape, Norm, ThreatModel};
use crate::AttackError;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// FAB settings; `Default` is AutoAttack's FAB-T.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabConfig {
    /// Iterations per restart (100).
    pub n_iter: usize,
    /// Restarts; restart 0 starts at the clean point, later ones at a random point (1 for FAB-T,
    /// 5 for FAB in AA plus).
    pub restarts: usize,
    /// Largest weight of the clean-point projection in the convex step (0.1).
    pub alpha_max: f64,
    /// Overshoot factor (1.05).
    pub eta: f64,
    /// Backward step towards the clean point after success (0.9).
    pub beta: f64,
    /// `Some(k)`: targeted, against each of the k highest-ranked wrong classes (9); `None`: untargeted.
    pub targets: Option<usize>,
}

impl FabConfig {
    /// AutoAttack's FAB-T (standard version).
    pub const OFFICIAL_T: FabConfig =
        FabConfig { n_iter: 100, restarts: 1, alpha_max: 0.1, eta: 1.05, beta: 0.9, targets: Some(9) };
    /// AutoAttack's untargeted FAB as used in the plus version (5 restarts).
    pub const OFFICIAL_UNTARGETED: FabConfig = FabConfig { restarts: 5, targets: None, ..Self::OFFICIAL_T };
}

impl Default for FabConfig {
    fn default() -> Self {
        Self::OFFICIAL_T
    }
}

/// FAB in one threat model.
#[derive(Clone, Debug)]
pub struct Fab {
    /// The ball (eps decides success and scales the random restarts).
    pub threat: ThreatModel,
    /// The settings.
    pub config: FabConfig,
}

/// Projection of points `t` onto hyperplanes `w·z = b` intersected with the box [0, 1], in L∞.
pub(crate) fn projection_linf(t: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    let dev = t.device();
    let dim = w.size()[1];
    let sign = ((w * t).sum_dim_intlist(&[1i64][..], false, Kind::Float) - b).ge(0.0).to_kind(Kind::Float) * 2.0 - 1.0;
    let w = w * sign.unsqueeze(1);
    let b = b * &sign;
    let a = w.lt(0.0).to_kind(Kind::Float);
    let wnz = w.ne(0.0).to_kind(Kind::Float);
    let mut d = (&a - t) * &wnz;
    let p = &a - t * (&a * 2.0 - 1.0);
    let indp = p.argsort(1, false);
    let b = &b - (&w * t).sum_dim_intlist(&[1i64][..], false, Kind::Float);
    let b0 = (&w * &d).sum_dim_intlist(&[1i64][..], false, Kind::Float);
    let indp2 = indp.flip([1i64]);
    let ws = w.gather(1, &indp2, false);
    let bs2 = -&ws * d.gather(1, &indp2, false);
    let s = ws.abs().cumsum(1, Kind::Float);
    let sb = bs2.cumsum(1, Kind::Float) + b0.unsqueeze(1);
    let b2 = sb.select(1, dim - 1) - s.select(1, dim - 1) * p.gather(1, &indp.narrow(1, 0, 1), false).squeeze_dim(1);
    let c_l = (&b - &b2).gt(0.0);
    let c2 = (&b - &b0).gt(0.0).logical_and(&c_l.logical_not());
    let c2_idx = nonzero1(&c2);
    let n2 = c2_idx.numel() as i64;
    let mut lb = Tensor::zeros([n2], (Kind::Float, dev));
    let mut ub = Tensor::full([n2], (dim - 1) as f64, (Kind::Float, dev));
    let nitermax = (dim as f64).log2().ceil() as usize;
    let indp_ = indp.index_select(0, &c2_idx);
    let sb_ = sb.index_select(0, &c2_idx);
    let s_ = s.index_select(0, &c2_idx);
    let p_ = p.index_select(0, &c2_idx);
    let b_ = b.index_select(0, &c2_idx);
    for _ in 0..nitermax {
        let counter4 = ((&lb + &ub) / 2.0).floor();
        let counter2 = counter4.to_kind(Kind::Int64).unsqueeze(1);
        let indcurr = indp_.gather(1, &(-&counter2 + (dim - 1)), false);
        let b2 = (sb_.gather(1, &counter2, false) - s_.gather(1, &counter2, false) * p_.gather(1, &indcurr, false))
            .squeeze_dim(1);
        let c = (&b_ - b2).gt(0.0);
        lb = counter4.where_self(&c, &lb);
        ub = ub.where_self(&c, &counter4);
    }
    let lb = lb.to_kind(Kind::Int64);
    let cl_idx = nonzero1(&c_l);
    if cl_idx.numel() > 0 {
        let lmbd = ((b.index_select(0, &cl_idx) - sb.index_select(0, &cl_idx).select(1, dim - 1))
            / (-s.index_select(0, &cl_idx).select(1, dim - 1)))
        .clamp_min(0.0)
        .unsqueeze(-1);
        let v = (a.index_select(0, &cl_idx) * 2.0 - 1.0) * lmbd;
        put(&mut d, &cl_idx, &v);
    }
    let lbc = lb.unsqueeze(1);
    let lmbd = ((&b_ - sb_.gather(1, &lbc, false).squeeze_dim(1)) / (-s_.gather(1, &lbc, false).squeeze_dim(1)))
        .clamp_min(0.0)
        .unsqueeze(-1);
    let d2 = d.index_select(0, &c2_idx);
    let a2 = a.index_select(0, &c2_idx);
    let v = lmbd.minimum(&d2) * &a2 + (-&lmbd).maximum(&d2) * (1.0 - &a2);
    put(&mut d, &c2_idx, &v);
    d * wnz
}

/// Projection of points `t` onto hyperplanes `w·z = b` intersected with the box [0, 1], in L2.
pub(crate) fn projection_l2(t: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    let dev = t.device();
    let dim = w.size()[1];
    let c = (w * t).sum_dim_intlist(&[1i64][..], false, Kind::Float) - b;
    let ind2 = c.ge(0.0).to_kind(Kind::Float) * 2.0 - 1.0;
    let w = w * ind2.unsqueeze(1);
    let c = &c * &ind2;
    let r = (t / &w).maximum(&((t - 1.0) / &w)).clamp(-1e12, 1e12);
    let r = r.masked_fill(&w.abs().lt(1e-8), 1e12);
    let r = r.masked_fill(&r.eq(-1e12), 1e12);
    let (rs, indr) = r.sort(1, false);
    let rs2 = Tensor::cat(&[rs.narrow(1, 1, dim - 1), Tensor::zeros([rs.size()[0], 1], (Kind::Float, dev))], 1);
    let rs = rs.masked_fill(&rs.eq(1e12), 0.0);
    let rs2 = rs2.masked_fill(&rs2.eq(1e12), 0.0);
    let w3s = w.pow_tensor_scalar(2).gather(1, &indr, false);
    let w5 = w3s.sum_dim_intlist(&[1i64][..], true, Kind::Float);
    let ws = &w5 - w3s.cumsum(1, Kind::Float);
    let mut d = -(&r * &w);
    d *= w.abs().gt(1e-8).to_kind(Kind::Float);
    let rs0 = rs.narrow(1, 0, 1);
    let s = Tensor::cat(&[-&w5 * &rs0, ((-&rs2 + &rs) * &ws).cumsum(1, Kind::Float) - &w5 * &rs0], 1);
    let c4 = (s.select(1, 0) + &c).lt(0.0);
    let c3 = ((&d * &w).sum_dim_intlist(&[1i64][..], false, Kind::Float) + &c).gt(0.0);
    let c2 = c4.logical_or(&c3).logical_not();
    let c2_idx = nonzero1(&c2);
    let n2 = c2_idx.numel() as i64;
    let mut lb = Tensor::zeros([n2], (Kind::Float, dev));
    let mut ub = Tensor::full([n2], (dim - 1) as f64, (Kind::Float, dev));
    let nitermax = (dim as f64).log2().ceil() as usize;
    let s_ = s.index_select(0, &c2_idx);
    let c_ = c.index_select(0, &c2_idx);
    for _ in 0..nitermax {
        let counter4 = ((&lb + &ub) / 2.0).floor();
        let counter2 = counter4.to_kind(Kind::Int64).unsqueeze(1);
        let c3 = (s_.gather(1, &counter2, false).squeeze_dim(1) + &c_).gt(0.0);
        lb = counter4.where_self(&c3, &lb);
        ub = ub.where_self(&c3, &counter4);
    }
    let lb = lb.to_kind(Kind::Int64);
    let c4_idx = nonzero1(&c4);
    if c4_idx.numel() > 0 {
        let alpha = c.index_select(0, &c4_idx) / w5.index_select(0, &c4_idx).squeeze_dim(-1);
        let v = -alpha.unsqueeze(-1) * w.index_select(0, &c4_idx);
        put(&mut d, &c4_idx, &v);
    }
    if n2 > 0 {
        let lbc = lb.unsqueeze(1);
        let ws_lb = ws.index_select(0, &c2_idx).gather(1, &lbc, false).squeeze_dim(1);
        let alpha = (s_.gather(1, &lbc, false).squeeze_dim(1) + &c_) / &ws_lb
            + rs.index_select(0, &c2_idx).gather(1, &lbc, false).squeeze_dim(1);
        let alpha = alpha.masked_fill(&ws_lb.eq(0.0), 0.0);
        let r2 = r.index_select(0, &c2_idx);
        let c5 = alpha.unsqueeze(-1).gt_tensor(&r2).to_kind(Kind::Float);
        let v = d.index_select(0, &c2_idx) * &c5 - alpha.unsqueeze(-1) * w.index_select(0, &c2_idx) * (1.0 - &c5);
        put(&mut d, &c2_idx, &v);
    }
    d * w.abs().gt(1e-8).to_kind(Kind::Float)
}

impl Fab {
    /// FAB in `threat` with `config`.
    pub fn new(threat: ThreatModel, config: FabConfig) -> Self {
        Self { threat, config }
    }

    /// Logit differences to the true class and their input gradients, for every class
    /// (one backward per class). `df[:, y] = 1e10` so the true class is never chosen.
    fn diff_logits_grads(&self, model: &dyn Model, x: &Tensor, la: &Tensor) -> Result<(Tensor, Tensor), AttackError> {
        let n = x.size()[0];
        let im = x.detach().set_requires_grad(true);
        let y = model.logits(&im);
        let k = y.size()[1];
        let mut grads = Vec::with_capacity(k as usize);
        for c in 0..k {
            let g = Tensor::f_run_backward(&[y.select(1, c).sum(Kind::Float)], &[&im], c + 1 < k, false)
                .map_err(|source| AttackError::Torch { context: "FAB per-class gradient", source })?;
            model.record_backward(n);
            grads.push(g[0].detach());
        }
        let g2 = Tensor::stack(&grads, 1);
        let y2 = y.detach();
        let u = Tensor::arange(n, (Kind::Int64, x.device()));
        let y_la = y2.gather(1, &la.unsqueeze(1), false);
        let df = (&y2 - &y_la).index_put_(&[Some(&u), Some(la)], &Tensor::from(1e10f32).to_device(x.device()), false);
        let g_la = g2.index(&[Some(&u), Some(la)]).unsqueeze(1);
        let dg = &g2 - g_la;
        Ok((df, dg))
    }

    fn diff_logits_grads_targeted(
        &self,
        model: &dyn Model,
        x: &Tensor,
        la: &Tensor,
        la_t: &Tensor,
    ) -> Result<(Tensor, Tensor), AttackError> {
        let n = x.size()[0];
        let im = x.detach().set_requires_grad(true);
        let y = model.logits(&im);
        let at = |l: &Tensor| y.gather(1, &l.unsqueeze(1), false).squeeze_dim(1);
        let diffy = -(at(la) - at(la_t));
        let g = Tensor::f_run_backward(&[diffy.sum(Kind::Float)], &[&im], false, false)
            .map_err(|source| AttackError::Torch { context: "FAB-T gradient", source })?;
        model.record_backward(n);
        Ok((diffy.detach().unsqueeze(1), g[0].detach().unsqueeze(1)))
    }

    /// One run; returns the adversarial points (clean x where it failed). Mirrors `attack_single_run`.
    fn single_run(
        &self,
        model: &dyn Model,
        x: &Tensor,
        y: &Tensor,
        rand_start: bool,
        target_rank: Option<usize>,
    ) -> Result<Tensor, AttackError> {
        let norm = self.threat.norm();
        let eps = self.threat.eps();
        let dev = x.device();
        let x = x.detach();
        let y_pred = predict(model, &x);
        let pred = y_pred.eq_tensor(y);
        let mut adv_c = x.copy();
        if pred.sum(Kind::Int64).int64_value(&[]) == 0 {
            return Ok(adv_c);
        }
        let pred_idx = nonzero1(&pred);
        let la_target2 = match target_rank {
            Some(r) => {
                let out = tch::no_grad(|| model.logits(&x));
                let (_, order) = out.sort(-1, false);
                let k = out.size()[1];
                Some(order.select(1, k - r as i64).index_select(0, &pred_idx))
            }
            None => None,
        };
        let im2 = x.index_select(0, &pred_idx);
        let la2 = y.index_select(0, &pred_idx);
        let bs = im2.size()[0];
        let bsh = bcast_shape(&im2);
        let mut adv = im2.copy();
        let mut res2 = Tensor::ones([bs], (Kind::Float, dev)) * 1e10;
        let mut x1 = im2.copy();
        let x0 = im2.reshape([bs, -1]);
        let u1 = Tensor::arange(bs, (Kind::Int64, dev));
        if rand_start {
            let r = res2.minimum(&(Tensor::ones([bs], (Kind::Float, dev)) * eps)).view(bsh.as_slice());
            x1 = match norm {
                Norm::Linf => {
                    let t = crate::rng::rand_like_ref(&x1.size(), dev) * 2.0 - 1.0;
                    &im2 + r * &t / t.reshape([bs, -1]).abs().amax([1i64], true).view(bsh.as_slice()) * 0.5
                }
                _ => {
                    let t = crate::rng::randn_like_ref(&x1.size(), dev);
                    &im2 + r * &t / Norm::L2.per_example(&t).view(bsh.as_slice()) * 0.5
                }
            };
            x1 = x1.clamp(0.0, 1.0);
        }
        for _ in 0..self.config.n_iter {
            let (df, dg) = match &la_target2 {
                Some(t) => self.diff_logits_grads_targeted(model, &x1, &la2, t)?,
                None => self.diff_logits_grads(model, &x1, &la2)?,
            };
            let _guard = tch::no_grad_guard();
            let kk = dg.size()[1];
            let dgf = dg.reshape([bs, kk, -1]);
            let dist1 = match norm {
                Norm::Linf => df.abs() / (dgf.abs().sum_dim_intlist(&[-1i64][..], false, Kind::Float) + 1e-12),
                _ => {
                    df.abs()
                        / (dgf.pow_tensor_scalar(2).sum_dim_intlist(&[-1i64][..], false, Kind::Float).sqrt() + 1e-12)
                }
            };
            let ind = dist1.argmin(1, false);
            let dg2 = dg.index(&[Some(&u1), Some(&ind)]);
            let b = -df.index(&[Some(&u1), Some(&ind)])
                + (&dg2 * &x1).reshape([bs, -1]).sum_dim_intlist(&[-1i64][..], false, Kind::Float);
            let w = dg2.reshape([bs, -1]);
            let pts = Tensor::cat(&[x1.reshape([bs, -1]), x0.shallow_clone()], 0);
            let ww = Tensor::cat(&[&w, &w], 0);
            let bb = Tensor::cat(&[&b, &b], 0);
            let d3 = match norm {
                Norm::Linf => projection_linf(&pts, &ww, &bb),
                _ => projection_l2(&pts, &ww, &bb),
            };
            let d1 = d3.narrow(0, 0, bs).reshape(x1.size().as_slice());
            let d2 = d3.narrow(0, bs, bs).reshape(x1.size().as_slice());
            let a0 = match norm {
                Norm::Linf => d3.abs().amax([1i64], true),
                _ => d3.pow_tensor_scalar(2).sum_dim_intlist(&[1i64][..], true, Kind::Float).sqrt(),
            }
            .view(bsh.as_slice());
            let a0 = a0.maximum(&(a0.ones_like() * 1e-8));
            let a1 = a0.narrow(0, 0, bs);
            let a2 = a0.narrow(0, bs, bs);
            let alpha =
                (&a1 / (&a1 + &a2)).maximum(&a1.zeros_like()).minimum(&(a1.ones_like() * self.config.alpha_max));
            let from_cur: Tensor = (&x1 + &d1 * self.config.eta) * (1.0 - &alpha);
            let from_clean: Tensor = (&im2 + &d2 * self.config.eta) * &alpha;
            x1 = (from_cur + from_clean).clamp(0.0, 1.0);
            drop(_guard);
            let is_adv = predict(model, &x1).ne_tensor(&la2);
            let ind_adv = nonzero1(&is_adv);
            if ind_adv.numel() > 0 {
                let _guard = tch::no_grad_guard();
                let x1a = x1.index_select(0, &ind_adv);
                let im2a = im2.index_select(0, &ind_adv);
                let t = norm.per_example(&(&x1a - &im2a));
                let r_old = res2.index_select(0, &ind_adv);
                let better = t.lt_tensor(&r_old).to_kind(Kind::Float);
                let worse = t.ge_tensor(&r_old).to_kind(Kind::Float);
                let bsa = bcast_shape(&x1a);
                let new_adv =
                    &x1a * better.view(bsa.as_slice()) + adv.index_select(0, &ind_adv) * worse.view(bsa.as_slice());
                put(&mut adv, &ind_adv, &new_adv);
                put(&mut res2, &ind_adv, &(&t * &better + &r_old * &worse));
                put(&mut x1, &ind_adv, &(&im2a + (&x1a - &im2a) * self.config.beta));
            }
        }
        let ind_succ = nonzero1(&res2.lt(1e10));
        put(&mut adv_c, &pred_idx.index_select(0, &ind_succ), &adv.index_select(0, &ind_succ));
        Ok(adv_c)
    }
}

impl Attack for Fab {
    fn id(&self) -> StageId {
        if self.config.targets.is_some() {
            StageId::FabT
        } else {
            StageId::Fab
        }
    }

    fn perturb(&self, model: &dyn Model, x: &Tensor, y: &Tensor, seed: u64) -> Result<Tensor, AttackError> {
        check_inputs(x, y)?;
        let norm = self.threat.norm();
        if norm == Norm::L1 {
            return Err(AttackError::UnsupportedNorm { attack: self.id(), norm });
        }
        if self.config.n_iter == 0 || self.config.restarts == 0 {
            return Err(AttackError::BadConfig("FAB needs n_iter >= 1 and restarts >= 1".into()));
        }
        let x = x.detach();
        let clean = tch::no_grad(|| model.logits(&x));
        let k = clean.size()[1];
        let acc = clean.argmax(1, false).eq_tensor(y);
        seed_all(seed);
        let ranks: Vec<Option<usize>> = match self.config.targets {
            Some(t) => {
                if t + 1 > k as usize {
                    return Err(AttackError::BadConfig(format!(
                        "FAB-T with {t} targets needs at least {} classes; the model has {k}",
                        t + 1
                    )));
                }
                (2..t + 2).map(Some).collect()
            }
            None => vec![None],
        };
        // One round per (target rank, restart); restart 0 of each rank starts at the clean point.
        let restarts = self.config.restarts;
        let rounds = ranks.into_iter().flat_map(|rank| (0..restarts).map(move |restart| (rank, restart)));
        restart_loop(&x, y, acc, rounds, |(rank, restart), b| {
            let adv_curr = self.single_run(model, &b.x, &b.y, restart > 0, rank)?;
            // Fooled means misclassified *and* within eps (FAB is a minimum-norm attack).
            let still = predict(model, &adv_curr).eq_tensor(&b.y);
            let res = norm.per_example(&(&b.x - &adv_curr));
            let still = still.logical_or(&res.gt(self.threat.eps()));
            Ok(Round { x_adv: adv_curr, fooled: still.logical_not(), keep: None })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn official_defaults() {
        let c = FabConfig::default();
        assert_eq!((c.n_iter, c.restarts, c.alpha_max, c.eta, c.beta, c.targets), (100, 1, 0.1, 1.05, 0.9, Some(9)));
        assert_eq!(FabConfig::OFFICIAL_UNTARGETED.restarts, 5);
    }

    #[test]
    fn projections_land_on_the_hyperplane_inside_the_box() {
        tch::manual_seed(1);
        let t = Tensor::rand([5, 20], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([5, 20], (Kind::Float, Device::Cpu));
        // Hyperplanes through a point inside the box near t, so a feasible projection exists.
        let target = (&t + Tensor::randn([5, 20], (Kind::Float, Device::Cpu)) * 0.05).clamp(0.0, 1.0);
        let b = (&w * &target).sum_dim_intlist(&[1i64][..], false, Kind::Float);
        for (name, proj) in
            [("linf", projection_linf as fn(&Tensor, &Tensor, &Tensor) -> Tensor), ("l2", projection_l2)]
        {
            let d = proj(&t, &w, &b);
            let z = &t + &d;
            let resid = ((&w * &z).sum_dim_intlist(&[1i64][..], false, Kind::Float) - &b).abs().max().double_value(&[]);
            assert!(resid < 1e-3, "{name}: residual {resid}");
            assert!(z.min().double_value(&[]) >= -1e-6 && z.max().double_value(&[]) <= 1.0 + 1e-6, "{name}: left box");
            // The projection is no longer than the move to the known feasible point.
            let dn = if name == "linf" { Norm::Linf } else { Norm::L2 };
            let ours = dn.per_example(&d);
            let known = dn.per_example(&(&target - &t));
            let excess = (&ours - &known).max().double_value(&[]);
            assert!(excess < 1e-4, "{name}: projection longer than a feasible move by {excess}");
        }
    }
}
