//! `roli eval`: robust accuracy of any classifier (zoo name, roli checkpoint, TorchScript) on any
//! dataset under any attack, with per-example records in `DIR/results.json`.
use anyhow::{bail, Context};
use clap::Args;
use roli_attacks::threat::{Norm, ThreatModel};
use roli_attacks::{AttackSpec, EvalOptions, ProgressEvent};
use roli_data::Split;
use roli_models::HeadInit;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A zoo name (`advertorch-lenet5-mnist-at`, `advertorch-lenet5-mnist-std`, …), a roli
    /// checkpoint folder, or a TorchScript classifier (.pt; takes [0,1] NCHW, returns logits).
    #[arg(long)]
    pub model: String,
    /// A built-in dataset (`mnist`, `fashion-mnist`, `cifar10-samples`, …) or a folder.
    #[arg(long)]
    pub data: String,
    /// train, val or test.
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// Evaluate only the first N examples of the split.
    #[arg(long)]
    pub limit: Option<usize>,
    /// The attack (see --help for the list).
    #[arg(long, default_value = "pgd", long_help = roli_attacks::attack_help())]
    pub attack: String,
    /// Radius in [0,1] pixel units (e.g. 0.3 for MNIST, 0.031373 = 8/255 for CIFAR).
    #[arg(long)]
    pub eps: f64,
    /// linf or l2.
    #[arg(long, default_value = "linf")]
    pub norm: String,
    /// PGD steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// PGD step size (default eps/4).
    #[arg(long)]
    pub step_size: Option<f64>,
    /// PGD random restarts.
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// Several radii for a robustness curve, e.g. `--eps-list 0,0.1,0.2,0.3`.
    #[arg(long, value_delimiter = ',')]
    pub eps_list: Vec<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 250)]
    pub batch_size: usize,
    /// Output folder for results.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Resume an interrupted evaluation from DIR/state.json.
    #[arg(long)]
    pub resume: bool,
}

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let norm = match a.norm.as_str() {
        "linf" => Norm::Linf,
        "l2" => Norm::L2,
        other => bail!("--norm {other}: use linf or l2"),
    };
    let spec: AttackSpec = match a.attack.as_str() {
        "pgd" => AttackSpec::with_pgd(a.steps, a.step_size, a.restarts),
        other => other.parse().map_err(|e| {
            anyhow::anyhow!("--attack {other}: {e}; choose one of {}", roli_attacks::ATTACK_NAMES.join(", "))
        })?,
    };
    let ds = roli_data::load(&roli_data::resolve(&a.data)?, a.split, &Default::default())?;
    let n = a.limit.unwrap_or(ds.len()).min(ds.len());
    if n == 0 {
        bail!("no examples to evaluate in {} / {}", a.data, a.split);
    }
    let idx: Vec<usize> = (0..n).collect();
    let (x, y) = ds.batch(&idx, None)?;
    let src = crate::zoo::resolve(&a.model, None, roli_models::SourceLayout::Native)?;
    let opts = crate::zoo::BuildOptions {
        num_classes: ds.num_classes(),
        head_init: HeadInit::TorchDefault,
        resize: true,
        input: ds.image_shape(),
        keep_head: true,
        drop_path: 0.0,
        trainable_script: false,
        init_seed: a.seed,
    };
    let built = crate::zoo::build(&src, &opts, &roli_models::peft::NoPeft)
        .with_context(|| format!("building model '{}'", a.model))?;
    tracing::info!(
        "model: {} ({}); data: {} {} n={n}; attack {spec}",
        src.describe(),
        built.load_summary,
        a.data,
        a.split
    );
    let model = |t: &tch::Tensor| built.model.forward_with(t, false);
    std::fs::create_dir_all(&a.out)?;
    let pb = crate::progress::spinner("eval");
    let cb = |e: &ProgressEvent| pb.set_message(format!("{e:?}"));
    let mut eo = EvalOptions::new(ThreatModel::new(norm, a.eps));
    eo.seed = a.seed;
    eo.batch_size = a.batch_size;
    eo.progress = Some(&cb);
    // The state always records progress; without --resume a stale one is discarded first.
    let state = a.out.join(crate::artifacts::STATE);
    if !a.resume && state.exists() {
        std::fs::remove_file(&state)?;
    }
    eo.state_path = Some(state.clone());
    let out = a.out.join("results.json");
    if a.eps_list.is_empty() {
        let rep = roli_attacks::evaluate(&model, &x, &y, &spec, &eo)?;
        pb.finish_and_clear();
        crate::artifacts::write_json(&out, &rep)?;
        println!(
            "{} on {} {} (n={}): clean {:.2}%  robust {:.2}%  [{} {} eps {}]  flags: {}",
            a.model,
            a.data,
            a.split,
            rep.n,
            100.0 * rep.clean_accuracy,
            100.0 * rep.robust_accuracy,
            spec,
            a.norm,
            a.eps,
            if rep.flags.is_empty() { "none".to_string() } else { format!("{:?}", rep.flags) }
        );
        for s in &rep.stages {
            println!(
                "  after {:<10} robust {:.2}%  ({} attacked, {} broken, {:.1}s)",
                s.id.as_str(),
                100.0 * s.robust_accuracy,
                s.n_attacked,
                s.n_broken,
                s.seconds
            );
        }
        println!("  passes: {:?}; results: {}", rep.passes, out.display());
    } else {
        let sw = roli_attacks::sweep(&model, &x, &y, &spec, &a.eps_list, &eo)?;
        pb.finish_and_clear();
        crate::artifacts::write_json(&out, &sw)?;
        for r in &sw.reports {
            println!(
                "eps {:<8} clean {:.2}%  robust {:.2}%",
                r.eps,
                100.0 * r.clean_accuracy,
                100.0 * r.robust_accuracy
            );
        }
        if !sw.flags.is_empty() {
            println!("flags: {:?}", sw.flags);
        }
        println!("results: {}", out.display());
    }
    let _ = std::fs::remove_file(&state);
    Ok(())
}
