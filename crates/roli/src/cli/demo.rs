//! `roli demo` — README's main command: the RoLI study of `configs/demo.toml` (embedded) on the
//! robust and the standard backbone, an eps curve, and the report (table with CIs, McNemar tests,
//! findings, Figure-1 scatter) in `--out` (default `runs/demo`).
use crate::config::{Method, RunConfig};
use crate::pipeline;
use crate::report::{self, ReportOptions};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// The embedded default study.
pub const DEMO_TOML: &str = include_str!("../../../../configs/demo.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Budget {
    /// Minutes on 2 CPU cores (the defaults of configs/demo.toml).
    Quick,
    /// More data and epochs: the properly converged study (about an hour on 2 cores).
    Full,
}

/// Overrides that turn the quick demo into the full one.
pub const FULL_BUDGET: &[&str] = &[
    "data.train_limit=20000",
    "data.val_limit=2000",
    "data.test_limit=5000",
    "eval.aa_limit=500",
    "eval.aa_methods=[]",
];
/// Epochs of every stage (probe and each method's) under `--budget full`.
pub const FULL_EPOCHS: u32 = 10;

/// The config of a budget: the quick one is the file as written.
pub fn budget_config(toml: &str, origin: &str, budget: Budget, set: &[String]) -> anyhow::Result<RunConfig> {
    let mut overrides: Vec<String> =
        if budget == Budget::Full { FULL_BUDGET.iter().map(|s| s.to_string()).collect() } else { vec![] };
    overrides.extend(set.iter().cloned());
    let mut cfg = RunConfig::from_toml_str(toml, &overrides, origin)?;
    if budget == Budget::Full {
        for s in std::iter::once(&mut cfg.probe)
            .chain([&mut cfg.finetune.ranli, &mut cfg.finetune.roli])
            .chain(cfg.finetune.per_method.values_mut())
        {
            s.epochs = s.epochs.max(FULL_EPOCHS);
        }
    }
    Ok(cfg)
}

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
}

pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let cfg = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?;
            budget_config(&text, &p.display().to_string(), a.budget, &a.set)?
        }
        None => budget_config(DEMO_TOML, "configs/demo.toml (embedded)", a.budget, &a.set)?,
    };
    let robust_dir = a.out.join("robust");
    let standard_dir = a.out.join("standard");
    let n_models = pipeline::model_count(&cfg);
    // The standard twin (finding 1), unless skipped or the config names none.
    let standard_backbone = cfg.model.standard_backbone.clone().filter(|_| !a.no_standard);
    let runs = if standard_backbone.is_some() { 2 } else { 1 };
    eprintln!("roli demo: {} models × {runs} backbones, then the report in {}", n_models, a.out.display());

    // Overall progress: models done across both backbones, with an ETA from the average time of
    // the models trained in this invocation (reused ones cost nothing).
    let total = n_models * runs;
    let done = std::cell::Cell::new(0usize);
    let trained = std::cell::Cell::new((0usize, 0f64));
    let on_model = |r: &pipeline::MethodResult, reused: bool| {
        done.set(done.get() + 1);
        if !reused {
            let (k, s) = trained.get();
            trained.set((k + 1, s + r.seconds));
        }
        let (k, s) = trained.get();
        let eta = if k > 0 {
            format!(", ETA {:.1} min", s / k as f64 * (total - done.get()) as f64 / 60.0)
        } else {
            String::new()
        };
        let what = if r.method == Method::Linear {
            "linear probe".to_string()
        } else {
            format!("{}/{:?}", r.method.as_str(), r.init).to_lowercase()
        };
        eprintln!(
            "roli demo: {}/{total} models ({what}{}: clean {:.1}%, PGD {:.1}%), {:.1} min elapsed{eta}",
            done.get(),
            if reused { ", reused" } else { "" },
            100.0 * r.test.clean_accuracy,
            100.0 * r.test.pgd_accuracy,
            t0.elapsed().as_secs_f64() / 60.0
        );
    };
    eprintln!("[1/{}] robust backbone {}", runs + 1, cfg.model.backbone);
    let robust = pipeline::run_with(&cfg, &robust_dir, &on_model)?;
    let standard = if let Some(backbone) = standard_backbone {
        let mut sc = cfg.clone();
        sc.model.backbone = backbone;
        sc.name = format!("{} (standard backbone)", cfg.name);
        eprintln!("[2/{}] standard backbone {}", runs + 1, sc.model.backbone);
        Some(pipeline::run_with(&sc, &standard_dir, &on_model)?)
    } else {
        None
    };

    eprintln!("[{}/{}] robustness curve and report", runs + 1, runs + 1);
    let mut curve = Vec::new();
    if !cfg.eval.eps_curve.is_empty() {
        let data = pipeline::prepare_data(&cfg)?;
        let src = pipeline::source(&cfg)?;
        for r in robust.results.iter().filter(|r| matches!(r.method, Method::Linear | Method::Full)) {
            let label = if r.method == Method::Linear {
                "linear probe".to_string()
            } else {
                format!("{} {:?}", r.method.as_str(), r.init).to_lowercase()
            };
            let pts = pipeline::eps_curve(&cfg, &src, &data, r, &cfg.eval.eps_curve, 500)?;
            curve.push((label, pts));
        }
    }
    let opts = ReportOptions {
        title: cfg.name.clone(),
        standard: standard.as_ref(),
        eps_curve: &curve,
        run_dir: Some(&robust_dir),
        standard_run_dir: Some(&standard_dir),
        ..Default::default()
    };
    let paths = report::write_report(&robust, &a.out, &opts)?;
    println!("{:<10} {:<8} {:>8} {:>8} {:>8}", "backbone", "method", "clean", "pgd", "aa");
    for (tag, s) in std::iter::once(("robust", &robust)).chain(standard.as_ref().map(|s| ("standard", s))) {
        for r in &s.results {
            let m = if r.method == Method::Linear {
                "linear".to_string()
            } else {
                format!("{}/{:?}", r.method.as_str(), r.init).to_lowercase()
            };
            let aa = r.test.aa_accuracy.map(|v| format!("{:.1}%", 100.0 * v)).unwrap_or("-".into());
            println!(
                "{tag:<10} {m:<12} {:>6.1}% {:>7.1}% {:>8}",
                100.0 * r.test.clean_accuracy,
                100.0 * r.test.pgd_accuracy,
                aa
            );
        }
    }
    println!("report: {}  ({:.1} min)", paths.markdown.display(), t0.elapsed().as_secs_f64() / 60.0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_config_and_full_budget_parse() {
        let quick = RunConfig::from_toml_str(DEMO_TOML, &[], "demo").unwrap();
        // Both backbones of the demo are committed zoo entries.
        let own: Vec<String> = crate::zoo::list_own().into_iter().map(|(n, _)| n).collect();
        assert!(own.contains(&quick.model.backbone), "{} not in zoo/ ({own:?})", quick.model.backbone);
        assert!(own.contains(quick.model.standard_backbone.as_ref().unwrap()));
        assert_eq!(quick.finetune.methods.len(), 5, "the demo runs every finetuning method");
        assert!(quick.eval.aa_limit.is_some() && quick.data.test_limit.is_some());
        let full = budget_config(DEMO_TOML, "demo", Budget::Full, &[]).unwrap();
        assert!(full.data.train_limit > quick.data.train_limit && full.probe.epochs > quick.probe.epochs);
        // Every stage gets the full epochs, including per-method overrides, and AA runs on every model.
        assert!(!quick.finetune.per_method.is_empty());
        assert!(full.finetune.per_method.values().all(|s| s.epochs == FULL_EPOCHS));
        assert!(full.eval.aa_methods.is_empty() && !quick.eval.aa_methods.is_empty());
        assert!(Method::ALL.iter().all(|&m| full.eval.runs_aa(m)));
        assert!(quick.eval.runs_aa(Method::Full) && !quick.eval.runs_aa(Method::Lora));
    }
}
