//! `roli eval`: robust accuracy of any classifier on any dataset under any attack, with
//! per-example records in `DIR/results.json` (the evaluation: [`crate::study::evaluate`]).
use crate::device::ComputeArgs;
use crate::study::evaluate::{self, EvalOutcome, EvalRequest};
use clap::Args;
use roli_attacks::ProgressEvent;
use roli_data::Split;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A zoo name (`advertorch-lenet5-mnist-at`, `advertorch-lenet5-mnist-std`, …), a roli
    /// checkpoint folder (a run's stage folder `DIR/<stage>` too: its `model/` with the PEFT
    /// layers), or a TorchScript classifier (.pt; takes [0,1] NCHW, returns logits).
    #[arg(long)]
    pub model: String,
    /// A built-in dataset (`mnist`, `fashion-mnist`, `cifar10-samples`, …) or a folder.
    #[arg(long)]
    pub data: String,
    /// The folder's format when its files match two (idx, cifar10, cifar100, imagefolder,
    /// json-splits); detected from the files otherwise.
    #[arg(long)]
    pub format: Option<roli_data::Format>,
    /// train, val or test.
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// Evaluate only the first N examples of the split.
    #[arg(long)]
    pub limit: Option<usize>,
    /// The attack (see --help for the list).
    #[arg(long, default_value = "pgd", long_help = roli_attacks::attack_help())]
    pub attack: String,
    /// Radius in [0,1] pixel units (e.g. 0.3 for MNIST, 0.031373 = 8/255 for CIFAR); not needed
    /// with `--attack none` or `--eps-list`.
    #[arg(long, allow_negative_numbers = true)]
    pub eps: Option<f64>,
    /// Accept an L∞ radius above 1 (the whole [0,1] pixel range; only a sanity check needs it).
    #[arg(long)]
    pub allow_large_eps: bool,
    /// linf or l2.
    #[arg(long, default_value = "linf")]
    pub norm: String,
    /// PGD steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// PGD step size (default eps/4).
    #[arg(long, allow_negative_numbers = true)]
    pub step_size: Option<f64>,
    /// PGD random restarts.
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// Several radii for a robustness curve, e.g. `--eps-list 0,0.1,0.2,0.3`.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
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
    #[command(flatten)]
    pub compute: ComputeArgs,
}

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let attack = evaluate::parse_attack(&a.attack, a.steps, a.step_size, a.restarts)?;
    let eps = match (a.eps, a.eps_list.first()) {
        (Some(e), _) => e,
        (None, Some(&first)) => first,
        (None, None) if attack == roli_attacks::AttackSpec::None => 0.0,
        (None, None) => return Err(crate::validate::InputError::EpsRequired { attack: a.attack.clone() }.into()),
    };
    let req = EvalRequest {
        attack,
        norm: evaluate::parse_norm(&a.norm)?,
        model: a.model.clone(),
        data: a.data.clone(),
        format: a.format,
        split: a.split,
        limit: a.limit,
        eps,
        allow_large_eps: a.allow_large_eps,
        eps_list: a.eps_list.clone(),
        seed: a.seed,
        batch_size: a.batch_size,
        out: a.out.clone(),
        resume: a.resume,
        device: a.compute.device.resolve()?,
        attention: a.compute.attention,
        precision: a.compute.precision,
    };
    let _lock = crate::lock::lock_output(&a.out)?;
    let bars = crate::progress::EvalBars::new("eval");
    let done = evaluate::evaluate(&req, &|e: &ProgressEvent| bars.on_event(e))?;
    bars.finish();
    match &done.outcome {
        EvalOutcome::Single(rep) => {
            println!(
                "{} on {} {} (n={}): clean {:.2}%  robust {:.2}%  [{} {} eps {}]  flags: {}",
                a.model,
                a.data,
                a.split,
                rep.n,
                100.0 * rep.clean_accuracy,
                100.0 * rep.robust_accuracy,
                req.attack,
                a.norm,
                req.eps,
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
            println!("  passes: {:?}; results: {}", rep.passes, done.results.display());
        }
        EvalOutcome::Sweep(sw) => {
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
            println!("results: {}", done.results.display());
        }
    }
    Ok(())
}
