//! The report of a finished run: `report.md` (accuracies with Wilson intervals, RoLI − RanLI
//! deltas with exact McNemar tests, findings judged from the numbers), `results.json` (every
//! per-example record plus the same aggregates as data) and the figures (`figure1.{png,svg}`,
//! the paper's clean-vs-PGD scatter, and `eps_curve.{png,svg}` when a curve is given).
//!
//! A study run over several seeds is reported pooled ([`write_study_report`]): means over the
//! seeds with t-intervals, and every paired comparison by the exact sign-flip test of [`pooled`],
//! which pools the seeds per test example (for one seed it is the McNemar test).
//!
//! Modules: [`stats`] (pure statistics of one seed), [`pooled`] (pure statistics over seeds),
//! `records` (reading the per-example files, grouped by (method, init) over seeds), `compare`
//! (intervals, paired comparisons, findings), `markdown` (the page), `plots` (the figures and
//! the run-time font lookup).
mod compare;
mod labels;
mod markdown;
mod plots;
pub mod pooled;
mod records;
pub mod stats;
#[cfg(test)]
mod tests;

pub use compare::{run_name, Comparison, Estimate, Finding, Level, Metric, Row, Verdict};
pub use plots::{font, font_path, AaPoint};
pub use records::{ExampleRow, SeedEntry, Source, StudyRuns};

use crate::config::{Init, StageKind};
use crate::results::Summary;
use anyhow::Context;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What can go wrong while writing a report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// A result's per-example file (`TestResult::examples_path`) is missing or not the
    /// `{"pgd": …, "autoattack": …}` document the pipeline writes.
    #[error("per-example records {path}: {detail} (re-run the test evaluation, or pass ReportOptions::run_dir when the run folder was moved)")]
    Examples { path: PathBuf, detail: String },
    /// plotters failed to draw or encode a figure.
    #[error("cannot draw {path}: {detail}")]
    Plot { path: PathBuf, detail: String },
    /// Reading or writing a report file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The confidence level is not a probability.
    #[error("ReportOptions::confidence = {0} must lie strictly between 0 and 1 (e.g. 0.95)")]
    Confidence(f64),
}

/// A labelled robustness curve: (eps, robust accuracy) points.
pub type EpsCurve = (String, Vec<(f64, f64)>);

/// How to write the report.
pub struct ReportOptions<'a> {
    /// Heading of report.md and caption of Figure 1.
    pub title: String,
    /// The same study on a standard (non-robust) backbone, for finding 1 and the hollow markers
    /// of Figure 1.
    pub standard: Option<&'a Summary>,
    /// Robust accuracy vs eps: `(label, [(eps, accuracy in [0, 1])])`; empty: no eps plot.
    pub eps_curve: &'a [EpsCurve],
    /// AutoAttack accuracies drawn on the eps plot (labels as the curves').
    pub eps_curve_aa: &'a [AaPoint],
    /// The main run's output folder: resolves per-example files when the folder was moved or the
    /// recorded paths are relative to another working directory.
    pub run_dir: Option<&'a Path>,
    /// The same for the standard run.
    pub standard_run_dir: Option<&'a Path>,
    /// Confidence of the intervals; the tests use α = 1 − confidence.
    pub confidence: f64,
}

impl Default for ReportOptions<'_> {
    fn default() -> Self {
        ReportOptions {
            title: "RoLI report".into(),
            standard: None,
            eps_curve: &[],
            eps_curve_aa: &[],
            run_dir: None,
            standard_run_dir: None,
            confidence: 0.95,
        }
    }
}

/// The files written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportPaths {
    pub markdown: PathBuf,
    pub results_json: PathBuf,
    /// `(png, svg)`; None when drawing failed (report.md says why).
    pub figure1: Option<(PathBuf, PathBuf)>,
    /// `(png, svg)`; None without eps-curve data or when drawing failed.
    pub eps_curve: Option<(PathBuf, PathBuf)>,
    /// The font used for figure text; None: the figures have no text.
    pub font: Option<PathBuf>,
}

#[derive(Serialize)]
struct ResultsJson<'a> {
    title: &'a str,
    confidence: f64,
    alpha: f64,
    rows: Vec<(Source, &'a Row)>,
    roli_minus_ranli: &'a [(StageKind, Vec<Comparison>)],
    findings: &'a [Finding],
    records: Vec<ExampleRow>,
}

/// RoLI vs RanLI on every metric, per method with both runs.
fn deltas(loaded: &[records::Loaded<'_>], level: Level) -> Vec<(StageKind, Vec<Comparison>)> {
    let mut out: Vec<(StageKind, Vec<Comparison>)> = Vec::new();
    for l in loaded.iter().filter(|l| l.result.method != StageKind::Probe && l.result.init == Init::Roli) {
        if out.iter().any(|(m, _)| *m == l.result.method) {
            continue;
        }
        if let Some(ranli) = loaded.iter().find(|r| r.result.method == l.result.method && r.result.init == Init::Ranli)
        {
            let cs = Metric::ALL.iter().filter_map(|&m| compare::compare(l, ranli, m, level)).collect();
            out.push((l.result.method, cs));
        }
    }
    out
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::artifacts::write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes `report.md`, `results.json` and the figures into `out_dir` (created if needed).
///
/// Unreadable per-example files do not stop the report: those runs fall back to the rates in
/// their `result.json` (no paired test) and report.md lists the problem.
pub fn write_report(summary: &Summary, out_dir: &Path, opts: &ReportOptions<'_>) -> anyhow::Result<ReportPaths> {
    let standard: Option<Vec<_>> = opts.standard.map(|s| vec![(None, s, opts.standard_run_dir)]);
    write_study_report(&[(None, summary, opts.run_dir)], standard.as_deref(), out_dir, opts)
}

/// [`write_report`] of studies given by seed: a multi-seed study pools its seeds (mean ± t-interval
/// over seeds, the paired sign-flip test pooled per example); `opts.standard` and the run folders
/// of `opts` are not used (the runs carry their folders).
pub fn write_study_report(
    main_runs: &StudyRuns<'_>,
    standard_runs: Option<&StudyRuns<'_>>,
    out_dir: &Path,
    opts: &ReportOptions<'_>,
) -> anyhow::Result<ReportPaths> {
    if !(opts.confidence > 0.0 && opts.confidence < 1.0) {
        return Err(ReportError::Confidence(opts.confidence).into());
    }
    let level = Level::new(opts.confidence);
    let alpha = level.alpha;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating report folder {}", out_dir.display()))?;
    let summary = main_runs.first().map(|r| r.1).context("a report needs at least one study")?;

    let main = records::load_study(main_runs);
    let standard = standard_runs.map(records::load_study);
    let rows: Vec<(Row, &records::Loaded<'_>)> = main.iter().map(|l| (Row::of(l, level), l)).collect();
    let standard_rows: Vec<Row> = standard.iter().flatten().map(|l| Row::of(l, level)).collect();
    let deltas = deltas(&main, level);
    let findings = compare::findings(&main, standard.as_deref(), level);
    let seeds = main_runs.len();

    let mut notes = Vec::new();
    for (tag, ls) in std::iter::once(("", &main)).chain(standard.iter().map(|s| ("standard ", s))) {
        for l in ls.iter() {
            for s in &l.seeds {
                if let Some(p) = &s.problem {
                    let seed = s.seed.filter(|_| l.seeds.len() > 1).map(|x| format!(" (seed {x})")).unwrap_or_default();
                    notes.push(format!("{tag}{}{seed}: {p}", compare::run_name(l.result.method, l.result.init)));
                }
            }
        }
    }

    // Figures.
    let text = plots::font();
    if text.is_none() {
        notes.push("figures drawn without text: no TrueType font found (set ROLI_FONT=/path/to/font.ttf or install fonts-dejavu-core)".into());
    }
    let mut points: Vec<plots::ScatterPoint> =
        rows.iter().map(|(r, _)| plots::ScatterPoint::of(r, Source::Main)).collect();
    points.extend(standard_rows.iter().map(|r| plots::ScatterPoint::of(r, Source::Standard)));
    let mut figures = Vec::new();
    let figure1 = match plots::figure1(out_dir, &opts.title, &points, text) {
        Ok(p) => {
            let whiskers = if seeds > 1 {
                format!("means over {seeds} seeds, whiskers: t-intervals over the seeds")
            } else {
                "whiskers: Wilson intervals".to_string()
            };
            figures.push((format!("Figure 1: clean vs PGD robust accuracy ({whiskers}; arrows go from RanLI to RoLI per method; SVG: figure1.svg)"), "figure1.png".to_string()));
            Some(p)
        }
        Err(e) => {
            tracing::warn!("{e}");
            notes.push(format!("Figure 1 not written: {e}"));
            None
        }
    };
    let eps_curve = if opts.eps_curve.is_empty() {
        None
    } else {
        match plots::eps_curve(
            out_dir,
            &format!("{}: robust accuracy vs eps", opts.title),
            opts.eps_curve,
            opts.eps_curve_aa,
            text,
        ) {
            Ok(p) => {
                figures.push(("Robust accuracy vs eps: lines PGD on the test subset, crosses AutoAttack on its subset (SVG: eps_curve.svg)".to_string(), "eps_curve.png".to_string()));
                Some(p)
            }
            Err(e) => {
                tracing::warn!("{e}");
                notes.push(format!("eps curve not written: {e}"));
                None
            }
        }
    };

    // results.json
    let mut all_records = records::rows(&main, Source::Main);
    if let Some(s) = &standard {
        all_records.extend(records::rows(s, Source::Standard));
    }
    let doc = ResultsJson {
        title: &opts.title,
        confidence: opts.confidence,
        alpha,
        rows: rows
            .iter()
            .map(|(r, _)| (Source::Main, r))
            .chain(standard_rows.iter().map(|r| (Source::Standard, r)))
            .collect(),
        roli_minus_ranli: &deltas,
        findings: &findings,
        records: all_records,
    };
    let results_json = out_dir.join("results.json");
    write(&results_json, serde_json::to_string_pretty(&doc)?.as_bytes())?;

    // report.md
    let label = |s: &Option<u64>| match s {
        Some(x) if seeds > 1 => format!("seed {x} "),
        _ => String::new(),
    };
    let main_summaries: Vec<(String, &Summary)> = main_runs.iter().map(|r| (label(&r.0), r.1)).collect();
    let standard_summaries: Vec<(String, &Summary)> =
        standard_runs.iter().flat_map(|rs| rs.iter()).map(|r| (label(&r.0), r.1)).collect();
    let page = markdown::Page {
        title: &opts.title,
        summary,
        runs: &main_summaries,
        standard: standard_runs.and_then(|r| r.first()).map(|r| r.1),
        standard_runs: &standard_summaries,
        seeds: main_runs.iter().filter_map(|r| r.0).collect(),
        confidence: opts.confidence,
        alpha,
        rows: &rows,
        standard_rows: &standard_rows,
        deltas: &deltas,
        findings: &findings,
        figures: &figures,
        notes: &notes,
    };
    let markdown_path = out_dir.join("report.md");
    write(&markdown_path, markdown::render(&page).as_bytes())?;

    Ok(ReportPaths {
        markdown: markdown_path,
        results_json,
        figure1,
        eps_curve,
        font: plots::font_path().map(Path::to_path_buf),
    })
}
