//! `roli pretrain`: adversarial (or standard) training of a backbone from scratch — the project's
//! own robust backbones for the model zoo (`zoo/<name>/model.safetensors` + `model.json`, whose
//! sidecar records the training config, data hash, fingerprint and measured accuracies).
use crate::config::{Init, Method, RunConfig};
use crate::pipeline;
use crate::train::adversarial;
use crate::zoo::{self, BackboneSource, BuildOptions};
use anyhow::bail;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// Registry preset to train (e.g. swin_micro_patch2_window4_32, vit_micro_patch4_32, lenet5_advertorch).
    #[arg(long)]
    pub preset: String,
    /// Dataset (built-in name or folder).
    #[arg(long, default_value = "mnist")]
    pub data: String,
    /// L∞ radius of PGD training; 0 = standard training.
    #[arg(long, default_value_t = 0.3)]
    pub eps: f64,
    /// PGD steps in training.
    #[arg(long, default_value_t = 7)]
    pub steps: u32,
    /// PGD step size in training (default 2.5·eps/steps). Large steps put every perturbation on a
    /// corner of the L∞ ball, and a model can learn to resist only those (Swin-nano at 0.3 with step
    /// 0.15: 68 % PGD at that step, 0 % at eps/4); so validation and test use eps/4.
    #[arg(long)]
    pub step_size: Option<f64>,
    #[arg(long, default_value_t = 10)]
    pub epochs: u32,
    /// Epochs over which the training eps ramps up linearly from 0 (large radii from scratch
    /// otherwise collapse to a constant prediction).
    #[arg(long, default_value_t = 0)]
    pub eps_warmup: u32,
    /// Use the first N training images.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// AdamW base LR (effective = base·batch/256).
    #[arg(long, default_value_t = 4e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Warm-up epochs (linear from 0), then cosine.
    #[arg(long, default_value_t = 1)]
    pub warmup: u32,
    /// Evaluate clean/PGD on this many test images, AutoAttack on `--aa-limit`.
    #[arg(long, default_value_t = 1000)]
    pub test_limit: usize,
    #[arg(long, default_value_t = 200)]
    pub aa_limit: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Start from this roli checkpoint (same preset, head included) instead of a random
    /// initialisation: e.g. adversarial training warm-started from the standard twin, for
    /// models that do not get off the ground adversarially from scratch.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Output folder (e.g. zoo/swin-micro-mnist-at); training state lives in OUT/train.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: PretrainArgs) -> anyhow::Result<()> {
    let standard = a.eps == 0.0;
    let step = if standard { 0.01 } else { a.step_size.unwrap_or(2.5 * a.eps / a.steps.max(1) as f64) };
    let toml = format!(
        r#"
name = "pretrain {preset} on {data}"
seed = {seed}
[data]
name = "{data}"
batch_size = {bs}
val_limit = 1000
test_limit = {tl}
[model]
backbone = "{preset}"
head_init = "torch"
[threat]
eps = {eps}
step_size = {step}
train_steps = {steps}
eval_steps = {eval_steps}
eval_step_size = {eval_step}
eps_warmup_epochs = {ew}
[probe]
epochs = 1
base_lr = 0.1
weight_decay = 0.0
optimizer = "sgd"
[finetune.ranli]
epochs = {epochs}
base_lr = {lr}
weight_decay = 0.05
optimizer = "adamw"
warmup_epochs = {warmup}
[eval]
autoattack = "{aa}"
aa_limit = {aa_limit}
"#,
        preset = a.preset,
        data = a.data,
        seed = a.seed,
        bs = a.batch_size,
        tl = a.test_limit,
        eps = if standard { 0.3 } else { a.eps },
        step = step,
        // Validation (best-epoch choice) and test: PGD-10 at the usual eps/4.
        eval_step = if standard { step } else { a.eps / 4.0 },
        steps = if standard { 0 } else { a.steps },
        eval_steps = if standard { 0 } else { 10 },
        epochs = a.epochs,
        lr = a.lr,
        warmup = a.warmup,
        aa = if standard { "none" } else { "standard" },
        aa_limit = a.aa_limit,
        ew = a.eps_warmup,
    );
    let mut cfg = RunConfig::from_toml_str(&toml, &[], "pretrain")?;
    cfg.data.train_limit = a.train_limit;
    std::fs::create_dir_all(&a.out)?;
    let train_dir = a.out.join("train");
    crate::config::write_resolved(&cfg, &train_dir)?;
    let data = pipeline::prepare_data(&cfg)?;
    // A warm start keeps its head; its fingerprint (of all tensors) names it even after its folder moves.
    let (src, keep_head, init_fingerprint) = match &a.init {
        None => (pipeline::source(&cfg)?, false, None),
        Some(dir) => {
            let (src, fingerprint) = init_source(dir, &a.preset)?;
            (src, true, Some(fingerprint))
        }
    };
    let opts = BuildOptions { keep_head, ..pipeline::build_options(&cfg, &data, Method::Full) };
    let built = zoo::build(&src, &opts, &crate::peft::Peft::None)?;
    tracing::info!("pretrain {}: {}", a.preset, built.load_summary);
    let (plan, _) = pipeline::stage_plan(&cfg, &built, Method::Full, Init::Ranli, &format!("pretrain {}", a.preset));
    let pb = crate::progress::bar(data.train.len().div_ceil(a.batch_size) as u64 * a.epochs as u64, "pretrain");
    let per = data.train.len().div_ceil(a.batch_size) as u64;
    let cb = |e: u32, b: usize, _: usize, l: f64| {
        pb.set_position(e as u64 * per + b as u64 + 1);
        pb.set_message(format!("epoch {e} loss {l:.3}"));
    };
    let outcome = adversarial::train_stage(
        &built.model,
        &built.vs,
        data.train.as_ref(),
        data.val.as_ref(),
        &plan,
        &train_dir,
        &cb,
    )?;
    pb.finish_and_clear();
    // Test on the standard threat of the source data (for a standard model: clean only, and PGD at 0.3 to show it is not robust).
    let mut eval_cfg = cfg.clone();
    if standard {
        eval_cfg.threat.eps = 0.3;
        eval_cfg.threat.eval_step_size = Some(0.01);
        eval_cfg.threat.eval_steps = 40;
    }
    let test = pipeline::evaluate_test(
        &eval_cfg,
        &built.model,
        data.test.as_ref(),
        &train_dir,
        adversarial::derive_seed(&[a.seed, 99]),
    )?;
    let info = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "training": { "data": data.spec, "train_fingerprint": data.train.fingerprint(), "n_train": data.train.len(),
                      "eps": if standard { 0.0 } else { a.eps }, "pgd_steps": a.steps, "step_size": step,
                      "init": a.init.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "random".into()),
                      "init_fingerprint": init_fingerprint,
                      "epochs": a.epochs, "eps_warmup_epochs": a.eps_warmup, "base_lr": a.lr, "batch_size": a.batch_size, "seed": a.seed,
                      "best_epoch": outcome.state.best_epoch, "history": outcome.state.history },
        "threat_model": { "norm": "linf", "eps": if standard { 0.0 } else { a.eps } },
        "test": { "n": test.n, "clean_accuracy": test.clean_accuracy, "pgd_accuracy": test.pgd_accuracy,
                  "pgd": format!("PGD-{} L∞ {} step {}", eval_cfg.threat.eval_steps, eval_cfg.threat.eps, eval_cfg.threat.eval_step()),
                  "aa_accuracy": test.aa_accuracy, "aa_n": test.aa_n },
    });
    let sc = roli_models::save_classifier(&a.out, &built.vs, &built.model, info)?;
    println!(
        "{}: clean {:.2}%  PGD {:.2}%  AA {}  (n={}; backbone fingerprint {}) → {}",
        a.preset,
        100.0 * test.clean_accuracy,
        100.0 * test.pgd_accuracy,
        test.aa_accuracy.map(|v| format!("{:.2}% (n={})", 100.0 * v, test.aa_n.unwrap_or(0))).unwrap_or("-".into()),
        test.n,
        &sc.backbone_fingerprint[..16],
        a.out.display()
    );
    Ok(())
}

/// The checkpoint to warm-start from (a roli checkpoint folder of the same preset) and its fingerprint.
fn init_source(dir: &std::path::Path, preset: &str) -> anyhow::Result<(BackboneSource, String)> {
    let src = zoo::resolve(&dir.to_string_lossy(), None, roli_models::SourceLayout::Native)?;
    let BackboneSource::Own { dir } = &src else {
        bail!("--init {}: not a roli checkpoint folder (model.safetensors + model.json)", dir.display());
    };
    let sc = roli_models::own::read_sidecar(dir)?;
    if sc.descriptor.name != preset {
        bail!(
            "--init {}: holds a {} model, not {preset}; pass a checkpoint of the same preset",
            dir.display(),
            sc.descriptor.name
        );
    }
    Ok((src, sc.fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_must_be_a_checkpoint_of_the_same_preset() {
        let vit = zoo::zoo_dir().join("vit-nano-mnist-std");
        assert!(init_source(&vit, "vit_nano_patch7_28").is_ok());
        let e = init_source(&vit, "swin_nano_patch2_window7_28").unwrap_err().to_string();
        assert!(e.contains("holds a vit_nano_patch7_28 model") && e.contains("same preset"), "{e}");
        let e = init_source(&zoo::zoo_dir(), "vit_nano_patch7_28").unwrap_err().to_string();
        assert!(e.contains("unknown model") || e.contains("not a roli checkpoint"), "{e}");
    }
}
