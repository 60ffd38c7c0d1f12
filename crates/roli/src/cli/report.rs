//! `roli report`: the report (table with CIs, McNemar tests, findings, Figure 1) of finished runs.
use crate::report::{self, ReportOptions};
use crate::results::Summary;
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A finished `roli run` folder (holding summary.json).
    pub run: PathBuf,
    /// The same study on a standard backbone (for finding 1).
    #[arg(long)]
    pub standard: Option<PathBuf>,
    /// Output folder (default: the run folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value = "RoLI report")]
    pub title: String,
    /// Exit 0 even when an integrity check failed (the numbers stay marked `unreliable`).
    #[arg(long)]
    pub allow_flags: bool,
}

fn read_summary(dir: &Path) -> anyhow::Result<Summary> {
    let p = dir.join(crate::artifacts::SUMMARY);
    serde_json::from_slice(
        &std::fs::read(&p)
            .with_context(|| format!("no {} — is {} a finished `roli run` folder?", p.display(), dir.display()))?,
    )
    .with_context(|| format!("{} is not a roli summary", p.display()))
}

pub fn run(a: ReportArgs) -> anyhow::Result<()> {
    let s = read_summary(&a.run)?;
    let std_summary = a.standard.as_deref().map(read_summary).transpose()?;
    let out = a.out.clone().unwrap_or_else(|| a.run.clone());
    let opts = ReportOptions {
        title: a.title.clone(),
        standard: std_summary.as_ref(),
        run_dir: Some(&a.run),
        standard_run_dir: a.standard.as_deref(),
        ..Default::default()
    };
    let paths = report::write_report(&s, &out, &opts)?;
    println!("report: {}", paths.markdown.display());
    let mut summaries = vec![("", &s)];
    summaries.extend(std_summary.as_ref().map(|st| ("standard", st)));
    crate::integrity::gate(&summaries, a.allow_flags)?;
    Ok(())
}
