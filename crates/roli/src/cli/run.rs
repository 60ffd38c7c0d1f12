//! `roli probe`, `roli finetune`, `roli run`: the RoLI pipeline from a TOML config.
use crate::config::{Init, RunConfig};
use crate::device::DeviceChoice;
use crate::peft::Method;
use crate::pipeline;
use crate::plan::{self, Stage, StudyPlan};
use crate::results::MethodResult;
use anyhow::bail;
use clap::Args;
use std::path::PathBuf;

/// Config file plus overrides, shared by the pipeline commands.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The run's TOML config (see configs/).
    pub config: PathBuf,
    /// Override any key, e.g. `--set finetune.methods=["full","lora"] --set data.name=PATH`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Output folder (resumable: re-running continues where a killed run stopped).
    #[arg(long, default_value = "runs/run")]
    pub out: PathBuf,
    /// auto, cpu, cuda or cuda:N (overrides the config's `device`; a run may resume on another).
    #[arg(long)]
    pub device: Option<DeviceChoice>,
}

/// `--device D` as the override `device="D"`.
pub fn with_device(set: &[String], device: Option<DeviceChoice>) -> Vec<String> {
    set.iter().cloned().chain(device.map(|d| format!("device=\"{d}\""))).collect()
}

impl ConfigArgs {
    /// The checked config and its resolved plan.
    pub fn load(&self) -> anyhow::Result<(RunConfig, StudyPlan)> {
        let cfg = RunConfig::load(&self.config, &with_device(&self.set, self.device))?;
        let plan = StudyPlan::resolve(&cfg);
        Ok((cfg, plan))
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub cfg: ConfigArgs,
    /// Print the resolved plan (optimiser actually used, real weight decay, scaled LR, epochs,
    /// trainable parameter counts, passes) without reading data or weights.
    #[arg(long)]
    pub dry_run: bool,
    /// Classes K for --dry-run (default: 10).
    #[arg(long, default_value_t = 10)]
    pub classes: i64,
    /// Input C,H,W for --dry-run (default: the backbone's own size).
    #[arg(long, value_delimiter = ',')]
    pub input: Vec<i64>,
    /// Exit 0 even when an integrity check failed (the numbers stay marked `unreliable`).
    #[arg(long)]
    pub allow_flags: bool,
    /// Run the study once per seed (`--seeds 0,1,2`) into OUT/seed-<s>/ and pool them in
    /// OUT/summary.json; replaces the config's `seed`/`seeds` (one seed: the usual layout).
    #[arg(long, value_delimiter = ',', value_name = "S,S,…")]
    pub seeds: Vec<u64>,
}

#[derive(Debug, Args)]
pub struct FinetuneArgs {
    #[command(flatten)]
    pub cfg: ConfigArgs,
    /// A finetuning method (full, bias, lora, adapter, prompt, layernorm).
    #[arg(long)]
    pub method: Method,
    /// A stage-1 head artifact (folder or head.json) → RoLI; absent → RanLI.
    #[arg(long)]
    pub init_head: Option<PathBuf>,
    /// Use a head probed at another threat or on other train/val splits (recorded in the notes).
    #[arg(long)]
    pub allow_head_mismatch: bool,
}

pub fn probe(a: ConfigArgs) -> anyhow::Result<()> {
    let (_, plan) = a.load()?;
    let _lock = crate::lock::lock_output(&a.out)?;
    pipeline::write_resolved(&plan, &a.out)?;
    let data = pipeline::prepare_data(&plan.data)?;
    let src = pipeline::source(&plan.model)?;
    let (r, head) = pipeline::probe(&plan, &plan.stages[0], &plan.eval, &data, &src, &a.out)?;
    print_result(&r);
    println!("head artifact: {}", head.display());
    Ok(())
}

pub fn finetune(a: FinetuneArgs) -> anyhow::Result<()> {
    let (cfg, mut plan) = a.cfg.load()?;
    plan.allow_head_mismatch = a.allow_head_mismatch;
    let init = if a.init_head.is_some() { Init::Roli } else { Init::Ranli };
    let spec = plan::stage_spec(&cfg, Stage::Finetune { method: a.method, init });
    let _lock = crate::lock::lock_output(&a.cfg.out)?;
    pipeline::write_resolved(&plan, &a.cfg.out)?;
    let data = pipeline::prepare_data(&plan.data)?;
    let src = pipeline::source(&plan.model)?;
    let r = pipeline::finetune(&plan, &spec, &data, &src, a.init_head.as_deref(), &a.cfg.out)?;
    print_result(&r);
    Ok(())
}

pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let set = crate::seeds::with_seeds(&with_device(&a.cfg.set, a.cfg.device), &a.seeds)?;
    let cfg = RunConfig::load(&a.cfg.config, &set)?;
    let plans = crate::study::seeds::SeedPlans::resolve(&cfg);
    if a.dry_run {
        if plans.is_multi() {
            println!(
                "# seeds {:?}: the plan of the first seed (later seeds: the same with their seed)",
                cfg.seed_list()
            );
        }
        return dry_run(plans.first(), a.classes, &a.input);
    }
    let _lock = crate::lock::lock_output(&a.cfg.out)?;
    let outcome = crate::study::seeds::run_with(&plans, &a.cfg.out, &|_, _| {})?;
    let summaries = outcome.summaries();
    for (label, s) in &summaries {
        if !label.is_empty() {
            println!("{label}:");
        }
        print!("{}", table(s));
    }
    if let crate::study::seeds::Outcome::Seeds(p) = &outcome {
        print!("{}", pooled_table(p));
    }
    println!("summary: {}", a.cfg.out.join(crate::artifacts::SUMMARY).display());
    let gate: Vec<(&str, &crate::results::Summary)> = summaries.iter().map(|(l, s)| (l.as_str(), *s)).collect();
    crate::integrity::gate(&gate, a.allow_flags)?;
    Ok(())
}

/// The pooled rows of a multi-seed run: mean [t-interval] over the seeds.
pub fn pooled_table(p: &crate::results::SeedsSummary) -> String {
    let mut out =
        format!("pooled over seeds {:?} (mean [95% CI]):\n", p.seeds.iter().map(|s| s.seed).collect::<Vec<_>>());
    let v = |x: &crate::results::PooledValue| {
        format!("{:.1}% [{:.1}, {:.1}]", 100.0 * x.mean, 100.0 * x.low, 100.0 * x.high)
    };
    for r in &p.pooled {
        out.push_str(&format!(
            "{:<8} {:<6} S={} clean {}  pgd {}{}\n",
            r.method.as_str(),
            crate::config::init_label(r.method, r.init),
            r.clean.per_seed.len(),
            v(&r.clean),
            v(&r.pgd),
            if r.reliable {
                String::new()
            } else {
                format!("  {} ({})", crate::integrity::UNRELIABLE, r.failed_checks.join(", "))
            }
        ));
    }
    out
}

/// The `roli run` table: one row per model, `unreliable (checks)` after a number that failed a check.
pub fn table(s: &crate::results::Summary) -> String {
    let mut out = format!("{:<8} {:<6} {:>8} {:>8} {:>8}\n", "method", "init", "clean", "pgd", "aa");
    for r in &s.results {
        out.push_str(&row(r));
        out.push('\n');
    }
    out
}

/// Prints the plan, then each stage's model as built (optimiser, LR, trainable counts).
fn dry_run(plan: &StudyPlan, classes: i64, input: &[i64]) -> anyhow::Result<()> {
    let input: [i64; 3] = match input {
        [] => match &pipeline::dry_source(&plan.model)? {
            crate::zoo::BackboneSource::Preset { preset, .. } => roli_models::descriptor(preset)?.input_size(),
            crate::zoo::BackboneSource::Own { dir } => roli_models::own::read_sidecar(dir)?.descriptor.input_size(),
            crate::zoo::BackboneSource::Script { .. } => {
                bail!("--dry-run of a TorchScript backbone needs --input C,H,W")
            }
        },
        [c, h, w] => [*c, *h, *w],
        _ => bail!("--input takes C,H,W"),
    };
    print!("{plan}");
    println!("# models with K={classes}, input {input:?}");
    let lines = pipeline::dry_run(plan, classes, input, 1, 1)?;
    println!(
        "{:<10} {:<6} {:<34} {:>10} {:>6} {:>9} {:>12}  weight decay",
        "method", "init", "optimizer", "lr", "epochs", "tensors", "trainable"
    );
    for l in &lines {
        println!(
            "{:<10} {:<6} {:<34} {:>10.3e} {:>6} {:>9} {:>12}  {}",
            l.method,
            l.init,
            l.optimizer,
            l.lr,
            l.epochs,
            l.trainable_tensors,
            l.trainable_elements,
            l.weight_decay_applied
        );
        for n in &l.notes {
            println!("         note: {n}");
        }
    }
    println!("# passes per epoch = n_train·(train_steps+2) + n_val·(eval_steps+2) forward/backward passes");
    let broken: Vec<String> = lines
        .iter()
        .filter(|l| l.notes.iter().any(|n| n.starts_with(crate::dry_run::CANNOT_BUILD)))
        .map(|l| format!("{}/{}", l.method, l.init))
        .collect();
    if !broken.is_empty() {
        bail!(
            "--dry-run: {} cannot be built (see the notes above); change finetune.methods or the backbone",
            broken.join(", ")
        );
    }
    Ok(())
}

fn row(r: &MethodResult) -> String {
    let init = crate::config::init_label(r.method, r.init);
    let aa = r.test.aa_accuracy.map(|v| format!("{:.2}%", 100.0 * v)).unwrap_or_else(|| "-".into());
    format!(
        "{:<8} {:<6} {:>7.2}% {:>7.2}% {:>8}{}",
        r.method.as_str(),
        init,
        100.0 * r.test.clean_accuracy,
        100.0 * r.test.pgd_accuracy,
        aa,
        crate::integrity::marker(&r.test)
    )
}

fn print_row(r: &MethodResult) {
    println!("{}", row(r));
}

fn print_result(r: &MethodResult) {
    print_row(r);
    println!(
        "  n={} best epoch {:?} (val robust {:.4}); trainable {} elements ({} effective); {:.0}s; details: {}",
        r.test.n,
        r.best_epoch,
        r.best_val_robust,
        r.trainable_elements,
        r.effective_elements.map(|e| e.to_string()).unwrap_or("-".into()),
        r.seconds,
        r.dir.display()
    );
}
