//! `roli report`: the report (table with CIs, McNemar tests, findings, Figure 1) of finished runs.
use crate::report::{self, ReportOptions};
use crate::results::Summary;
use crate::study::seeds::Outcome;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A finished `roli run` folder (holding summary.json); a multi-seed folder is pooled over
    /// its seeds.
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
    match crate::study::seeds::read_any(dir)? {
        Outcome::One(s) => Ok(s),
        Outcome::Seeds(_) => anyhow::bail!(
            "{} is a multi-seed folder; give one seed's folder ({}/seed-<s>) here",
            dir.display(),
            dir.display()
        ),
    }
}

/// A study's runs as the report takes them: one summary, or one per seed (a multi-seed folder).
fn study_runs<'a>(o: &'a Outcome, dir: &'a Path, seed_dirs: &'a [PathBuf]) -> Vec<report::SeedEntry<'a>> {
    match o {
        Outcome::One(s) => vec![(None, s, Some(dir))],
        Outcome::Seeds(p) => {
            p.seeds.iter().zip(seed_dirs).map(|(r, d)| (Some(r.seed), &r.summary, Some(d.as_path()))).collect()
        }
    }
}

fn seed_dirs(o: &Outcome, dir: &Path) -> Vec<PathBuf> {
    match o {
        Outcome::One(_) => vec![],
        Outcome::Seeds(p) => p.seeds.iter().map(|r| dir.join(&r.dir)).collect(),
    }
}

pub fn run(a: ReportArgs) -> anyhow::Result<()> {
    let main = crate::study::seeds::read_any(&a.run)?;
    let std_summary = a.standard.as_deref().map(read_summary).transpose()?;
    let out = a.out.clone().unwrap_or_else(|| a.run.clone());
    let opts = ReportOptions { title: a.title.clone(), ..Default::default() };
    let dirs = seed_dirs(&main, &a.run);
    let runs = study_runs(&main, &a.run, &dirs);
    let standard: Option<Vec<report::SeedEntry>> = std_summary.as_ref().map(|s| vec![(None, s, a.standard.as_deref())]);
    let paths = report::write_study_report(&runs, standard.as_deref(), &out, &opts)?;
    println!("report: {}", paths.markdown.display());
    let labels: Vec<String> = main.summaries().iter().map(|(l, _)| l.clone()).collect();
    let mut summaries: Vec<(&str, &Summary)> =
        labels.iter().map(String::as_str).zip(main.summaries().into_iter().map(|(_, s)| s)).collect();
    summaries.extend(std_summary.as_ref().map(|st| ("standard", st)));
    crate::integrity::gate(&summaries, a.allow_flags)?;
    Ok(())
}
