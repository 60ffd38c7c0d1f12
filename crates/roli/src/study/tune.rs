//! Learning-rate selection on the validation split, per (method, init), never on test. Each
//! candidate LR is the stage's base LR times a factor; the winner has the best validation PGD
//! accuracy at its best epoch (ties: better validation clean accuracy, then the configured LR,
//! then the smaller LR). The probe is tuned first, because RoLI's head comes from it.
use crate::config::{init_label, run_key, Init, StageConfig, StageKind};
use crate::pipeline::{self, PreparedData};
use crate::plan::{Stage, StageSpec, StudyPlan};
use crate::train::adversarial::StageOutcome;
use crate::zoo::BackboneSource;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One candidate's validation outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub method: String,
    pub init: String,
    pub factor: f64,
    pub base_lr: f64,
    pub best_epoch: Option<u32>,
    pub val_robust: f64,
    pub val_clean: f64,
}

impl Candidate {
    fn of(stage: Stage, factor: f64, base_lr: f64, o: &StageOutcome) -> Self {
        let at_best = o.state.best_epoch.and_then(|e| o.state.history.iter().find(|h| h.epoch == e));
        Candidate {
            method: stage.kind().as_str().into(),
            init: init_label(stage.kind(), stage.init()).into(),
            factor,
            base_lr,
            best_epoch: o.state.best_epoch,
            val_robust: o.state.best_val_robust,
            val_clean: at_best.map(|h| h.val_clean).unwrap_or(0.0),
        }
    }
}

/// The winner among candidates of one (method, init): best validation robust accuracy, then
/// clean accuracy, then factor 1 (the configured LR), then the smaller LR. A candidate whose
/// validation scores are not finite (a diverged run) never wins: NaN would compare as equal to
/// anything. Pure, for testing.
pub fn pick_best(c: &[Candidate]) -> Option<usize> {
    let key = |x: &Candidate| [x.val_robust, x.val_clean, (x.factor == 1.0) as u8 as f64, -x.base_lr];
    let by_key = |a: &usize, b: &usize| {
        key(&c[*a])
            .iter()
            .zip(key(&c[*b]))
            .map(|(x, y)| x.total_cmp(&y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    };
    (0..c.len()).filter(|&i| c[i].val_robust.is_finite() && c[i].val_clean.is_finite()).max_by(by_key)
}

/// What a tuning run found: every candidate and the chosen stage tables.
#[derive(Debug, Clone)]
pub struct TuneOutcome {
    pub candidates: Vec<Candidate>,
    /// `[probe]` at the chosen LR.
    pub probe: StageConfig,
    /// `[finetune.per_method.<method>_<init>]` tables: the config's own, with the tuned ones replaced.
    pub per_method: BTreeMap<String, StageConfig>,
}

impl TuneOutcome {
    /// `tuned.toml`: the chosen stages as tables to paste into a config.
    pub fn tuned_toml(&self, factors: &[f64]) -> anyhow::Result<String> {
        let mut doc = toml::Table::new();
        doc.insert("probe".into(), toml::Value::try_from(&self.probe)?);
        let mut pm = toml::Table::new();
        for (k, v) in &self.per_method {
            pm.insert(k.clone(), toml::Value::try_from(v)?);
        }
        let mut ft = toml::Table::new();
        ft.insert("per_method".into(), toml::Value::Table(pm));
        doc.insert("finetune".into(), toml::Value::Table(ft));
        Ok(format!(
            "# Chosen by `roli tune` on validation PGD accuracy (factors {factors:?}); see tune.json.\n{}",
            toml::to_string(&doc)?
        ))
    }
}

/// What to tune and where.
pub struct TuneRequest<'a> {
    pub factors: &'a [f64],
    /// Which stages to tune (the probe is `linear`).
    pub wanted: &'a dyn Fn(StageKind) -> bool,
    /// The config's `finetune.per_method` tables (kept in `tuned.toml` unless re-tuned).
    pub per_method: &'a BTreeMap<String, StageConfig>,
    pub out: &'a Path,
}

/// Tunes every wanted stage of the plan; each candidate trains in `out/<method>_<init>_x<factor>`.
pub fn tune(plan: &StudyPlan, req: &TuneRequest<'_>) -> anyhow::Result<TuneOutcome> {
    if req.factors.is_empty() || req.factors.iter().any(|f| !(f.is_finite() && *f > 0.0)) {
        anyhow::bail!("--factors must be positive numbers, e.g. --factors 0.3,1,3");
    }
    let data = pipeline::prepare_data(&plan.data)?;
    let src = pipeline::source(&plan.model)?;
    let ctx = Ctx { plan, data: &data, src: &src, req };
    let mut candidates = Vec::new();
    let probe_spec = &plan.stages[0];
    let mut chosen_probe = probe_spec.clone();
    if (req.wanted)(StageKind::Probe) {
        chosen_probe = ctx.tune_stage(probe_spec, None, &mut candidates)?;
    }
    let stage2: Vec<&StageSpec> = plan.stages[1..].iter().filter(|s| (req.wanted)(s.stage.kind())).collect();
    let head_path = if stage2.iter().any(|s| s.stage.init() == Init::Roli) {
        // RoLI's head: the probe at the chosen LR (no AutoAttack; its test numbers are not used here).
        let dir = req.out.join("probe_chosen");
        let eval = plan.eval.without_autoattack();
        Some(pipeline::probe(plan, &chosen_probe, &eval, &data, &src, &dir)?.1)
    } else {
        None
    };
    let mut per_method = req.per_method.clone();
    for spec in stage2 {
        let head = if spec.stage.init() == Init::Roli { head_path.as_deref() } else { None };
        let s = ctx.tune_stage(spec, head, &mut candidates)?;
        per_method.insert(run_key(spec.stage.kind(), spec.stage.init()), s.optim.source);
    }
    Ok(TuneOutcome { candidates, probe: chosen_probe.optim.source, per_method })
}

struct Ctx<'a> {
    plan: &'a StudyPlan,
    data: &'a PreparedData,
    src: &'a BackboneSource,
    req: &'a TuneRequest<'a>,
}

impl Ctx<'_> {
    /// Trains every factor of one stage; returns the stage at the winning LR.
    fn tune_stage(&self, spec: &StageSpec, head: Option<&Path>, all: &mut Vec<Candidate>) -> anyhow::Result<StageSpec> {
        let (stage, batch) = (spec.stage, self.plan.data.batch_size);
        let mut cands = Vec::new();
        for &f in self.req.factors {
            let cand = StageSpec { stage, optim: spec.optim.with_base_lr(spec.optim.source.base_lr * f, batch) };
            let name = format!("{}_{}_x{f}", stage.kind().as_str(), init_label(stage.kind(), stage.init()));
            let o = pipeline::train_only(self.plan, &cand, self.data, self.src, head, &self.req.out.join(name))?;
            let c = Candidate::of(stage, f, cand.optim.source.base_lr, &o);
            eprintln!(
                "tune {:>8} {:>5} lr×{f:<5} base_lr {:.2e}: val PGD {:.2}%  clean {:.2}%  (best epoch {:?})",
                c.method,
                c.init,
                c.base_lr,
                100.0 * c.val_robust,
                100.0 * c.val_clean,
                c.best_epoch
            );
            cands.push(c);
        }
        let Some(best) = pick_best(&cands).map(|i| cands[i].base_lr) else {
            anyhow::bail!(
                "{}: every candidate learning rate diverged (validation accuracy not finite); try smaller --factors",
                stage.label()
            );
        };
        all.extend(cands);
        Ok(StageSpec { stage, optim: spec.optim.with_base_lr(best, batch) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(f: f64, lr: f64, r: f64, cl: f64) -> Candidate {
        Candidate {
            method: "full".into(),
            init: "roli".into(),
            factor: f,
            base_lr: lr,
            best_epoch: Some(0),
            val_robust: r,
            val_clean: cl,
        }
    }

    #[test]
    fn best_is_by_val_robust_then_clean_then_configured_lr() {
        assert_eq!(pick_best(&[c(0.3, 0.3, 0.40, 0.7), c(1.0, 1.0, 0.45, 0.6), c(3.0, 3.0, 0.42, 0.9)]), Some(1));
        assert_eq!(pick_best(&[c(0.3, 0.3, 0.45, 0.7), c(1.0, 1.0, 0.45, 0.6)]), Some(0));
        assert_eq!(pick_best(&[c(0.3, 0.3, 0.45, 0.7), c(1.0, 1.0, 0.45, 0.7), c(3.0, 3.0, 0.45, 0.7)]), Some(1));
        assert_eq!(pick_best(&[c(0.3, 0.3, 0.45, 0.7), c(3.0, 3.0, 0.45, 0.7)]), Some(0));
        assert_eq!(pick_best(&[]), None);
        assert_eq!(pick_best(&[c(0.3, 0.3, f64::NAN, 0.7), c(1.0, 1.0, 0.10, 0.6)]), Some(1), "NaN never wins");
        assert_eq!(pick_best(&[c(1.0, 1.0, 0.10, 0.6), c(3.0, 3.0, f64::NAN, 0.7)]), Some(0));
        assert_eq!(pick_best(&[c(1.0, 1.0, f64::NAN, f64::NAN)]), None);
    }

    #[test]
    fn tuned_toml_keeps_the_configs_tables_and_parses_back() {
        let s = |lr| StageConfig {
            epochs: 2,
            base_lr: lr,
            weight_decay: 0.0,
            optimizer: crate::config::OptimizerChoice::Sgd,
            warmup_epochs: 0,
        };
        let mut per_method = BTreeMap::new();
        per_method.insert("lora_roli".to_string(), s(0.5));
        let o = TuneOutcome { candidates: vec![], probe: s(0.1), per_method };
        let text = o.tuned_toml(&[0.3, 1.0]).unwrap();
        let v: toml::Table = toml::from_str(&text).unwrap();
        let back: StageConfig = v["finetune"]["per_method"]["lora_roli"].clone().try_into().unwrap();
        assert_eq!(back.base_lr, 0.5);
        assert!(text.starts_with("# Chosen by `roli tune`"));
    }
}
