//! `roli pretrain`: adversarial (or standard) training of a backbone from scratch for the model
//! zoo (the run: [`crate::study::pretrain`]).
use crate::study::pretrain::{self, PretrainSpec};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct PretrainArgs {
    #[command(flatten)]
    pub spec: PretrainSpec,
    /// Output folder (e.g. zoo/swin-micro-mnist-at); training state lives in OUT/train.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: PretrainArgs) -> anyhow::Result<()> {
    let _lock = crate::lock::lock_output(&a.out)?;
    let p = pretrain::pretrain(&a.spec, &a.out)?;
    let t = &p.test;
    println!(
        "{}: clean {:.2}%  PGD {:.2}%  AA {}  (n={}; backbone fingerprint {}) → {}",
        a.spec.preset,
        100.0 * t.clean_accuracy,
        100.0 * t.pgd_accuracy,
        t.aa_accuracy.map(|v| format!("{:.2}% (n={})", 100.0 * v, t.aa_n.unwrap_or(0))).unwrap_or("-".into()),
        t.n,
        &p.backbone_fingerprint[..16],
        a.out.display()
    );
    Ok(())
}
