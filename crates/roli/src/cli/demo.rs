//! `roli demo` — README's main command: the study of [`crate::study::demo`] (the embedded
//! `configs/demo.toml` on the robust and the standard backbone, with its report) in `--out`.
use crate::results::Summary;
use crate::study::demo::{self, Budget, DemoPlan, DEMO_TOML};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[arg(long, value_enum, default_value = "quick")]
    pub budget: Budget,
    /// Output folder (re-running resumes and reuses finished stages).
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Override any key of the embedded config, e.g. `--set seed=1`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Another study instead of the embedded one (e.g. configs/lenet-fmnist.toml); its
    /// `model.standard_backbone` gives the standard twin.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Skip the standard-backbone run (finding 1 is then not evaluated).
    #[arg(long)]
    pub no_standard: bool,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<crate::device::DeviceChoice>,
    /// Exit 0 even when an integrity check failed (the numbers stay marked `unreliable`).
    #[arg(long)]
    pub allow_flags: bool,
    /// The robust study's seeds (`--seeds 0,1,2`), replacing the config's `seed`/`seeds`; the
    /// standard twin runs the first seed.
    #[arg(long, value_delimiter = ',', value_name = "S,S,…")]
    pub seeds: Vec<u64>,
}

pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let set = crate::seeds::with_seeds(&super::run::with_device(&a.set, a.device), &a.seeds)?;
    let cfg = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?;
            demo::budget_config(&text, &p.display().to_string(), a.budget, &set)?
        }
        None => demo::budget_config(DEMO_TOML, "configs/demo.toml (embedded)", a.budget, &set)?,
    };
    let plan = DemoPlan::resolve(&cfg, !a.no_standard);
    let _lock = crate::lock::lock_output(&a.out)?;
    let outcome = demo::run(&plan, &a.out)?;
    let robust = outcome.robust.summaries();
    let labels: Vec<String> =
        robust.iter().map(|(l, _)| if l.is_empty() { "robust".into() } else { format!("robust {l}") }).collect();
    let mut summaries: Vec<(&str, &Summary)> =
        labels.iter().map(String::as_str).zip(robust.iter().map(|r| r.1)).collect();
    summaries.extend(outcome.standard.as_ref().map(|s| ("standard", s)));
    print!("{}", table(&summaries));
    if let crate::study::seeds::Outcome::Seeds(p) = &outcome.robust {
        print!("{}", super::run::pooled_table(p));
    }
    println!("report: {}  ({:.1} min)", outcome.report.markdown.display(), t0.elapsed().as_secs_f64() / 60.0);
    crate::integrity::gate(&summaries, a.allow_flags)?;
    Ok(())
}

/// The demo's table: every study (backbone, seed), `unreliable (checks)` after a number that
/// failed a check.
pub fn table(studies: &[(&str, &Summary)]) -> String {
    let mut out = format!("{:<10} {:<8} {:>8} {:>8} {:>8}\n", "backbone", "method", "clean", "pgd", "aa");
    for &(tag, s) in studies {
        for r in &s.results {
            let m = if r.method.is_probe() { r.method.as_str().to_string() } else { r.label() };
            let aa = r.test.aa_accuracy.map(|v| format!("{:.1}%", 100.0 * v)).unwrap_or("-".into());
            out.push_str(&format!(
                "{tag:<10} {m:<12} {:>6.1}% {:>7.1}% {:>8}{}\n",
                100.0 * r.test.clean_accuracy,
                100.0 * r.test.pgd_accuracy,
                aa,
                crate::integrity::marker(&r.test)
            ));
        }
    }
    out
}
