//! `roli verify DIR`: re-computes a run folder's test results from its saved best weights (or,
//! with `--full`, re-trains) and diffs them with the recorded ones. Exit 0: identical; 1:
//! differences (table printed); 2: bad input (a recorded file's hash differs, no manifest, …).
use crate::device::DeviceChoice;
use crate::verify::{self, VerifyOptions};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A folder written by `roli run` or `roli demo` (with its manifest.json).
    pub dir: PathBuf,
    /// Only this stage: its folder (`linear`, `full_roli`) or label (`probe`, `full/roli`).
    #[arg(long)]
    pub stage: Option<String>,
    /// Re-train the stages into a temp folder and compare best weights and results (slow).
    #[arg(long)]
    pub full: bool,
    /// auto, cpu, cuda or cuda:N (overrides the recorded config's device).
    #[arg(long)]
    pub device: Option<DeviceChoice>,
}

pub fn run(a: VerifyArgs) -> anyhow::Result<()> {
    let v = verify::verify(&a.dir, &VerifyOptions { stage: a.stage, full: a.full, device: a.device })?;
    print!("{}", v.text);
    if !v.identical {
        let _ = std::io::stdout().flush();
        std::process::exit(1);
    }
    Ok(())
}
