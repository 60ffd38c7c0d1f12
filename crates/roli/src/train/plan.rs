//! What a stage is asked to do ([`StagePlan`]), what it has done so far ([`StageState`], saved as
//! `state.json` after every epoch), and what it returns ([`StageOutcome`]).
use super::audit::Trainability;
use super::optim::{OptimImpl, OptimizerKind};
use super::schedule::Schedule;
use crate::precision::Precision;
use roli_attacks::pgd::PgdConfig;
use roli_attacks::threat::ThreatModel;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tch::Device;

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
    /// Precision of the training forward/backward, the training attack and validation. Left out
    /// of the fingerprint when fp32, so states of earlier versions still resume.
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
    /// Where the stage runs. Not part of the fingerprint: a stage resumes on another device.
    #[serde(skip, default = "cpu")]
    pub device: Device,
    /// How the optimiser computes its update (same state either way; not in the fingerprint).
    #[serde(skip, default)]
    pub optim_impl: OptimImpl,
    /// Checkpoint every N optimiser steps inside an epoch too (`train.checkpoint_every_steps`).
    /// Not in the fingerprint: it changes when the state is saved, not what is computed.
    #[serde(skip, default)]
    pub checkpoint_every_steps: Option<u64>,
}

fn cpu() -> Device {
    Device::Cpu
}

impl StagePlan {
    /// SHA-256 of the plan, to refuse resuming a different run. The plan holds strings, numbers
    /// and lists only (no maps, whose non-string keys are JSON's one way to fail; NaN becomes
    /// `null`), so its JSON always exists: a failure here is a bug, not an input to recover from.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_string(self).expect("a StagePlan always serialises to JSON");
        roli_data::cache::sha256_bytes(json.as_bytes())
    }

    /// The LR of `epoch` under the plan's schedule.
    pub fn lr_at(&self, epoch: u32) -> f64 {
        self.lr * self.schedule.factor(epoch, self.epochs)
    }

    /// Whether training batches are attacked (PGD steps and a non-zero radius); otherwise the
    /// stage is standard training on clean batches.
    pub fn attacks_training(&self) -> bool {
        !(self.train_pgd.steps == 0 || self.threat.eps() == 0.0)
    }

    /// Whether a mid-epoch checkpoint is due after optimiser step `steps` (counted over the stage).
    pub fn checkpoint_due(&self, steps: u64) -> bool {
        self.checkpoint_every_steps.is_some_and(|n| n > 0 && steps % n == 0)
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
    /// Set when the state was saved inside an epoch (`train.checkpoint_every_steps`): the epoch
    /// `epochs_done` is under way and this says where. Absent from end-of-epoch states, so
    /// their files read and write as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid_epoch: Option<MidEpoch>,
}

/// Where an interrupted epoch stands. With the batch order and every attack and dropout seed
/// derived from (seed, epoch, batch), this, the augmentation RNG's position and the epoch's
/// running sums (saved as tensors next to the weights) are all a resumed epoch needs to go on
/// exactly as the uninterrupted one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MidEpoch {
    /// Batches of the epoch already trained on.
    pub batches_done: usize,
    /// The augmentation RNG's word position (`ChaCha8Rng::get_word_pos`) after those batches.
    pub augment_word_pos: u128,
}

impl StageState {
    /// The state of a stage that has not run an epoch yet.
    pub fn fresh(plan: &StagePlan) -> Self {
        StageState {
            plan_fingerprint: plan.fingerprint(),
            epochs_done: 0,
            optimizer_steps: 0,
            best_epoch: None,
            best_val_robust: 0.0,
            history: vec![],
            trainability: None,
            finished: false,
            mid_epoch: None,
        }
    }

    /// Records a validation result; true if it is the new best (strict `>`, from 0, as the
    /// reference), in which case the caller saves the weights as the best ones.
    pub fn record_validation(&mut self, epoch: u32, val_robust: f64) -> bool {
        if val_robust > self.best_val_robust {
            self.best_val_robust = val_robust;
            self.best_epoch = Some(epoch);
            return true;
        }
        false
    }
}

/// What a finished stage returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageOutcome {
    pub plan: StagePlan,
    pub state: StageState,
    pub best_weights: PathBuf,
}

/// Progress callback: (epoch, batch index in the epoch, batches per epoch, the batch's loss when
/// the loop read it — every batch on the CPU, every few on a GPU).
pub type ProgressFn<'a> = &'a dyn Fn(u32, usize, usize, Option<f64>);

/// A small plan for unit tests: L∞ 0.1, PGD-3 at step 0.025 (absolute) for training.
#[cfg(test)]
pub(crate) fn test_plan() -> StagePlan {
    use roli_attacks::pgd::StepSize;
    StagePlan {
        label: "test".into(),
        epochs: 4,
        lr: 0.1,
        optimizer: OptimizerKind::REFERENCE_SGD,
        weight_decay: 0.0,
        schedule: Schedule::WarmupCosine { warmup_epochs: 1 },
        batch_size: 8,
        threat: ThreatModel::Linf { eps: 0.1 },
        train_pgd: PgdConfig { steps: 3, step_size: StepSize::Absolute(0.025), ..PgdConfig::ROLI_EVAL },
        eval_pgd: PgdConfig::ROLI_EVAL,
        backbone_train: false,
        peft_train: false,
        seed: 1,
        allow_dead: false,
        trainable: vec![],
        head_bias: String::new(),
        eps_warmup_epochs: 0,
        precision: Precision::Fp32,
        device: Device::Cpu,
        optim_impl: OptimImpl::Reference,
        checkpoint_every_steps: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr_follows_the_schedule_and_attacks_need_steps_and_radius() {
        let plan = test_plan();
        assert_eq!(plan.lr_at(0), 0.0);
        assert_eq!(plan.lr_at(1), 0.1 * plan.schedule.factor(1, 4));
        assert!(plan.attacks_training());
        let no_steps = StagePlan { train_pgd: PgdConfig { steps: 0, ..plan.train_pgd }, ..plan.clone() };
        assert!(!no_steps.attacks_training());
        assert!(!StagePlan { threat: ThreatModel::Linf { eps: 0.0 }, ..plan.clone() }.attacks_training());
        assert_eq!(StageState::fresh(&plan).plan_fingerprint, plan.fingerprint());
    }

    #[test]
    fn the_device_never_and_fp32_precision_does_not_enter_the_fingerprint() {
        let plan = test_plan();
        let json = serde_json::to_string(&plan).unwrap();
        assert!(!json.contains("precision") && !json.contains("device"), "{json}");
        assert_eq!(StagePlan { device: Device::Cuda(0), ..plan.clone() }.fingerprint(), plan.fingerprint());
        let every = StagePlan { checkpoint_every_steps: Some(3), ..plan.clone() };
        assert_eq!(every.fingerprint(), plan.fingerprint(), "the checkpoint cadence changes no result");
        assert!(every.checkpoint_due(6) && !every.checkpoint_due(7) && !plan.checkpoint_due(6));
        assert_ne!(StagePlan { precision: Precision::Bf16, ..plan.clone() }.fingerprint(), plan.fingerprint());
    }

    fn state() -> StageState {
        StageState::fresh(&test_plan())
    }

    #[test]
    fn end_of_epoch_states_read_and_write_as_before_and_mid_epoch_ones_round_trip() {
        let st = state();
        let json = serde_json::to_string(&st).unwrap();
        assert!(!json.contains("mid_epoch"), "{json}");
        assert_eq!(serde_json::from_str::<StageState>(&json).unwrap(), st);
        let at = MidEpoch { batches_done: 3, augment_word_pos: u128::from(u64::MAX) + 7 };
        let mid = StageState { mid_epoch: Some(at), ..st };
        assert_eq!(serde_json::from_str::<StageState>(&serde_json::to_string(&mid).unwrap()).unwrap(), mid);
    }

    #[test]
    fn best_epoch_is_strictly_better_from_zero() {
        let mut st = state();
        assert!(!st.record_validation(0, 0.0));
        assert_eq!(st.best_epoch, None);
        assert!(st.record_validation(1, 0.25));
        assert!(!st.record_validation(2, 0.25));
        assert!(st.record_validation(3, 0.5));
        assert!(!st.record_validation(4, 0.1));
        assert_eq!((st.best_epoch, st.best_val_robust), (Some(3), 0.5));
    }
}
