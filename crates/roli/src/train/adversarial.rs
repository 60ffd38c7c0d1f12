//! The adversarial training loop shared by stage 1 (linear probing) and every stage-2 method:
//! per batch, PGD (model in eval mode) → forward on the adversarial batch with the backbone in
//! train mode only when the method says so → mean cross-entropy → update of the declared
//! trainable tensors. Validation each epoch (clean + PGD), best epoch by validation robust
//! accuracy (strict `>`, starting from 0, as in the reference), best weights restored at the end.
//!
//! Every random choice is derived from (seed, epoch, batch): the shuffle, the attack's random
//! start, dropout/drop-path (see [`crate::seed`]). With the optimiser state saved at each epoch
//! end, a run killed midway resumes to exactly the result of an uninterrupted run (CPU).
//!
//! The loop lives in [`super::stage`] (orchestration), [`super::step`] (one batch),
//! [`super::validate`], [`super::checkpoint`], [`super::audit`] and [`super::plan`]; this module
//! keeps the paths the rest of the crate uses.
pub use super::audit::Trainability;
pub use super::plan::{EpochLog, ProgressFn, StageOutcome, StagePlan, StageState};
pub use super::stage::train_stage;
pub use super::step::eps_ramp;
pub use super::validate::accuracy;
pub use crate::artifacts::{load_into, read_state, save_tensors};
pub use crate::seed::derive_seed;
