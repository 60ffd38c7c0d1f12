//! `roli tune`: learning-rate selection on the validation split, per (method, init), never on
//! test. Each candidate LR is the config's base LR times a factor; the winner has the best
//! validation PGD accuracy at its best epoch (ties: better validation clean accuracy, then the
//! config's own LR, then the smaller LR). The probe is tuned first, because RoLI's head comes
//! from it. Writes `OUT/tune.json` (every candidate) and `OUT/tuned.toml` (the chosen stages as
//! `[probe]` and `[finetune.per_method.<method>_<init>]` tables to paste into a config).
use crate::config::{init_label, run_key, Init, Method, RunConfig, StageConfig};
use crate::pipeline;
use crate::train::adversarial::StageOutcome;
use clap::Args;
use serde::{Deserialize, Serialize};

#[derive(Debug, Args)]
pub struct TuneArgs {
    #[command(flatten)]
    pub cfg: super::run::ConfigArgs,
    /// Multipliers of each stage's configured base LR to try.
    #[arg(long, value_delimiter = ',', default_value = "0.3,1,3")]
    pub factors: Vec<f64>,
    /// Tune only these methods (default: linear and every finetuning method of the config).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
}

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
    fn of(method: Method, init: Init, factor: f64, base_lr: f64, o: &StageOutcome) -> Self {
        let at_best = o.state.best_epoch.and_then(|e| o.state.history.iter().find(|h| h.epoch == e));
        Candidate {
            method: method.as_str().into(),
            init: init_label(method, init).into(),
            factor,
            base_lr,
            best_epoch: o.state.best_epoch,
            val_robust: o.state.best_val_robust,
            val_clean: at_best.map(|h| h.val_clean).unwrap_or(0.0),
        }
    }
}

/// The winner among candidates of one (method, init): best validation robust accuracy, then
/// clean accuracy, then factor 1 (the configured LR), then the smaller LR. Pure, for testing.
pub fn pick_best(c: &[Candidate]) -> Option<usize> {
    let key = |x: &Candidate| (x.val_robust, x.val_clean, (x.factor == 1.0) as u8, -x.base_lr);
    (0..c.len()).max_by(|&a, &b| key(&c[a]).partial_cmp(&key(&c[b])).unwrap_or(std::cmp::Ordering::Equal))
}

pub fn run(a: TuneArgs) -> anyhow::Result<()> {
    if a.factors.is_empty() || a.factors.iter().any(|f| !(f.is_finite() && *f > 0.0)) {
        anyhow::bail!("--factors must be positive numbers, e.g. --factors 0.3,1,3");
    }
    let base = RunConfig::load(&a.cfg.config, &a.cfg.set)?;
    let out = &a.cfg.out;
    std::fs::create_dir_all(out)?;
    crate::config::write_resolved(&base, out)?;
    let wanted = |m: Method| a.methods.is_empty() || a.methods.iter().any(|s| s == m.as_str());
    let data = pipeline::prepare_data(&base)?;
    let src = pipeline::source(&base)?;
    let mut all: Vec<Candidate> = Vec::new();
    let mut chosen = base.clone();

    let tune = |method: Method,
                init: Init,
                stage: &StageConfig,
                head: Option<&std::path::Path>,
                all: &mut Vec<Candidate>|
     -> anyhow::Result<StageConfig> {
        let mut cands = Vec::new();
        for &f in &a.factors {
            let mut cfg = base.clone();
            let s = StageConfig { base_lr: stage.base_lr * f, ..stage.clone() };
            if method == Method::Linear {
                cfg.probe = s.clone();
            } else {
                cfg.finetune.per_method.insert(run_key(method, init), s.clone());
            }
            let dir = out.join(format!("{}_{}_x{f}", method.as_str(), init_label(method, init)));
            let o = pipeline::train_only(&cfg, &data, &src, method, head, &dir)?;
            let c = Candidate::of(method, init, f, s.base_lr, &o);
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
        let best = pick_best(&cands).map(|i| cands[i].base_lr).unwrap_or(stage.base_lr);
        all.extend(cands);
        Ok(StageConfig { base_lr: best, ..stage.clone() })
    };

    if wanted(Method::Linear) {
        chosen.probe = tune(Method::Linear, Init::Ranli, &base.probe, None, &mut all)?;
    }
    let methods: Vec<Method> = base.finetune.methods.iter().copied().filter(|&m| wanted(m)).collect();
    let head_path = if !methods.is_empty() && base.finetune.inits.contains(&Init::Roli) {
        // RoLI's head: the probe at the chosen LR (no AutoAttack; its test numbers are not used here).
        let mut pc = chosen.clone();
        pc.eval.autoattack = "none".into();
        let dir = out.join("probe_chosen");
        Some(pipeline::probe(&pc, &data, &src, &dir)?.1)
    } else {
        None
    };
    for &m in &methods {
        for &i in &base.finetune.inits {
            let stage = base.stage_for(m, i).clone();
            let head = if i == Init::Roli { head_path.as_deref() } else { None };
            let s = tune(m, i, &stage, head, &mut all)?;
            chosen.finetune.per_method.insert(run_key(m, i), s);
        }
    }

    roli_data::cache::write_atomic(&out.join("tune.json"), serde_json::to_string_pretty(&all)?.as_bytes())?;
    let mut doc = toml::Table::new();
    doc.insert("probe".into(), toml::Value::try_from(&chosen.probe)?);
    let mut pm = toml::Table::new();
    for (k, v) in &chosen.finetune.per_method {
        pm.insert(k.clone(), toml::Value::try_from(v)?);
    }
    let mut ft = toml::Table::new();
    ft.insert("per_method".into(), toml::Value::Table(pm));
    doc.insert("finetune".into(), toml::Value::Table(ft));
    let text = format!(
        "# Chosen by `roli tune` on validation PGD accuracy (factors {:?}); see tune.json.\n{}",
        a.factors,
        toml::to_string(&doc)?
    );
    roli_data::cache::write_atomic(&out.join("tuned.toml"), text.as_bytes())?;
    println!("{:<8} {:<6} {:>10} {:>9} {:>9}", "method", "init", "base_lr", "val PGD", "val clean");
    for c in &all {
        println!(
            "{:<8} {:<6} {:>10.2e} {:>8.2}% {:>8.2}%",
            c.method,
            c.init,
            c.base_lr,
            100.0 * c.val_robust,
            100.0 * c.val_clean
        );
    }
    println!("chosen stages: {}", out.join("tuned.toml").display());
    Ok(())
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
    }
}
