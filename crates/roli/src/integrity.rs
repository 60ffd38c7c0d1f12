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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::TestResult;
    use roli_attacks::{EvalOptions, ThreatModel};
    use std::path::PathBuf;
    use tch::{Device, Kind, Tensor};

    /// A real PGD report of a small linear model on 20 self-labelled examples.
    fn pgd_report() -> (AttackSpec, EvalReport) {
        tch::manual_seed(3);
        let w = Tensor::randn([12, 4], (Kind::Float, Device::Cpu));
        let m = move |x: &Tensor| x.reshape([-1, 12]).matmul(&w);
        let x = Tensor::rand([20, 3, 2, 2], (Kind::Float, Device::Cpu));
        let y = tch::no_grad(|| m(&x).argmax(1, false));
        let spec: AttackSpec = "pgd".parse().unwrap();
        let mut o = EvalOptions::new(ThreatModel::Linf { eps: 0.05 });
        o.batch_size = 20;
        (spec, roli_attacks::evaluate(&m, &x, &y, &spec, &o).unwrap())
    }

    fn test_result(checks: Vec<Check>) -> TestResult {
        let mut t = TestResult {
            n: 20,
            clean_accuracy: 1.0,
            pgd_accuracy: 0.5,
            aa_accuracy: None,
            aa_n: None,
            examples_path: PathBuf::new(),
            flags: vec![],
            checks: vec![],
            reliable: true,
            aa_robust_pgd_broken: None,
        };
        apply(&mut t, checks);
        t
    }

    #[test]
    fn aa_above_pgd_on_the_same_examples_fails_the_test() {
        let (spec, pgd) = pgd_report();
        let broken = pgd.examples.iter().filter(|e| e.clean_correct && !e.robust).count();
        assert!(broken >= 2, "the toy PGD must break some points: {}", pgd.robust_accuracy);
        let aa_spec: AttackSpec = "aa-standard".parse().unwrap();
        // AA on the first 10 examples: as strong as PGD there → passes.
        let mut aa = pgd.clone();
        aa.examples.truncate(10);
        aa.flags.clear();
        let (checks, only_aa) = test_checks((&spec, &pgd), Some((&aa_spec, &aa)));
        let c = checks.iter().find(|c| c.on == AA_VS_PGD).unwrap();
        assert!(c.passed && only_aa == Some(0), "{c:?}");
        // AA robust on every clean-correct point of its subset, including points PGD broke → fails,
        // with the count of AA-robust PGD-broken examples.
        for e in &mut aa.examples {
            e.robust = e.clean_correct;
        }
        let expected = aa.examples.iter().zip(&pgd.examples).filter(|(a, p)| a.robust && !p.robust).count();
        let (checks, only_aa) = test_checks((&spec, &pgd), Some((&aa_spec, &aa)));
        let c = checks.iter().find(|c| c.on == AA_VS_PGD).unwrap();
        if expected > 0 {
            assert!(!c.passed && matches!(c.flag, Some(Flag::AaWeakerThanPgd { .. })), "{c:?}");
            assert_eq!(only_aa, Some(expected));
            let t = test_result(checks);
            assert!(!t.reliable && !t.is_reliable());
            assert_eq!(t.failure_names(), vec!["aa-vs-pgd: aa-weaker-than-pgd".to_string()]);
        } else {
            panic!("the first 10 examples hold no PGD-broken point; pick another seed");
        }
    }

    #[test]
    fn report_checks_list_what_ran_and_fail_on_flags() {
        let (spec, mut pgd) = pgd_report();
        let names: Vec<String> = report_checks("pgd", &spec, &pgd).iter().map(|c| c.name.clone()).collect();
        assert_eq!(names, ["perturbation-out-of-bounds", "randomized", "softmax-output", "zero-gradient"]);
        assert!(report_checks("pgd", &spec, &pgd).iter().all(|c| c.passed));
        pgd.flags.push(Flag::PerturbationOutOfBounds { over_eps: 1, max_norm: 0.2, out_of_box: 0, nan: 0 });
        pgd.flags.push(Flag::NonMonotoneInSteps { steps_lo: 1, acc_lo: 0.1, steps_hi: 2, acc_hi: 0.5 });
        let cs = report_checks("pgd", &spec, &pgd);
        let failed: Vec<&str> = cs.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect();
        assert_eq!(failed, ["perturbation-out-of-bounds", "non-monotone-in-steps"]);
        assert!(cs[0].detail.contains("exceed eps"));
        // AA standard adds Square-vs-white-box and target counts.
        let aa: AttackSpec = "aa-standard".parse().unwrap();
        let names: Vec<String> = report_checks("autoattack", &aa, &pgd).iter().map(|c| c.name.clone()).collect();
        assert!(names.contains(&"square-beats-white-box".into()) && names.contains(&"too-many-targets".into()));
    }

    #[test]
    fn curve_checks_keep_the_sweep_flags() {
        let ok = Curve { points: vec![(0.0, 0.9), (0.1, 0.5)], flags: vec![] };
        let cs = ok.checks();
        assert_eq!(cs.len(), 2);
        assert!(cs.iter().all(|c| c.passed && c.on == EPS_CURVE));
        let no_zero = Curve { points: vec![(0.05, 0.9), (0.1, 0.5)], flags: vec![] };
        assert_eq!(no_zero.checks().len(), 1, "eps = 0 is only checked when on the curve");
        let bad = Curve {
            points: vec![(0.0, 0.8), (0.1, 0.6)],
            flags: vec![
                checks::eps_zero(0.9, 0.8).unwrap(),
                checks::monotone_in_eps(&[(0.1, 0.5), (0.2, 0.6)]).unwrap(),
            ],
        };
        let cs = bad.checks();
        assert!(cs.iter().all(|c| !c.passed), "{cs:?}");
        // The curve's checks join the test's and replace an earlier curve's (a re-run demo).
        let mut t = test_result(report_checks("pgd", &pgd_report().0, &pgd_report().1));
        assert!(t.is_reliable());
        apply(&mut t, bad.checks());
        assert!(!t.reliable && t.flags.len() == 2, "{:?}", t.flags);
        apply(&mut t, ok.checks());
        assert!(t.reliable && t.flags.is_empty() && t.checks.iter().filter(|c| c.on == EPS_CURVE).count() == 2);
    }

    #[test]
    fn gate_names_unreliable_models_unless_allowed_and_reads_old_summaries() {
        // summary.json as written before the gate: no checks, reliable or aa_robust_pgd_broken.
        let r = crate::results::MethodResult {
            method: crate::config::StageKind::Probe,
            init: crate::config::Init::Ranli,
            dir: PathBuf::from("linear"),
            optimizer: crate::train::optim::OptimizerKind::REFERENCE_SGD,
            lr: 0.1,
            epochs: 1,
            best_epoch: None,
            best_val_robust: 0.0,
            trainable_tensors: 1,
            trainable_elements: 1,
            effective_elements: None,
            notes: vec![],
            test: test_result(vec![]),
            seconds: 1.0,
        };
        let new = Summary {
            name: "r".into(),
            backbone: "b".into(),
            data: "d".into(),
            test_n: 20,
            head_artifact: PathBuf::from("h"),
            results: vec![r],
        };
        let mut old = serde_json::to_value(&new).unwrap();
        let test = old["results"][0]["test"].as_object_mut().unwrap();
        for k in ["checks", "reliable", "aa_robust_pgd_broken"] {
            assert!(test.remove(k).is_some(), "{k}");
        }
        let s: Summary = match serde_json::from_value(old) {
            Ok(s) => s,
            Err(e) => panic!("an old summary.json must stay readable: {e}"),
        };
        assert!(s.results[0].test.reliable && s.results[0].test.checks.is_empty());
        assert_eq!(gate(&[("", &s)], false), Ok(()));
        // An old result that recorded a flag counts as unreliable.
        let mut flagged = s.clone();
        flagged.results[0].test.flags = vec!["ZeroGradient { zero: 2, nan: 0, total: 2 }".into()];
        let e = gate(&[("standard", &flagged)], false).unwrap_err();
        assert_eq!(e.models.len(), 1);
        assert!(e.models[0].starts_with("standard linear probe (ZeroGradient"), "{e:?}");
        let line = e.to_string();
        assert!(!line.contains('\n') && line.contains("--allow-flags"), "{line}");
        assert_eq!(gate(&[("", &s), ("standard", &flagged)], true), Ok(()));
        assert!(marker(&flagged.results[0].test).contains(UNRELIABLE) && marker(&s.results[0].test).is_empty());
    }
}
