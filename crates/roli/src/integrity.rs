//! The integrity gate: every headline number carries the checks behind it, and a failed check
//! marks it `unreliable` (RobustBench's word) in `result.json`/`summary.json`, the `roli run` and
//! `roli demo` tables and `report.md`; `roli run`, `roli demo` and `roli report` then exit 1
//! unless `--allow-flags`.
//!
//! The checks themselves are the pure functions of `roli_attacks::checks` (FLAGS.md); this module
//! turns an evaluation's flags into the list of checks that ran, passed or failed.
use crate::results::{Check, Summary, TestResult};
use roli_attacks::checks::{self, AaVsPgd};
use roli_attacks::{AaVersion, AttackSpec, EvalReport, Flag, StageId};

/// The word next to a number that failed a check.
pub const UNRELIABLE: &str = "unreliable";

/// `on` of the checks over the two reports together.
pub const AA_VS_PGD: &str = "aa-vs-pgd";
/// `on` of the robustness-curve checks.
pub const EPS_CURVE: &str = "eps-curve";

fn check(name: &str, on: &str, flag: Option<&Flag>, ok: &str) -> Check {
    Check {
        name: name.into(),
        on: on.into(),
        passed: flag.is_none(),
        detail: flag.map(Flag::message).unwrap_or_else(|| ok.into()),
        flag: flag.cloned(),
    }
}

/// The checks one evaluation ran (`on` = `pgd` or `autoattack`), passed unless its report holds
/// the check's flag; a flag of a check not listed here is kept as a failed check of its own.
pub fn report_checks(on: &str, spec: &AttackSpec, rep: &EvalReport) -> Vec<Check> {
    let ids: Vec<StageId> = spec.stages(rep.norm).map(|s| s.iter().map(|s| s.id()).collect()).unwrap_or_default();
    let mut ran: Vec<(&str, String)> = vec![(
        "perturbation-out-of-bounds",
        format!("every ‖δ‖ ≤ eps {} (max {:.6}), x_adv in [0, 1], no NaN", rep.eps, rep.sanity.max_perturbation),
    )];
    if !matches!(spec, AttackSpec::AutoAttack(AaVersion::Rand)) {
        ran.push(("randomized", "5 forward passes of the first batch agree".into()));
    }
    ran.push(("softmax-output", "outputs are logits, not probabilities".into()));
    if rep.clean_accuracy > 0.0 && ids.iter().any(|id| id.is_white_box()) {
        ran.push(("zero-gradient", "no all-zero or NaN input gradient on the first clean-correct batch".into()));
    }
    if ids.iter().position(|&id| id == StageId::Square).is_some_and(|p| p > 0) {
        ran.push(("square-beats-white-box", "Square did not beat the white-box stages before it".into()));
    }
    if ids.iter().any(|&id| matches!(id, StageId::ApgdT | StageId::FabT)) {
        ran.push(("too-many-targets", "target classes ≤ classes − 1".into()));
    }
    let mut out: Vec<Check> =
        ran.iter().map(|(name, ok)| check(name, on, rep.flags.iter().find(|f| f.doc_anchor() == *name), ok)).collect();
    for f in rep.flags.iter().filter(|f| !ran.iter().any(|(n, _)| *n == f.doc_anchor())) {
        out.push(check(f.doc_anchor(), on, Some(f), ""));
    }
    out
}

/// AutoAttack ≤ PGD on the examples both evaluated (matched by index).
pub fn aa_vs_pgd(pgd: &EvalReport, aa: &EvalReport) -> Option<AaVsPgd> {
    let pairs = |r: &EvalReport| r.examples.iter().map(|e| (e.index, e.robust)).collect::<Vec<_>>();
    checks::aa_vs_pgd_examples(&pairs(pgd), &pairs(aa))
}

/// The check of [`aa_vs_pgd`]'s outcome.
pub fn aa_vs_pgd_check(c: &AaVsPgd) -> Check {
    let ok = format!(
        "on the {} shared examples AA {:.4} ≤ PGD {:.4}; {} AA-robust example(s) PGD broke",
        c.n, c.aa, c.pgd, c.aa_robust_pgd_broken
    );
    let mut ch = check("aa-weaker-than-pgd", AA_VS_PGD, c.flag.as_ref(), &ok);
    if !ch.passed {
        ch.detail = format!(
            "{} ({} shared examples; {} AA-robust example(s) PGD broke)",
            ch.detail, c.n, c.aa_robust_pgd_broken
        );
    }
    ch
}

/// Every check of a test: both reports' checks and AA vs PGD; with the count of examples AA left
/// robust and PGD broke.
pub fn test_checks(
    pgd: (&AttackSpec, &EvalReport),
    aa: Option<(&AttackSpec, &EvalReport)>,
) -> (Vec<Check>, Option<usize>) {
    let mut out = report_checks("pgd", pgd.0, pgd.1);
    let mut only_aa = None;
    if let Some((spec, rep)) = aa {
        out.extend(report_checks("autoattack", spec, rep));
        if let Some(c) = aa_vs_pgd(pgd.1, rep) {
            only_aa = Some(c.aa_robust_pgd_broken);
            out.push(aa_vs_pgd_check(&c));
        }
    }
    (out, only_aa)
}

/// Sets a test's checks of the given `on` kinds (replacing earlier ones of those kinds), then its
/// `reliable` and `flags` from all of them.
pub fn apply(test: &mut TestResult, checks: Vec<Check>) {
    test.checks.retain(|c| !checks.iter().any(|n| n.on == c.on));
    test.checks.extend(checks);
    test.reliable = test.checks.iter().all(|c| c.passed);
    test.flags = test.failed_checks().map(|c| format!("{}: {}", c.on, c.detail)).collect();
}

/// A robustness curve with its curve-level flags (`roli_attacks::Sweep::flags`).
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// `(eps, robust accuracy)` in the configured order.
    pub points: Vec<(f64, f64)>,
    /// Non-monotone in eps; eps = 0 ≠ clean.
    pub flags: Vec<Flag>,
}

impl Curve {
    /// The checks the curve ran: monotone in eps (two or more points), eps = 0 equals clean
    /// (when 0 is on the curve).
    pub fn checks(&self) -> Vec<Check> {
        let find = |name: &str| self.flags.iter().find(|f| f.doc_anchor() == name);
        let mut out = Vec::new();
        if self.points.len() >= 2 {
            out.push(check(
                "non-monotone-in-eps",
                EPS_CURVE,
                find("non-monotone-in-eps"),
                &format!("robust accuracy does not rise with eps over {} points", self.points.len()),
            ));
        }
        if self.points.iter().any(|p| p.0 == 0.0) {
            out.push(check(
                "eps-zero-mismatch",
                EPS_CURVE,
                find("eps-zero-mismatch"),
                "the attack at eps 0 equals clean",
            ));
        }
        let other: Vec<Check> = self
            .flags
            .iter()
            .filter(|f| !out.iter().any(|c| c.name == f.doc_anchor()))
            .map(|f| check(f.doc_anchor(), EPS_CURVE, Some(f), ""))
            .collect();
        out.extend(other);
        out
    }
}

/// Models whose numbers failed a check; the error `roli run`, `roli demo` and `roli report` end
/// with (exit code 1) unless `--allow-flags`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "unreliable numbers (failed integrity checks) for {}: see the checks in summary.json/report.md; pass --allow-flags to exit 0 anyway",
    models.join(", ")
)]
pub struct Unreliable {
    pub models: Vec<String>,
}

/// The unreliable models of labelled summaries (`tag` prefixes the model's label when not empty).
pub fn unreliable_models(summaries: &[(&str, &Summary)]) -> Vec<String> {
    summaries
        .iter()
        .flat_map(|(tag, s)| {
            s.results.iter().filter(|r| !r.test.is_reliable()).map(move |r| {
                let names = r.test.failure_names();
                let label = if tag.is_empty() { r.label() } else { format!("{tag} {}", r.label()) };
                if names.is_empty() {
                    label
                } else {
                    format!("{label} ({})", names.join(", "))
                }
            })
        })
        .collect()
}

/// `Err(Unreliable)` when any model is unreliable and flags are not allowed.
pub fn gate(summaries: &[(&str, &Summary)], allow_flags: bool) -> Result<(), Unreliable> {
    let models = unreliable_models(summaries);
    if models.is_empty() || allow_flags {
        if !models.is_empty() {
            tracing::warn!("--allow-flags: unreliable numbers kept for {}", models.join(", "));
        }
        return Ok(());
    }
    Err(Unreliable { models })
}

/// ` unreliable` after a table row of an unreliable result, or nothing.
pub fn marker(test: &TestResult) -> String {
    if test.is_reliable() {
        String::new()
    } else {
        format!("  {UNRELIABLE} ({})", test.failure_names().join(", "))
    }
}
