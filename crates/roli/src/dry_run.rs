//! `roli run --dry-run`: the resolved plan made concrete without data or weights — each stage's
//! model is built with random weights of the right shape, and what trains is counted.
use crate::config::init_label;
use crate::peft;
use crate::pipeline::{build_model, build_options, dry_source, stage_plan};
use crate::plan::StudyPlan;
use crate::train::optim::weight_decay_for;
use serde::Serialize;

/// How a plan line's note starts when its stage's model cannot be built (the dry run then fails).
pub const CANNOT_BUILD: &str = "cannot build";

/// One line of a dry-run plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanLine {
    pub method: String,
    pub init: String,
    pub optimizer: String,
    pub lr: f64,
    pub weight_decay_applied: String,
    pub epochs: u32,
    pub trainable_tensors: usize,
    pub trainable_elements: i64,
    /// Forward+backward passes through the model per epoch (PGD steps + 1 per training example,
    /// plus clean + PGD on validation).
    pub passes_per_epoch: u64,
    pub notes: Vec<String>,
}

/// Every stage of the plan with `num_classes` classes of `input` images, `n_train` / `n_val`
/// examples for the pass count.
pub fn dry_run(
    plan: &StudyPlan,
    num_classes: i64,
    input: [i64; 3],
    n_train: usize,
    n_val: usize,
) -> anyhow::Result<Vec<PlanLine>> {
    let src = dry_source(&plan.model)?;
    let mut out = Vec::new();
    for spec in &plan.stages {
        let stage = spec.stage;
        let (method, init) = (stage.kind().as_str().to_string(), init_label(stage.kind(), stage.init()).to_string());
        let opts = build_options(&plan.model, num_classes, input, stage, tch::Device::Cpu);
        let built = match build_model(&plan.model, &src, &opts, stage) {
            Ok(b) => b,
            Err(e) => {
                out.push(PlanLine {
                    method,
                    init,
                    optimizer: "-".into(),
                    lr: 0.0,
                    weight_decay_applied: "-".into(),
                    epochs: 0,
                    trainable_tensors: 0,
                    trainable_elements: 0,
                    passes_per_epoch: 0,
                    notes: vec![format!("{CANNOT_BUILD}: {e:#}")],
                });
                continue;
            }
        };
        let sp = stage_plan(plan, spec, &built, "dry");
        let vars = built.vs.variables();
        let decayed: i64 = sp
            .trainable
            .iter()
            .filter(|n| weight_decay_for(&sp.optimizer, n, sp.weight_decay, &sp.head_bias) > 0.0)
            .map(|n| vars[n].numel() as i64)
            .sum();
        let total = peft::count_elements(&vars, &sp.trainable);
        let train_passes = sp.train_pgd.steps as u64 + 2;
        let val_passes = sp.eval_pgd.steps as u64 + 2;
        out.push(PlanLine {
            method,
            init,
            optimizer: sp.optimizer.to_string(),
            lr: sp.lr,
            weight_decay_applied: format!("{} on {decayed} of {total} elements", sp.weight_decay),
            epochs: sp.epochs,
            trainable_tensors: sp.trainable.len(),
            trainable_elements: total,
            passes_per_epoch: n_train as u64 * train_passes + n_val as u64 * val_passes,
            notes: spec.optim.notes.clone(),
        });
    }
    Ok(out)
}
