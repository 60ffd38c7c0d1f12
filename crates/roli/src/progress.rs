//! Progress bars and spinners (indicatif), hidden when stderr is not a terminal so logs and CI
//! output stay clean.
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A bar over `len` steps with ETA.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), target());
    pb.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg} ({elapsed} < {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// A spinner for steps of unknown length (downloads).
pub fn spinner(what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, target());
    pb.set_style(
        ProgressStyle::with_template("{spinner} {prefix} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_prefix(what.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}

fn target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// The progress of an evaluation: the clean pass, then one bar per attack stage with the points
/// attacked so far out of those it attacks, the robust accuracy so far, throughput and ETA — an
/// AutoAttack run on a large test set takes hours, and this is what one plans around. Each
/// finished stage is also logged (one line), so logs of non-interactive runs show it too.
pub struct EvalBars {
    what: String,
    bar: std::cell::RefCell<Option<ProgressBar>>,
    /// Examples evaluated (from the clean pass).
    n: std::cell::Cell<usize>,
}

impl EvalBars {
    /// Bars labelled `what` (e.g. `eval`, `full/roli test`).
    pub fn new(what: &str) -> Self {
        EvalBars { what: what.to_string(), bar: Default::default(), n: Default::default() }
    }

    fn start(&self, len: usize, label: &str) -> ProgressBar {
        let pb = ProgressBar::with_draw_target(Some(len as u64), target());
        pb.set_style(
            ProgressStyle::with_template("{prefix:>18} [{bar:25}] {pos}/{len} {msg} {per_sec} ({elapsed} < {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_prefix(format!("{} {label}", self.what));
        if let Some(old) = self.bar.replace(Some(pb.clone())) {
            old.finish_and_clear();
        }
        pb
    }

    /// Feeds one event of the evaluation.
    pub fn on_event(&self, e: &roli_attacks::ProgressEvent) {
        use roli_attacks::ProgressEvent as E;
        let robust = |r: usize, n: usize| format!("robust {:.2}%", 100.0 * r as f64 / n.max(1) as f64);
        match e {
            E::CleanBatch { done, n } => self.pass(*done, *n, "clean"),
            E::ResumeCheckBatch { done, n } => self.pass(*done, *n, "checking state"),
            E::Clean { n, correct } => {
                self.n.set(*n);
                self.finish();
                tracing::info!(
                    "{}: clean {correct}/{n} ({:.2}%)",
                    self.what,
                    100.0 * *correct as f64 / (*n).max(1) as f64
                );
            }
            E::StageStart { id, n_robust } => {
                let pb = self.start(*n_robust, id.as_str());
                pb.set_message(robust(*n_robust, self.n.get()));
            }
            E::Batch { done, robust_so_far, n, .. } => {
                if let Some(pb) = self.bar.borrow().as_ref() {
                    pb.set_position(*done as u64);
                    pb.set_message(robust(*robust_so_far, *n));
                }
            }
            E::StageEnd(r) => {
                self.finish();
                tracing::info!(
                    "{}: after {} robust {:.2}% ({} attacked, {} broken, {:.1} s)",
                    self.what,
                    r.id.as_str(),
                    100.0 * r.robust_accuracy,
                    r.n_attacked,
                    r.n_broken,
                    r.seconds
                );
            }
            E::StageResumed(id) => tracing::info!("{}: {} restored from the saved state", self.what, id.as_str()),
        }
    }

    /// A pass over all `n` examples (clean, or the resume check), `done` so far.
    fn pass(&self, done: usize, n: usize, label: &str) {
        self.n.set(n);
        let current = self.bar.borrow().clone();
        let pb = match current {
            Some(pb) if pb.prefix().ends_with(label) => pb,
            _ => self.start(n, label),
        };
        pb.set_position(done as u64);
    }

    /// Clears the current bar.
    pub fn finish(&self) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
    }
}
