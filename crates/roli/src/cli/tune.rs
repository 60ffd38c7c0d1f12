//! `roli tune`: learning-rate selection on validation (the algorithm: [`crate::study::tune`]).
//! Writes `OUT/tune.json` (every candidate) and `OUT/tuned.toml` (the chosen stages as `[probe]`
//! and `[finetune.per_method.<method>_<init>]` tables to paste into a config).
use crate::config::StageKind;
use crate::study::tune::{self, TuneRequest};
use clap::Args;

#[derive(Debug, Args)]
pub struct TuneArgs {
    #[command(flatten)]
    pub cfg: super::run::ConfigArgs,
    /// Multipliers of each stage's configured base LR to try.
    #[arg(long, value_delimiter = ',', default_value = "0.3,1,3")]
    pub factors: Vec<f64>,
    /// Tune only these (`linear` is the probe; default: the probe and every finetuning method of the config).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<StageKind>,
}

pub fn run(a: TuneArgs) -> anyhow::Result<()> {
    let (cfg, plan) = a.cfg.load()?;
    let out = &a.cfg.out;
    let _lock = crate::lock::lock_output(out)?;
    crate::pipeline::write_resolved(&plan, out)?;
    let wanted = |k: StageKind| a.methods.is_empty() || a.methods.contains(&k);
    let req = TuneRequest { factors: &a.factors, wanted: &wanted, per_method: &cfg.finetune.per_method, out };
    let outcome = tune::tune(&plan, &req)?;
    crate::artifacts::write_json(&out.join("tune.json"), &outcome.candidates)?;
    crate::artifacts::write_atomic(&out.join("tuned.toml"), outcome.tuned_toml(&a.factors)?.as_bytes())?;
    println!("{:<8} {:<6} {:>10} {:>9} {:>9}", "method", "init", "base_lr", "val PGD", "val clean");
    for c in &outcome.candidates {
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
