//! The adversarial training loop shared by stage 1 (linear probing) and every stage-2 method:
//! per batch, PGD (model in eval mode) → forward on the adversarial batch with the backbone in
//! train mode only when the method says so → mean cross-entropy → update of the declared
//! trainable tensors. Validation each epoch (clean + PGD), best epoch by validation robust
//! accuracy (strict `>`, starting from 0, as in the reference), best weights restored at the end.
//!
//! Every random choice is derived from (seed, epoch, batch): the shuffle, the attack's random
//! start, dropout/drop-path. With the optimiser state saved at each epoch end, a run killed
//! midway resumes to exactly the result of an uninterrupted run (CPU).
use super::optim::{Optimizer, OptimizerKind};
use super::schedule::Schedule;
use anyhow::{bail, Context};
use roli_attacks::pgd::{Pgd, PgdConfig};
use roli_attacks::threat::ThreatModel;
use roli_attacks::Attack;
use roli_data::loader::{epoch_rng, BatchPlan};
use roli_data::Dataset;
use roli_models::Classifier;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Kind, Tensor};

/// Everything that determines a stage's training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagePlan {
    /// E.g. `probe`, `full/roli`.
    pub label: String,
    pub epochs: u32,
    /// Effective LR (already scaled by batch/256).
    pub lr: f64,
    pub optimizer: OptimizerKind,
    pub weight_decay: f64,
    pub schedule: Schedule,
    pub batch_size: usize,
    pub threat: ThreatModel,
    pub train_pgd: PgdConfig,
    pub eval_pgd: PgdConfig,
    /// Backbone in train mode during the training forward (full finetuning only).
    pub backbone_train: bool,
    /// PEFT modules in train mode while the backbone stays in eval (VPT's prompt dropout, as the
    /// reference's `train()` override does).
    pub peft_train: bool,
    pub seed: u64,
    /// Accept trainable tensors that never receive gradient (the reference's dead inits).
    pub allow_dead: bool,
    /// The sorted trainable tensor names.
    pub trainable: Vec<String>,
    /// The head's bias name (no weight decay under SGD, as in the reference).
    pub head_bias: String,
    /// Training eps grows linearly (per batch) from 0 to the full radius over this many epochs.
    /// Adversarial training from scratch at a large radius (MNIST L∞ 0.3) otherwise collapses to
    /// a constant prediction; 0 (the default, and the reference's) trains at full eps throughout.
    #[serde(default)]
    pub eps_warmup_epochs: u32,
}

/// The fraction of the training radius used at (epoch, batch): linear from 1/total to 1 over
/// `warmup_epochs`, then 1.
pub fn eps_ramp(warmup_epochs: u32, epoch: u32, batch: usize, batches_per_epoch: usize) -> f64 {
    if warmup_epochs == 0 {
        return 1.0;
    }
    let total = warmup_epochs as f64 * batches_per_epoch.max(1) as f64;
    let done = epoch as f64 * batches_per_epoch.max(1) as f64 + batch as f64 + 1.0;
    (done / total).min(1.0)
}

impl StagePlan {
    /// SHA-256 of the plan, to refuse resuming a different run.
    pub fn fingerprint(&self) -> String {
        roli_data::cache::sha256_bytes(serde_json::to_string(self).unwrap_or_default().as_bytes())
    }
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: u32,
    pub lr: f64,
    pub train_loss: f64,
    /// Accuracy on the adversarial training batches (before the update).
    pub train_adv_accuracy: f64,
    pub val_clean: f64,
    pub val_robust: f64,
    pub seconds: f64,
}

/// Trainability as measured, not as declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trainability {
    pub nominal_tensors: usize,
    pub nominal_elements: i64,
    /// Elements whose gradient was non-zero at least once in the check window.
    pub effective_elements: i64,
    /// Tensors whose gradient was zero everywhere in the check window.
    pub dead_tensors: Vec<String>,
}

/// Saved after every epoch (`state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageState {
    pub plan_fingerprint: String,
    /// Epochs completed.
    pub epochs_done: u32,
    pub optimizer_steps: u64,
    pub best_epoch: Option<u32>,
    pub best_val_robust: f64,
    pub history: Vec<EpochLog>,
    pub trainability: Option<Trainability>,
    pub finished: bool,
}

/// What a finished stage returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageOutcome {
    pub plan: StagePlan,
    pub state: StageState,
    pub best_weights: PathBuf,
}

/// Progress callback: (epoch, batch index in the stage, batches per epoch, last loss).
pub type ProgressFn<'a> = &'a dyn Fn(u32, usize, usize, f64);

const OPT_PREFIX: &str = "__optim__/";

/// splitmix64 of several words: independent seeds per (stage, epoch, batch, purpose).
pub fn derive_seed(parts: &[u64]) -> u64 {
    let mut z: u64 = 0x9E37_79B9_7F4A_7C15;
    for &p in parts {
        z = z.wrapping_add(p).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

/// Clean and PGD accuracy of `model` (eval mode) on `ds`, in batches. `pgd = None`: clean only.
pub fn accuracy(
    model: &Classifier,
    ds: &dyn Dataset,
    batch_size: usize,
    pgd: Option<&Pgd>,
    seed: u64,
) -> anyhow::Result<(f64, Option<f64>)> {
    let n = ds.len();
    if n == 0 {
        bail!("cannot evaluate on an empty dataset '{}'", ds.name());
    }
    let eval = |x: &Tensor| model.forward_with(x, false);
    let (mut clean, mut robust) = (0i64, 0i64);
    for (bi, idx) in BatchPlan::sequential(n, batch_size).batches(0).iter().enumerate() {
        let (x, y) = ds.batch(idx, None)?;
        let logits = tch::no_grad(|| eval(&x));
        clean += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
        if let Some(p) = pgd {
            let xa = p.perturb(&eval, &x, &y, derive_seed(&[seed, bi as u64]))?;
            let la = tch::no_grad(|| eval(&xa));
            robust += la.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
        }
    }
    Ok((clean as f64 / n as f64, pgd.map(|_| robust as f64 / n as f64)))
}

fn named(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Writes tensors to a safetensors file atomically (temp file + rename).
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let contiguous: Vec<(String, Tensor)> = tensors.iter().map(|(n, t)| (n.clone(), t.detach().contiguous())).collect();
    Tensor::write_safetensors(&contiguous, &tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Copies tensors (by name) into the VarStore; every saved model tensor must exist there.
pub fn load_into(vs: &nn::VarStore, tensors: &[(String, Tensor)], origin: &Path) -> anyhow::Result<()> {
    let vars = vs.variables();
    tch::no_grad(|| -> anyhow::Result<()> {
        for (n, t) in tensors.iter().filter(|(n, _)| !n.starts_with(OPT_PREFIX)) {
            let mut v = vars
                .get(n)
                .with_context(|| {
                    format!(
                        "{}: tensor '{n}' does not exist in this model (checkpoint of another model or method)",
                        origin.display()
                    )
                })?
                .shallow_clone();
            if v.size() != t.size() {
                bail!("{}: tensor '{n}' has shape {:?}, the model expects {:?}", origin.display(), t.size(), v.size());
            }
            v.copy_(t);
        }
        Ok(())
    })
}

fn write_state(dir: &Path, st: &StageState) -> anyhow::Result<()> {
    roli_data::cache::write_atomic(&dir.join("state.json"), serde_json::to_string_pretty(st)?.as_bytes())?;
    Ok(())
}

/// Reads `state.json` if `dir` holds a run of this plan; errors if it holds another one.
pub fn read_state(dir: &Path, plan: &StagePlan) -> anyhow::Result<Option<StageState>> {
    let p = dir.join("state.json");
    if !p.exists() {
        return Ok(None);
    }
    let st: StageState = serde_json::from_slice(&std::fs::read(&p)?)
        .with_context(|| format!("{} is corrupt; delete {} to restart this stage", p.display(), dir.display()))?;
    if st.plan_fingerprint != plan.fingerprint() {
        bail!("{} holds a run of a different plan (settings changed); use another --out folder or delete {} to start over", dir.display(), dir.display());
    }
    Ok(Some(st))
}

/// Trains one stage in `dir` (resuming if `dir` holds an unfinished run of the same plan).
pub fn train_stage(
    model: &Classifier,
    vs: &nn::VarStore,
    train: &dyn Dataset,
    val: &dyn Dataset,
    plan: &StagePlan,
    dir: &Path,
    progress: ProgressFn<'_>,
) -> anyhow::Result<StageOutcome> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let vars = vs.variables();
    for n in &plan.trainable {
        if !vars.contains_key(n) {
            bail!("trainable tensor '{n}' does not exist in the model");
        }
    }
    // Freeze everything, then unfreeze the declared set.
    for (n, t) in &vars {
        let _ = t.shallow_clone().set_requires_grad(plan.trainable.contains(n));
    }
    let params: Vec<(String, Tensor)> = plan.trainable.iter().map(|n| (n.clone(), vars[n].shallow_clone())).collect();
    let mut opt = Optimizer::new(
        plan.optimizer,
        params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(),
        plan.weight_decay,
        plan.lr,
        &plan.head_bias,
    );
    let best_path = dir.join("best.safetensors");
    let last_path = dir.join("last.safetensors");

    let mut st = match read_state(dir, plan)? {
        Some(st) => {
            let saved = Tensor::read_safetensors(&last_path).with_context(|| {
                format!("{} is missing or corrupt; delete {} to restart", last_path.display(), dir.display())
            })?;
            load_into(vs, &saved, &last_path)?;
            let opt_state: Vec<(String, Tensor)> =
                saved.into_iter().filter_map(|(n, t)| n.strip_prefix(OPT_PREFIX).map(|s| (s.to_string(), t))).collect();
            opt.load_state(st.optimizer_steps, opt_state)
                .map_err(|e| anyhow::anyhow!("{}: {e}", last_path.display()))?;
            tracing::info!("{}: resuming after epoch {} of {}", plan.label, st.epochs_done, plan.epochs);
            st
        }
        None => StageState {
            plan_fingerprint: plan.fingerprint(),
            epochs_done: 0,
            optimizer_steps: 0,
            best_epoch: None,
            best_val_robust: 0.0,
            history: vec![],
            trainability: None,
            finished: false,
        },
    };
    if !best_path.exists() {
        save_tensors(&best_path, &named(vs))?;
    }

    let attack = Pgd::new(plan.threat, plan.train_pgd);
    let val_pgd = Pgd::new(plan.threat, plan.eval_pgd);
    let val_attack = (plan.eval_pgd.steps > 0 && plan.threat.eps() > 0.0).then_some(&val_pgd);
    let eval_model = |x: &Tensor| model.forward_with(x, false);
    let n = train.len();
    let batches_per_epoch = BatchPlan::shuffled(n, plan.batch_size, plan.seed).num_batches();
    let mut ever_grad: HashMap<String, Tensor> = HashMap::new();

    for epoch in st.epochs_done..plan.epochs {
        let t0 = std::time::Instant::now();
        let lr = plan.lr * plan.schedule.factor(epoch, plan.epochs);
        opt.lr = lr;
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0i64, 0i64);
        let mut aug = epoch_rng(plan.seed, epoch as u64, 1);
        for (bi, idx) in BatchPlan::shuffled(n, plan.batch_size, plan.seed).batches(epoch as u64).iter().enumerate() {
            let (x, y) = train.batch(idx, Some(&mut aug))?;
            // No PGD steps (or eps 0): standard training on the clean batch.
            let xa = if plan.train_pgd.steps == 0 || plan.threat.eps() == 0.0 {
                x.shallow_clone()
            } else {
                // Every point is attacked (training), with the stream seeded here, not by the attack.
                tch::manual_seed(derive_seed(&[plan.seed, epoch as u64, bi as u64, 1]) as i64);
                let ramp = eps_ramp(plan.eps_warmup_epochs, epoch, bi, batches_per_epoch);
                if ramp < 1.0 {
                    // Step size shrinks with the radius, so the step count keeps its meaning.
                    let mut cfg = plan.train_pgd;
                    if let roli_attacks::pgd::StepSize::Absolute(s) = cfg.step_size {
                        cfg.step_size = roli_attacks::pgd::StepSize::Absolute(s * ramp);
                    }
                    Pgd::new(plan.threat.with_eps(plan.threat.eps() * ramp), cfg).perturb_all(
                        &eval_model,
                        &x,
                        &y,
                        None,
                    )?
                } else {
                    attack.perturb_all(&eval_model, &x, &y, None)?
                }
            };
            tch::manual_seed(derive_seed(&[plan.seed, epoch as u64, bi as u64, 2]) as i64);
            let logits = model.forward_peft(&xa, plan.backbone_train, plan.peft_train);
            let loss = logits.cross_entropy_for_logits(&y);
            let lv = loss.double_value(&[]);
            if !lv.is_finite() {
                let nan_path = dir.join("nan_state.safetensors");
                save_tensors(&nan_path, &named(vs))?;
                bail!(
                    "{}: the training loss became {lv} at epoch {epoch}, batch {bi} (lr {lr:.3e}); the run stopped and its state is in {} (last good epoch: {}). Lower the learning rate (base_lr) or check the data",
                    plan.label,
                    nan_path.display(),
                    last_path.display()
                );
            }
            opt.zero_grad();
            loss.backward();
            if st.trainability.is_none() {
                for (name, t) in &params {
                    let g = t.grad();
                    let nz = if g.defined() { g.ne(0.0) } else { t.zeros_like().to_kind(Kind::Bool) };
                    let e = ever_grad.entry(name.clone()).or_insert_with(|| nz.zeros_like());
                    *e = e.logical_or(&nz);
                }
            }
            opt.step();
            loss_sum += lv * idx.len() as f64;
            correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
            seen += idx.len() as i64;
            progress(epoch, bi, batches_per_epoch, lv);
        }
        // Trainability check after the first epoch that could move anything (epoch 0 may run at LR 0).
        if st.trainability.is_none() && lr > 0.0 {
            let mut tr = Trainability {
                nominal_tensors: params.len(),
                nominal_elements: 0,
                effective_elements: 0,
                dead_tensors: vec![],
            };
            for (name, t) in &params {
                tr.nominal_elements += t.numel() as i64;
                let eff = ever_grad.get(name).map(|e| e.sum(Kind::Int64).int64_value(&[])).unwrap_or(0);
                tr.effective_elements += eff;
                if eff == 0 {
                    tr.dead_tensors.push(name.clone());
                }
            }
            ever_grad.clear();
            if !tr.dead_tensors.is_empty() && !plan.allow_dead {
                write_state(dir, &st)?;
                bail!(
                    "{}: {} of {} declared trainable tensors never received a gradient (dead), e.g. {}; effective {} of {} elements. This happens with all-zero LoRA or adapter initialisations; use the default (sound) initialisation, or set the matching [faithful] flag to reproduce the reference deliberately",
                    plan.label,
                    tr.dead_tensors.len(),
                    tr.nominal_tensors,
                    tr.dead_tensors.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
                    tr.effective_elements,
                    tr.nominal_elements
                );
            }
            st.trainability = Some(tr);
        }
        let (vc, vr) = accuracy(model, val, plan.batch_size, val_attack, derive_seed(&[plan.seed, epoch as u64, 3]))?;
        // Without an attack (standard training) the best epoch is chosen by clean accuracy.
        let vr = vr.unwrap_or(vc);
        st.history.push(EpochLog {
            epoch,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_adv_accuracy: correct as f64 / seen.max(1) as f64,
            val_clean: vc,
            val_robust: vr,
            seconds: t0.elapsed().as_secs_f64(),
        });
        tracing::info!(
            "{} epoch {epoch}: lr {lr:.2e} loss {:.4} val clean {:.4} robust {:.4}",
            plan.label,
            loss_sum / seen.max(1) as f64,
            vc,
            vr
        );
        if vr > st.best_val_robust {
            st.best_val_robust = vr;
            st.best_epoch = Some(epoch);
            save_tensors(&best_path, &named(vs))?;
        }
        st.epochs_done = epoch + 1;
        st.optimizer_steps = opt.steps;
        let mut last = named(vs);
        last.extend(opt.state_tensors().into_iter().map(|(k, t)| (format!("{OPT_PREFIX}{k}"), t)));
        save_tensors(&last_path, &last)?;
        write_state(dir, &st)?;
    }
    // The reference reloads the best weights; if no epoch beat 0 it keeps the last ones.
    if st.best_epoch.is_some() {
        let best = Tensor::read_safetensors(&best_path)?;
        load_into(vs, &best, &best_path)?;
    } else {
        save_tensors(&best_path, &named(vs))?;
    }
    st.finished = true;
    write_state(dir, &st)?;
    for t in vars.values() {
        let _ = t.shallow_clone().set_requires_grad(false);
    }
    Ok(StageOutcome { plan: plan.clone(), state: st, best_weights: best_path })
}

#[cfg(test)]
mod tests {
    use super::eps_ramp;

    #[test]
    fn eps_ramp_is_linear_then_full() {
        assert_eq!(eps_ramp(0, 0, 0, 10), 1.0);
        assert!((eps_ramp(2, 0, 0, 10) - 0.05).abs() < 1e-12);
        assert!((eps_ramp(2, 0, 9, 10) - 0.5).abs() < 1e-12);
        assert!((eps_ramp(2, 1, 9, 10) - 1.0).abs() < 1e-12);
        assert_eq!(eps_ramp(2, 5, 3, 10), 1.0);
        let r: Vec<f64> = (0..20).map(|b| eps_ramp(2, b / 10, (b % 10) as usize, 10)).collect();
        assert!(r.windows(2).all(|w| w[1] > w[0]));
    }
}
