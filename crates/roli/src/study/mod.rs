//! Studies built from the pipeline: robust accuracy of any classifier ([`evaluate`]),
//! learning-rate selection on validation ([`tune`]), the main job's two-backbone study with its
//! report ([`demo`]), pretraining the zoo's own backbones ([`pretrain`]), cross-device parity
//! ([`parity`]) and roli against PyTorch eager on the same work ([`bench`]). The command line only
//! parses arguments for them and prints their outcome.
pub mod bench;
pub mod demo;
pub mod evaluate;
pub mod parity;
pub mod pretrain;
pub mod seeds;
pub mod tune;
