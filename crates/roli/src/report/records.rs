//! Per-example test records of a finished run, gathered from each result's
//! `test_examples.json` (`{"pgd": EvalReport, "autoattack": EvalReport | null}`).
//!
//! Only the fields the statistics need are read (`index`, `label`, `clean_correct`, `robust`), so
//! the report keeps working when the evaluation report grows new fields.
use super::ReportError;
use crate::config::{Init, StageKind};
use crate::results::{MethodResult, Summary};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which summary a record comes from: the main (robust) run or the standard-pretraining one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Main,
    Standard,
}

/// One test example of one (method, init): a row of `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleRow {
    pub source: Source,
    /// The seed of a multi-seed study; None for a one-study report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    pub method: StageKind,
    pub init: Init,
    /// Position in the test split.
    pub index: usize,
    pub label: i64,
    pub clean_correct: bool,
    /// Correct under PGD (false when clean-wrong).
    pub pgd_robust: bool,
    /// Correct under AutoAttack; None when AutoAttack did not run on this example.
    pub aa_robust: Option<bool>,
}

#[derive(Deserialize)]
struct ExamplesDoc {
    pgd: ReportLite,
    #[serde(default)]
    autoattack: Option<ReportLite>,
}

#[derive(Deserialize)]
struct ReportLite {
    examples: Vec<ExampleLite>,
}

#[derive(Deserialize)]
struct ExampleLite {
    index: usize,
    label: i64,
    clean_correct: bool,
    robust: bool,
}

/// The records of one (method, init), keyed by example index.
#[derive(Debug, Clone, Default)]
pub struct RunRecords {
    /// index → (label, clean correct, PGD robust).
    pub pgd: BTreeMap<usize, (i64, bool, bool)>,
    /// index → AutoAttack robust (only the examples AutoAttack ran on).
    pub aa: BTreeMap<usize, bool>,
}

impl RunRecords {
    /// Reads one `test_examples.json`.
    pub fn read(path: &Path) -> Result<Self, ReportError> {
        let bytes = std::fs::read(path)
            .map_err(|e| ReportError::Examples { path: path.to_path_buf(), detail: e.to_string() })?;
        let doc: ExamplesDoc = serde_json::from_slice(&bytes).map_err(|e| ReportError::Examples {
            path: path.to_path_buf(),
            detail: format!("not a {{\"pgd\": report, \"autoattack\": report|null}} document: {e}"),
        })?;
        let mut r = RunRecords::default();
        for e in doc.pgd.examples {
            r.pgd.insert(e.index, (e.label, e.clean_correct, e.robust));
        }
        for e in doc.autoattack.into_iter().flat_map(|a| a.examples) {
            r.aa.insert(e.index, e.robust);
        }
        Ok(r)
    }

    /// Clean-correct flags by index.
    pub fn clean(&self) -> BTreeMap<usize, bool> {
        self.pgd.iter().map(|(&i, &(_, c, _))| (i, c)).collect()
    }

    /// PGD-robust flags by index.
    pub fn pgd_robust(&self) -> BTreeMap<usize, bool> {
        self.pgd.iter().map(|(&i, &(_, _, r))| (i, r)).collect()
    }

    fn rows(
        &self,
        source: Source,
        seed: Option<u64>,
        method: StageKind,
        init: Init,
    ) -> impl Iterator<Item = ExampleRow> + '_ {
        self.pgd.iter().map(move |(&index, &(label, clean_correct, pgd_robust))| ExampleRow {
            source,
            seed,
            method,
            init,
            index,
            label,
            clean_correct,
            pgd_robust,
            aa_robust: self.aa.get(&index).copied(),
        })
    }
}

/// One seed's result of a (method, init) with its records (None when they could not be read;
/// `problem` says why).
#[derive(Debug, Clone)]
pub struct SeedLoaded<'a> {
    /// The seed of a multi-seed study; None for a one-study report.
    pub seed: Option<u64>,
    pub result: &'a MethodResult,
    pub records: Option<RunRecords>,
    pub problem: Option<String>,
}

/// A (method, init) of a study: one entry per seed that trained it (one for a one-study report).
#[derive(Debug, Clone)]
pub struct Loaded<'a> {
    /// The first seed's result (method, init, optimiser, LR, epochs).
    pub result: &'a MethodResult,
    pub seeds: Vec<SeedLoaded<'a>>,
}

impl<'a> Loaded<'a> {
    /// The entry of `seed`.
    pub fn seed(&self, seed: Option<u64>) -> Option<&SeedLoaded<'a>> {
        self.seeds.iter().find(|s| s.seed == seed)
    }
}

/// A study to report on: its summaries by seed (`None` for a one-study report) and the folders
/// their relative paths are resolved against.
pub type StudyRuns<'a> = [SeedEntry<'a>];

/// One seed of a study: `(seed, summary, run folder)`.
pub type SeedEntry<'a> = (Option<u64>, &'a Summary, Option<&'a Path>);

fn load_one<'a>(seed: Option<u64>, result: &'a MethodResult, run_dir: Option<&Path>) -> SeedLoaded<'a> {
    match RunRecords::read(&locate(result, run_dir)) {
        Ok(r) => {
            let problem = consistency(result, &r);
            SeedLoaded { seed, result, records: Some(r), problem }
        }
        Err(e) => SeedLoaded { seed, result, records: None, problem: Some(e.to_string()) },
    }
}

/// Loads the records of every (method, init) of a study over its seeds, in the order the
/// (method, init)s first appear; unreadable files become a `problem`, not an error, so a report
/// can still be written from the accuracies alone.
pub fn load_study<'a>(runs: &StudyRuns<'a>) -> Vec<Loaded<'a>> {
    let mut out: Vec<Loaded<'a>> = Vec::new();
    for &(seed, summary, dir) in runs {
        for result in &summary.results {
            let one = load_one(seed, result, dir);
            match out.iter_mut().find(|l| l.result.method == result.method && l.result.init == result.init) {
                Some(l) => l.seeds.push(one),
                None => out.push(Loaded { result, seeds: vec![one] }),
            }
        }
    }
    out
}

/// Where a result's examples file is: the recorded path, or — for a run folder that was moved
/// or a relative path written from another working directory — the same file name inside
/// `<run_dir>/<result dir name>/`.
pub fn locate(result: &MethodResult, run_dir: Option<&Path>) -> PathBuf {
    let p = &result.test.examples_path;
    if p.exists() {
        return p.clone();
    }
    if let (Some(base), Some(dir), Some(file)) = (run_dir, result.dir.file_name(), p.file_name()) {
        let alt = base.join(dir).join(file);
        if alt.exists() {
            return alt;
        }
    }
    p.clone()
}

/// A note when the records disagree with the accuracies in the result.
fn consistency(result: &MethodResult, r: &RunRecords) -> Option<String> {
    let n = r.pgd.len();
    if n == 0 {
        return Some("the examples file holds no examples".into());
    }
    let clean = r.pgd.values().filter(|v| v.1).count() as f64 / n as f64;
    let pgd = r.pgd.values().filter(|v| v.2).count() as f64 / n as f64;
    let tol = 0.5 / n as f64 + 1e-9;
    if n != result.test.n
        || (clean - result.test.clean_accuracy).abs() > tol
        || (pgd - result.test.pgd_accuracy).abs() > tol
    {
        return Some(format!(
            "records (n {n}, clean {:.4}, PGD {:.4}) disagree with result.json (n {}, clean {:.4}, PGD {:.4}); the report uses the records",
            clean, pgd, result.test.n, result.test.clean_accuracy, result.test.pgd_accuracy
        ));
    }
    None
}

/// Every record of the loaded results, in result order (then seed order).
pub fn rows(loaded: &[Loaded<'_>], source: Source) -> Vec<ExampleRow> {
    loaded
        .iter()
        .flat_map(|l| &l.seeds)
        .filter_map(|s| s.records.as_ref().map(|r| (s, r)))
        .flat_map(|(s, r)| r.rows(source, s.seed, s.result.method, s.result.init))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_the_needed_fields_and_rejects_other_documents() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ex.json");
        std::fs::write(
            &p,
            r#"{"pgd": {"n": 2, "examples": [{"index": 3, "label": 1, "clean_correct": true, "robust": false, "extra": 1},
                                              {"index": 5, "label": 0, "clean_correct": false, "robust": false}]},
                "autoattack": {"examples": [{"index": 3, "label": 1, "clean_correct": true, "robust": false}]}}"#,
        )
        .unwrap();
        let r = RunRecords::read(&p).unwrap();
        assert_eq!(r.pgd[&3], (1, true, false));
        assert_eq!(r.aa.len(), 1);
        let rows: Vec<_> = r.rows(Source::Main, None, StageKind::full(), Init::Roli).collect();
        assert_eq!(rows[0].aa_robust, Some(false));
        assert_eq!(rows[1].aa_robust, None);

        std::fs::write(&p, r#"{"examples": []}"#).unwrap();
        let e = RunRecords::read(&p).unwrap_err().to_string();
        assert!(e.contains("ex.json") && e.contains("pgd"), "{e}");
        let e = RunRecords::read(&dir.path().join("missing.json")).unwrap_err().to_string();
        assert!(e.contains("missing.json"), "{e}");
    }
}
