//! Studies built from the pipeline: robust accuracy of any classifier ([`evaluate`]), learning-rate selection on validation ([`tune`]), the main
//! job's two-backbone study with its report ([`demo`]), and pretraining the zoo's own backbones
//! ([`pretrain`]). The command line only parses arguments for them and prints their outcome.
pub mod bench;
pub mod demo;
pub mod evaluate;
pub mod pretrain;
pub mod tune;
