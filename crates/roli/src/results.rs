//! The results schema shared by the pipeline (which writes it) and the report (which reads it):
//! `result.json` per stage and `summary.json` per run. Field names are the on-disk format.
use crate::config::{Init, StageKind};
use crate::train::optim::OptimizerKind;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Test results of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    pub n: usize,
    pub clean_accuracy: f64,
    pub pgd_accuracy: f64,
    pub aa_accuracy: Option<f64>,
    pub aa_n: Option<usize>,
    /// Per-example records (JSON with the PGD and AutoAttack reports).
    pub examples_path: PathBuf,
    /// One line per failed check (older runs: the flags' Debug text).
    pub flags: Vec<String>,
    /// Every integrity check behind these numbers, passed or not (`crate::integrity`); empty in
    /// runs written before the gate.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// False when any check failed: the robust accuracies are then marked `unreliable`
    /// everywhere they are shown. See [`TestResult::is_reliable`] for older files.
    #[serde(default = "yes")]
    pub reliable: bool,
    /// Examples AutoAttack left robust that PGD broke, on the examples both evaluated.
    #[serde(default)]
    pub aa_robust_pgd_broken: Option<usize>,
}

fn yes() -> bool {
    true
}

impl TestResult {
    /// Whether the numbers passed every check. A result written before the gate (no `checks`)
    /// counts as unreliable when it recorded any flag.
    pub fn is_reliable(&self) -> bool {
        self.reliable && self.checks.iter().all(|c| c.passed) && (!self.checks.is_empty() || self.flags.is_empty())
    }

    /// The checks that failed.
    pub fn failed_checks(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// Names of the failed checks (`on: name`), or the legacy flag lines of an older result.
    pub fn failure_names(&self) -> Vec<String> {
        if self.checks.is_empty() {
            return self.flags.clone();
        }
        self.failed_checks().map(|c| format!("{}: {}", c.on, c.name)).collect()
    }
}

/// One integrity check of a test evaluation (`result.json` → `test.checks[]`):
/// `{"name": "zero-gradient", "on": "pgd", "passed": false, "detail": "…", "flag": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The check, named by its section in roli-attacks' FLAGS.md (e.g. `aa-weaker-than-pgd`).
    pub name: String,
    /// What it was run on: `pgd`, `autoattack`, `aa-vs-pgd` or `eps-curve`.
    pub on: String,
    pub passed: bool,
    /// What was seen (the flag's message when failed).
    pub detail: String,
    /// The typed flag of a failed check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<roli_attacks::Flag>,
}

/// One trained (method, init) with its test results (`result.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResult {
    /// `linear` (the probe) or the finetuning method.
    pub method: StageKind,
    pub init: Init,
    pub dir: PathBuf,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub epochs: u32,
    pub best_epoch: Option<u32>,
    pub best_val_robust: f64,
    pub trainable_tensors: usize,
    pub trainable_elements: i64,
    pub effective_elements: Option<i64>,
    pub notes: Vec<String>,
    pub test: TestResult,
    pub seconds: f64,
}

impl MethodResult {
    /// `linear probe`, `full/roli`: how logs and progress lines name a row.
    pub fn label(&self) -> String {
        match self.method {
            StageKind::Probe => "linear probe".into(),
            StageKind::Finetune(m) => format!("{}/{}", m.as_str(), self.init.as_str()),
        }
    }
}

/// `summary.json` of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub name: String,
    pub backbone: String,
    pub data: String,
    pub test_n: usize,
    pub head_artifact: PathBuf,
    pub results: Vec<MethodResult>,
}

/// `SeedsSummary::format`: marks the `summary.json` of a multi-seed folder.
pub const SEEDS_FORMAT: &str = "roli-seeds";

/// `summary.json` of a study run over several seeds (`crate::study::seeds`): each seed's own
/// summary (with every check of every model) and the rows pooled over the seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedsSummary {
    /// Always [`SEEDS_FORMAT`]: `roli report` tells a pooled folder from a one-study one by it.
    pub format: String,
    pub name: String,
    pub backbone: String,
    pub data: String,
    pub test_n: usize,
    /// In the configured order; the first seed's study is the complete one.
    pub seeds: Vec<SeedRun>,
    /// One row per (method, init), pooled over the seeds that trained it.
    pub pooled: Vec<PooledRow>,
}

/// One seed's study inside a multi-seed folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedRun {
    pub seed: u64,
    /// The study's folder, relative to the multi-seed folder (`seed-<s>`).
    pub dir: PathBuf,
    pub summary: Summary,
}

/// A (method, init) over seeds: the per-seed accuracies, their mean and interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PooledRow {
    pub method: StageKind,
    pub init: Init,
    pub clean: PooledValue,
    pub pgd: PooledValue,
    /// Over the seeds that ran AutoAttack (`eval.aa_seeds`); None when none did.
    pub aa: Option<PooledValue>,
    /// False when any seed's test of this row failed an integrity check.
    pub reliable: bool,
    /// `seed <s>: <on>: <check>` of every failed check.
    pub failed_checks: Vec<String>,
}

/// One accuracy over seeds (fractions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PooledValue {
    /// `(seed, accuracy)` per seed.
    pub per_seed: Vec<(u64, f64)>,
    /// Test examples per seed (the same subset for every seed).
    pub n: usize,
    pub mean: f64,
    /// The interval: Student-t over the seed means (S − 1 degrees of freedom) for S ≥ 2, the
    /// Wilson interval over the n examples for one seed.
    pub low: f64,
    pub high: f64,
}
