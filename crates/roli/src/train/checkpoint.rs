//! A stage folder's weights: resuming from `last.safetensors` (model + optimiser state under the
//! `__optim__/` prefix), saving the last and best weights, and restoring the best at the end.
use super::optim::Optimizer;
use super::plan::{StagePlan, StageState};
use crate::artifacts::{self, load_into, read_state, save_tensors, write_state, OPTIM_PREFIX};
use anyhow::Context;
use std::path::{Path, PathBuf};
use tch::{nn, Tensor};

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
    pub fn resume_or_start(
        &self,
        vs: &nn::VarStore,
        plan: &StagePlan,
        opt: &mut Optimizer,
    ) -> anyhow::Result<StageState> {
        let st = match read_state(&self.dir, plan)? {
            Some(st) => {
                self.resume(vs, opt, st.optimizer_steps)?;
                tracing::info!("{}: resuming after epoch {} of {}", plan.label, st.epochs_done, plan.epochs);
                st
            }
            None => StageState::fresh(plan),
        };
        if !self.best.exists() {
            save_tensors(&self.best, &model_tensors(vs))?;
        }
        Ok(st)
    }

    fn resume(&self, vs: &nn::VarStore, opt: &mut Optimizer, optimizer_steps: u64) -> anyhow::Result<()> {
        let saved = Tensor::read_safetensors(&self.last).with_context(|| {
            format!("{} is missing or corrupt; delete {} to restart", self.last.display(), self.dir.display())
        })?;
        load_into(vs, &saved, &self.last)?;
        // Saved from CPU copies; the optimiser state goes where the parameters are now.
        let device = vs.device();
        let opt_state: Vec<(String, Tensor)> = saved
            .into_iter()
            .filter_map(|(n, t)| n.strip_prefix(OPTIM_PREFIX).map(|s| (s.to_string(), t.to_device(device))))
            .collect();
        opt.load_state(optimizer_steps, opt_state).map_err(|e| anyhow::anyhow!("{}: {e}", self.last.display()))
    }

    /// Saves the current weights as the best ones.
    pub fn save_best(&self, vs: &nn::VarStore) -> anyhow::Result<()> {
        save_tensors(&self.best, &model_tensors(vs))
    }

    /// After an epoch: the weights and optimiser state, then `state.json`.
    pub fn save_epoch(&self, vs: &nn::VarStore, opt: &Optimizer, st: &StageState) -> anyhow::Result<()> {
        let mut last = model_tensors(vs);
        last.extend(opt.state_tensors().into_iter().map(|(k, t)| (format!("{OPTIM_PREFIX}{k}"), t)));
        save_tensors(&self.last, &last)?;
        write_state(&self.dir, st)
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
