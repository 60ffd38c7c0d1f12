//! Adversarial training: optimisers, LR schedules, and (with the models and attacks) the
//! PGD training loop used by linear probing and every finetuning method.
pub mod optim;
pub mod schedule;
