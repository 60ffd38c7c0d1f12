//! Adversarial training: optimisers, LR schedules, and the PGD training loop used by linear
//! probing and every finetuning method.
//!
//! Top-down: [`stage`] runs a stage's epochs; [`step`] trains one batch; [`validate`] measures
//! clean/PGD accuracy; [`checkpoint`] resumes and saves; [`audit`] checks that the declared
//! trainable tensors do receive gradient; [`meter`] keeps an epoch's sums on the device;
//! [`metrics_log`] writes the curve as `metrics.jsonl`;
//! [`plan`] holds the plan and state types.
//! [`adversarial`] re-exports the loop's public items under their historical paths.
pub mod adversarial;
pub mod audit;
pub mod checkpoint;
pub mod meter;
pub mod metrics_log;
pub mod optim;
pub mod plan;
pub mod schedule;
pub mod stage;
pub mod step;
pub mod validate;
