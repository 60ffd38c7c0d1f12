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
    pub flags: Vec<String>,
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
