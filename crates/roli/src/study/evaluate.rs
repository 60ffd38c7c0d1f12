//! Robust accuracy of any classifier (zoo name, roli checkpoint, TorchScript) on any dataset
//! under any attack (`roli eval`): one radius, or a sweep over several, with per-example records
//! and a resumable state.
use crate::precision::Precision;
use crate::validate;
use anyhow::{bail, Context};
use roli_attacks::threat::{Norm, ThreatModel};
use roli_attacks::{AttackSpec, EvalOptions, EvalReport, ProgressEvent, Sweep};
use roli_data::Split;
use roli_models::HeadInit;
use std::path::{Path, PathBuf};

/// What to evaluate, resolved from the command line.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    pub model: String,
    pub data: String,
    /// The data folder's format when detection needs help (`--format`).
    pub format: Option<roli_data::Format>,
    pub split: Split,
    pub limit: Option<usize>,
    pub attack: AttackSpec,
    pub norm: Norm,
    pub eps: f64,
    /// Accept an L∞ radius above 1 (`--allow-large-eps`).
    pub allow_large_eps: bool,
    /// Several radii for a robustness curve (empty: `eps` only).
    pub eps_list: Vec<f64>,
    pub seed: u64,
    pub batch_size: usize,
    /// Output folder (`results.json`, `state.json` while running).
    pub out: PathBuf,
    /// Continue from `out/state.json` instead of starting over.
    pub resume: bool,
    /// Explicit or fused attention (ViT, Swin).
    pub attention: roli_models::AttentionImpl,
    /// Where the model and the batches live.
    pub device: tch::Device,
    /// Precision of the attacks (fp32 unless asked).
    pub precision: Precision,
}

/// The evaluation's report: one radius or a sweep.
pub enum EvalOutcome {
    Single(EvalReport),
    Sweep(Sweep),
}

/// An evaluated request and where its records are.
pub struct Evaluated {
    pub outcome: EvalOutcome,
    pub results: PathBuf,
}

/// `--norm`: the threat models roli evaluates (L1 has no FAB/Square, so no AutoAttack).
pub fn parse_norm(s: &str) -> anyhow::Result<Norm> {
    match s {
        "linf" => Ok(Norm::Linf),
        "l2" => Ok(Norm::L2),
        other => bail!("--norm {other}: use linf or l2"),
    }
}

/// `--attack`: a name from the attack table; `pgd` takes the given steps, step size and restarts.
pub fn parse_attack(name: &str, steps: usize, step_size: Option<f64>, restarts: usize) -> anyhow::Result<AttackSpec> {
    Ok(match name {
        "pgd" => AttackSpec::with_pgd(steps, step_size, restarts),
        other => other.parse().map_err(|e| {
            // The attack table's error already lists the names.
            anyhow::anyhow!("--attack {other}: {e}")
        })?,
    })
}

/// The request's numbers, checked before anything is loaded.
pub fn check_request(r: &EvalRequest) -> Result<(), validate::InputError> {
    let radius = |key: &str, e: f64| validate::radius(key, e, r.norm, r.allow_large_eps, "--allow-large-eps");
    radius("--eps", r.eps)?;
    for &e in &r.eps_list {
        radius("--eps-list", e)?;
    }
    if let AttackSpec::Single(roli_attacks::Stage::Pgd(p)) = &r.attack {
        if let roli_attacks::pgd::StepSize::Absolute(s) = p.step_size {
            validate::step_size("--step-size", s)?;
        }
        validate::at_least_one("--restarts", p.restarts)?;
    }
    validate::at_least_one("--batch-size", r.batch_size)?;
    validate::limit("--limit", r.limit)
}

/// Runs the request: loads the data and the model (with its own head), attacks, writes
/// `out/results.json`, removes the state when done.
pub fn evaluate(r: &EvalRequest, progress: &dyn Fn(&ProgressEvent)) -> anyhow::Result<Evaluated> {
    check_request(r)?;
    // Where the model comes from is cheap to settle, so an unknown one fails before the data loads.
    let src = crate::zoo::resolve(&r.model, None, roli_models::SourceLayout::Native)?;
    let spec = roli_data::resolve_as(&r.data, r.format)?;
    let ds = roli_data::load(&spec, r.split, &Default::default())?;
    let (n, clamped) = validate::clamp_limit("--limit", r.limit, ds.len(), &format!("{} {}", r.data, r.split));
    if let Some(w) = clamped {
        tracing::warn!("{w}");
    }
    if n == 0 {
        bail!("the {} split of {} is empty; choose another --split or add examples", r.split, r.data);
    }
    let examples = crate::examples::DatasetExamples::new(ds.as_ref(), n, r.device);
    let opts = crate::zoo::BuildOptions {
        num_classes: ds.num_classes(),
        head_init: HeadInit::TorchDefault,
        resize: true,
        input: ds.image_shape(),
        keep_head: true,
        drop_path: 0.0,
        trainable_script: false,
        init_seed: r.seed,
        attention: r.attention,
        device: r.device,
    };
    // A finetuned stage's checkpoint carries its PEFT layers: inject them, then check that every
    // tensor was loaded (the fingerprint over all of them).
    let stage_dir = match &src {
        crate::zoo::BackboneSource::Own { dir } if crate::export::stage_info(dir)?.is_some() => Some(dir.clone()),
        _ => None,
    };
    let injector = match &stage_dir {
        Some(dir) => crate::export::checkpoint_peft(dir)?,
        None => None,
    };
    let none = roli_models::peft::NoPeft;
    let built = crate::zoo::build(&src, &opts, injector.as_deref().unwrap_or(&none))
        .with_context(|| format!("building model '{}'", r.model))?;
    if let Some(dir) = &stage_dir {
        crate::export::verify_loaded(&built.vs, dir)?;
    }
    tracing::info!(
        "model: {} ({}); data: {} {} n={n}; attack {}",
        src.describe(),
        built.load_summary,
        r.data,
        r.split,
        r.attack
    );
    let _precision = r.precision.enter(r.device)?;
    let model = |t: &tch::Tensor| r.precision.forward(r.device, || built.model.forward_with(t, false));
    std::fs::create_dir_all(&r.out)?;
    let mut eo = EvalOptions::new(ThreatModel::new(r.norm, r.eps));
    eo.seed = r.seed;
    eo.batch_size = r.batch_size;
    eo.progress = Some(progress);
    eo.state_path = Some(fresh_state(&r.out, r.resume, &r.eps_list)?);
    eo.context =
        Some(format!("model {} (backbone {:.12}) on {}", src.describe(), built.backbone_fingerprint, spec.describe()));
    let results = r.out.join("results.json");
    let outcome = if r.eps_list.is_empty() {
        let rep = roli_attacks::evaluate_examples(&model, &examples, &r.attack, &eo)?;
        crate::artifacts::write_json(&results, &rep)?;
        EvalOutcome::Single(rep)
    } else {
        let sw = roli_attacks::sweep_examples(&model, &examples, &r.attack, &r.eps_list, &eo)?;
        crate::artifacts::write_json(&results, &sw)?;
        EvalOutcome::Sweep(sw)
    };
    let _ = std::fs::remove_file(r.out.join(crate::artifacts::STATE));
    crate::manifest::write_eval(r, ds.as_ref(), src.describe(), &built.backbone_fingerprint, &outcome)?;
    Ok(Evaluated { outcome, results })
}

/// The state file of `out` (a sweep keeps one per radius beside it). It always records progress;
/// without `resume` stale ones are discarded first.
fn fresh_state(out: &Path, resume: bool, eps_list: &[f64]) -> anyhow::Result<PathBuf> {
    let state = out.join(crate::artifacts::STATE);
    if !resume {
        let per_radius = eps_list.iter().map(|&e| roli_attacks::sweep_state_path(&state, e));
        for p in std::iter::once(state.clone()).chain(per_radius).filter(|p| p.exists()) {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_and_attacks_parse_with_named_errors() {
        assert_eq!(parse_norm("l2").unwrap(), Norm::L2);
        assert!(parse_norm("l1").unwrap_err().to_string().contains("use linf or l2"));
        let pgd = parse_attack("pgd", 40, Some(0.01), 2).unwrap();
        assert_eq!(pgd, AttackSpec::with_pgd(40, Some(0.01), 2));
        assert!(matches!(parse_attack("aa-standard", 10, None, 1).unwrap(), AttackSpec::AutoAttack(_)));
        let e = parse_attack("pgd-9", 10, None, 1).unwrap_err().to_string();
        assert!(e.contains("--attack pgd-9") && e.contains("aa-rand"), "{e}");
    }

    #[test]
    fn a_stale_state_is_discarded_unless_resuming() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(crate::artifacts::STATE);
        let radius = roli_attacks::sweep_state_path(&p, 0.1);
        std::fs::write(&p, "{}").unwrap();
        std::fs::write(&radius, "{}").unwrap();
        assert_eq!(fresh_state(d.path(), true, &[0.1]).unwrap(), p);
        assert!(p.exists() && radius.exists(), "--resume keeps them");
        fresh_state(d.path(), false, &[0.1]).unwrap();
        assert!(!p.exists() && !radius.exists(), "a new evaluation starts over");
    }
}
