//! A stage folder's weights: resuming from `last.safetensors`, saving the last and best weights,
//! and restoring the best at the end.
//!
//! `last.safetensors` holds everything a resumed stage continues from, in one atomic file: the
//! model, the optimiser state (`__optim__/`), a copy of the stage's state (`__state__`), and,
//! while they are running, the trainability audit's masks (`__audit__/`) and an interrupted
//! epoch's sums (`__meter__/`). `state.json` is written after it for readers; a kill between
//! the two leaves `state.json` one checkpoint behind, and the copy inside `last.safetensors`,
//! which always matches the weights, is the one a resume trusts.
use super::audit::GradientAudit;
use super::meter::EpochMeter;
use super::optim::Optimizer;
use super::plan::{StagePlan, StageState};
use crate::artifacts::{self, load_into, parse_state, read_state, save_tensors, write_state, OPTIM_PREFIX};
use anyhow::Context;
use std::path::{Path, PathBuf};
use tch::{nn, Tensor};

/// The stage's state inside `last.safetensors` (JSON bytes as a uint8 tensor).
const STATE_TENSOR: &str = "__state__";
/// Prefix of the trainability audit's masks while the audit window is open.
const AUDIT_PREFIX: &str = "__audit__/";
/// Prefix of an interrupted epoch's running sums (mid-epoch checkpoints).
const METER_PREFIX: &str = "__meter__/";

/// What a stage continues from: its state, the audit's masks so far, and (inside an epoch,
/// with `state.mid_epoch`) the epoch's running sums.
pub struct Resumed {
    pub state: StageState,
    pub audit: GradientAudit,
    pub meter: Option<EpochMeter>,
}

/// What [`Checkpoint::save`] writes besides the weights and the optimiser state.
pub struct Progress<'a> {
    pub state: &'a StageState,
    /// The audit, while its window is open.
    pub audit: Option<&'a GradientAudit>,
    /// The epoch's sums, inside an epoch.
    pub meter: Option<&'a EpochMeter>,
}

/// The model's tensors, sorted by name.
pub fn model_tensors(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The files of one stage folder.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub best: PathBuf,
    pub last: PathBuf,
}

impl Checkpoint {
    pub fn new(dir: &Path) -> Self {
        Checkpoint { dir: dir.to_path_buf(), best: dir.join(artifacts::BEST), last: dir.join(artifacts::LAST) }
    }

    /// Resumes the run in the folder (weights into `vs`, state into `opt`) or starts a fresh one;
    /// either way makes sure a best-weights file exists.
    pub fn resume_or_start(&self, vs: &nn::VarStore, plan: &StagePlan, opt: &mut Optimizer) -> anyhow::Result<Resumed> {
        let resumed = match read_state(&self.dir, plan)? {
            Some(st) => {
                let r = self.resume(vs, plan, opt, st)?;
                let st = &r.state;
                match st.mid_epoch {
                    Some(m) => tracing::info!(
                        "{}: resuming epoch {} after batch {} (of {} epochs)",
                        plan.label,
                        st.epochs_done,
                        m.batches_done,
                        plan.epochs
                    ),
                    None => {
                        tracing::info!("{}: resuming after epoch {} of {}", plan.label, st.epochs_done, plan.epochs)
                    }
                }
                r
            }
            None => Resumed { state: StageState::fresh(plan), audit: GradientAudit::default(), meter: None },
        };
        if !self.best.exists() {
            save_tensors(&self.best, &model_tensors(vs))?;
        }
        Ok(resumed)
    }

    fn resume(
        &self,
        vs: &nn::VarStore,
        plan: &StagePlan,
        opt: &mut Optimizer,
        from_json: StageState,
    ) -> anyhow::Result<Resumed> {
        let saved = Tensor::read_safetensors(&self.last).with_context(|| {
            format!("{} is missing or corrupt; delete {} to restart", self.last.display(), self.dir.display())
        })?;
        // The state saved with the weights (files written before it existed: `state.json`).
        let state = match saved.iter().find(|(n, _)| n == STATE_TENSOR) {
            Some((_, t)) => {
                let bytes =
                    Vec::<u8>::try_from(t).with_context(|| format!("{}: unreadable state", self.last.display()))?;
                parse_state(&bytes, &self.last, plan)?
            }
            None => from_json,
        };
        load_into(vs, &saved, &self.last)?;
        // Saved from CPU copies; the optimiser state goes where the parameters are now.
        let device = vs.device();
        let prefixed = |prefix: &str| -> Vec<(String, Tensor)> {
            saved
                .iter()
                .filter_map(|(n, t)| n.strip_prefix(prefix).map(|s| (s.to_string(), t.to_device(device))))
                .collect()
        };
        opt.load_state(state.optimizer_steps, prefixed(OPTIM_PREFIX))
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.last.display()))?;
        let audit = GradientAudit::from_state(device, prefixed(AUDIT_PREFIX));
        let meter = match state.mid_epoch {
            Some(_) => Some(
                EpochMeter::from_state(plan.device, &prefixed(METER_PREFIX))
                    .with_context(|| format!("{}: an interrupted epoch without its sums", self.last.display()))?,
            ),
            None => None,
        };
        Ok(Resumed { state, audit, meter })
    }

    /// Saves the current weights as the best ones.
    pub fn save_best(&self, vs: &nn::VarStore) -> anyhow::Result<()> {
        save_tensors(&self.best, &model_tensors(vs))
    }

    /// A checkpoint (after an epoch, or inside one): `last.safetensors` with the weights, the
    /// optimiser state and `p`, then `state.json`.
    pub fn save(&self, vs: &nn::VarStore, opt: &Optimizer, p: Progress<'_>) -> anyhow::Result<()> {
        fn prefixed(prefix: &'static str, v: Vec<(String, Tensor)>) -> impl Iterator<Item = (String, Tensor)> {
            v.into_iter().map(move |(k, t)| (format!("{prefix}{k}"), t))
        }
        let mut last = model_tensors(vs);
        last.extend(prefixed(OPTIM_PREFIX, opt.state_tensors()));
        last.extend(p.audit.into_iter().flat_map(|a| prefixed(AUDIT_PREFIX, a.state_tensors())));
        last.extend(p.meter.into_iter().flat_map(|m| prefixed(METER_PREFIX, m.state_tensors())));
        last.push((STATE_TENSOR.into(), Tensor::from_slice(serde_json::to_string(p.state)?.as_bytes())));
        save_tensors(&self.last, &last)?;
        write_state(&self.dir, p.state)
    }

    /// Dumps the current weights after a non-finite loss; returns where.
    pub fn save_nan_state(&self, vs: &nn::VarStore) -> anyhow::Result<PathBuf> {
        let nan_path = self.dir.join(artifacts::NAN_STATE);
        save_tensors(&nan_path, &model_tensors(vs))?;
        Ok(nan_path)
    }

    /// Ends the stage: the best weights back into `vs` (the reference reloads them; if no epoch
    /// beat 0 it keeps the last ones, which become the best), and the final `state.json`.
    pub fn finish(&self, vs: &nn::VarStore, st: &mut StageState) -> anyhow::Result<()> {
        if st.best_epoch.is_some() {
            let best = Tensor::read_safetensors(&self.best)?;
            load_into(vs, &best, &self.best)?;
        } else {
            self.save_best(vs)?;
        }
        st.finished = true;
        write_state(&self.dir, st)
    }
}
