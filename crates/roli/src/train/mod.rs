//! Adversarial training: optimisers, LR schedules, and the PGD training loop used by linear
//! probing and every finetuning method.
pub mod adversarial;
pub mod optim;
pub mod schedule;
