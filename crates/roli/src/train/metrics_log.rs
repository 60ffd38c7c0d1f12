//! `metrics.jsonl`: a stage's training curve as it happens, one JSON object per line, for people
//! and tools (pandas `read_json(lines=True)`, jq, a plotting script) to read while a run is going.
//!
//! Each record carries `step`, the optimiser steps done when it was written. A resumed stage first
//! drops the records beyond the step it resumes from (they belong to work that is being redone),
//! so the file always describes one uninterrupted run. TensorBoard event files are not written:
//! the one Rust writer (`tensorboard-rs`, last released 2022, marked inactive) pulls an old
//! protobuf and image stack; JSONL carries the same scalars without a dependency.
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file name in a stage folder.
pub const METRICS: &str = "metrics.jsonl";

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A training batch whose loss was read (every batch on the CPU, every 20th on a GPU).
    Step { epoch: u32, batch: usize, step: u64, lr: f64, loss: f64 },
    /// The end of an epoch: training and validation numbers (as in `state.json`'s history).
    Epoch {
        epoch: u32,
        step: u64,
        lr: f64,
        train_loss: f64,
        train_adv_accuracy: f64,
        val_clean: f64,
        val_robust: f64,
        seconds: f64,
        best: bool,
    },
}

impl Record {
    fn step(&self) -> u64 {
        match self {
            Record::Step { step, .. } | Record::Epoch { step, .. } => *step,
        }
    }
}

/// The open log of a stage.
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens `dir/metrics.jsonl` for appending after keeping only the records of steps
    /// `<= resumed_step` (all of a fresh stage's are dropped: `resumed_step = 0` keeps none but
    /// step-0 records, which a fresh stage has none of). A line that does not parse (a write cut
    /// by a kill) is dropped with the records after it.
    pub fn open(dir: &Path, resumed_step: u64) -> anyhow::Result<Self> {
        let path = dir.join(METRICS);
        if path.exists() {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let kept = Self::kept_lines(&text, resumed_step);
            crate::artifacts::write_atomic(&path, kept.as_bytes())?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(MetricsLog { path, file })
    }

    /// The lines of `text` a stage resumed at `resumed_step` keeps (pure).
    fn kept_lines(text: &str, resumed_step: u64) -> String {
        let mut kept = String::new();
        for line in text.lines() {
            match serde_json::from_str::<Record>(line) {
                Ok(r) if resumed_step > 0 && r.step() <= resumed_step => {
                    kept.push_str(line);
                    kept.push('\n');
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        kept
    }

    /// Appends one record as a line (flushed, so a reader sees it at once).
    pub fn write(&mut self, r: &Record) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(r)?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }
}

/// Reads every record of a `metrics.jsonl` (for reports and tests).
pub fn read(path: &Path) -> anyhow::Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{} line {}: not a metrics record", path.display(), i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(epoch: u32, step: u64) -> Record {
        Record::Step { epoch, batch: step as usize, step, lr: 0.1, loss: 1.0 / (step as f64 + 1.0) }
    }

    #[test]
    fn a_resumed_log_keeps_only_the_steps_before_the_resume_point() {
        let d = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(d.path(), 0).unwrap();
        for s in 1..=5 {
            log.write(&step(0, s)).unwrap();
        }
        drop(log);
        // Killed after step 5 with the last checkpoint at step 3: steps 4 and 5 are redone.
        let mut log = MetricsLog::open(d.path(), 3).unwrap();
        log.write(&step(0, 4)).unwrap();
        let steps: Vec<u64> = read(&d.path().join(METRICS)).unwrap().iter().map(Record::step).collect();
        assert_eq!(steps, vec![1, 2, 3, 4]);
        // A fresh start drops everything.
        drop(MetricsLog::open(d.path(), 0).unwrap());
        assert!(read(&d.path().join(METRICS)).unwrap().is_empty());
    }

    #[test]
    fn a_line_cut_by_a_kill_and_what_follows_are_dropped() {
        let text = format!(
            "{}\n{{\"kind\":\"step\",\"epo\n{}\n",
            serde_json::to_string(&step(0, 1)).unwrap(),
            serde_json::to_string(&step(0, 2)).unwrap()
        );
        let kept = MetricsLog::kept_lines(&text, 10);
        assert_eq!(kept.lines().count(), 1, "{kept}");
    }

    #[test]
    fn records_are_tagged_lines() {
        let r = Record::Epoch {
            epoch: 2,
            step: 30,
            lr: 0.01,
            train_loss: 1.5,
            train_adv_accuracy: 0.4,
            val_clean: 0.6,
            val_robust: 0.3,
            seconds: 2.0,
            best: true,
        };
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.starts_with("{\"kind\":\"epoch\",\"epoch\":2,\"step\":30"), "{line}");
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), r);
    }
}
