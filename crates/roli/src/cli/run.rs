//! `roli probe`, `roli finetune`, `roli run`: the RoLI pipeline from a TOML config.
use crate::config::{Method, RunConfig};
use crate::pipeline;
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
}

#[derive(Debug, Args)]
pub struct FinetuneArgs {
    #[command(flatten)]
    pub cfg: ConfigArgs,
    /// full, bias, lora or adapter.
    #[arg(long)]
    pub method: String,
    /// A stage-1 head artifact (folder or head.json) → RoLI; absent → RanLI.
    #[arg(long)]
    pub init_head: Option<PathBuf>,
}

fn parse_method(s: &str) -> anyhow::Result<Method> {
    Method::ALL
        .into_iter()
        .find(|m| m.as_str() == s)
        .ok_or_else(|| anyhow::anyhow!("--method {s}: choose one of {:?}", Method::ALL.map(|m| m.as_str())))
}

pub fn probe(a: ConfigArgs) -> anyhow::Result<()> {
    let cfg = RunConfig::load(&a.config, &a.set)?;
    std::fs::create_dir_all(&a.out)?;
    crate::config::write_resolved(&cfg, &a.out)?;
    let data = pipeline::prepare_data(&cfg)?;
    let src = pipeline::source(&cfg)?;
    let (r, head) = pipeline::probe(&cfg, &data, &src, &a.out)?;
    print_result(&r);
    println!("head artifact: {}", head.display());
    Ok(())
}

pub fn finetune(a: FinetuneArgs) -> anyhow::Result<()> {
    let cfg = RunConfig::load(&a.cfg.config, &a.cfg.set)?;
    let method = parse_method(&a.method)?;
    std::fs::create_dir_all(&a.cfg.out)?;
    crate::config::write_resolved(&cfg, &a.cfg.out)?;
    let data = pipeline::prepare_data(&cfg)?;
    let src = pipeline::source(&cfg)?;
    let r = pipeline::finetune(&cfg, &data, &src, method, a.init_head.as_deref(), &a.cfg.out)?;
    print_result(&r);
    Ok(())
}

pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let cfg = RunConfig::load(&a.cfg.config, &a.cfg.set)?;
    if a.dry_run {
        let input: [i64; 3] = match a.input.as_slice() {
            [] => {
                let src = pipeline::dry_source(&cfg)?;
                match &src {
                    crate::zoo::BackboneSource::Preset { preset, .. } => roli_models::descriptor(preset)?.input_size(),
                    crate::zoo::BackboneSource::Own { dir } => {
                        roli_models::own::read_sidecar(dir)?.descriptor.input_size()
                    }
                    crate::zoo::BackboneSource::Script { .. } => {
                        bail!("--dry-run of a TorchScript backbone needs --input C,H,W")
                    }
                }
            }
            [c, h, w] => [*c, *h, *w],
            _ => bail!("--input takes C,H,W"),
        };
        println!("# plan for {} ({}; K={}, input {:?})", cfg.name, cfg.model.backbone, a.classes, input);
        println!(
            "# threat: {} eps {:.6}, step {:.6}, PGD-{} train / PGD-{} eval; batch {}",
            cfg.threat.norm,
            cfg.threat.eps,
            cfg.threat.step_size,
            cfg.threat.train_steps,
            cfg.threat.eval_steps,
            cfg.data.batch_size
        );
        let lines = pipeline::dry_run(&cfg, a.classes, input, 1, 1)?;
        println!(
            "{:<8} {:<6} {:<34} {:>10} {:>6} {:>9} {:>12}  weight decay",
            "method", "init", "optimizer", "lr", "epochs", "tensors", "trainable"
        );
        for l in &lines {
            println!(
                "{:<8} {:<6} {:<34} {:>10.3e} {:>6} {:>9} {:>12}  {}",
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
        return Ok(());
    }
    let s = pipeline::run(&cfg, &a.cfg.out)?;
    println!("{:<8} {:<6} {:>8} {:>8} {:>8}", "method", "init", "clean", "pgd", "aa");
    for r in &s.results {
        print_row(r);
    }
    println!("summary: {}", a.cfg.out.join("summary.json").display());
    Ok(())
}

fn print_row(r: &pipeline::MethodResult) {
    let init = crate::config::init_label(r.method, r.init);
    let aa = r.test.aa_accuracy.map(|v| format!("{:.2}%", 100.0 * v)).unwrap_or_else(|| "-".into());
    println!(
        "{:<8} {:<6} {:>7.2}% {:>7.2}% {:>8}",
        r.method.as_str(),
        init,
        100.0 * r.test.clean_accuracy,
        100.0 * r.test.pgd_accuracy,
        aa
    );
}

fn print_result(r: &pipeline::MethodResult) {
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
