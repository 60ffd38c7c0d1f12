//! End-to-end: a synthetic summary with per-example files → report.md, results.json, figures.
use super::*;
use crate::results::{MethodResult, TestResult};
use crate::train::optim::OptimizerKind;
use roli_attacks::ExampleRecord;
use std::collections::BTreeMap;

const N: usize = 100;
const AA_N: usize = 50;

fn record(index: usize, clean: bool, robust: bool) -> ExampleRecord {
    ExampleRecord {
        index,
        label: (index % 10) as i64,
        clean_correct: clean,
        robust: clean && robust,
        broken_by: None,
        adv_label: 0,
        perturbation_norm: None,
        attacks: BTreeMap::new(),
    }
}

/// Writes `<root>/<dir>/test_examples.json` with clean/PGD flags from index sets, AutoAttack on
/// the first AA_N examples (robust = PGD-robust minus every 10th), and returns its result.
fn result(
    root: &Path,
    method: StageKind,
    init: Init,
    clean: impl Fn(usize) -> bool,
    pgd: impl Fn(usize) -> bool,
) -> MethodResult {
    let dir = root.join(crate::config::run_key(method, init));
    std::fs::create_dir_all(&dir).unwrap();
    let pgd_ex: Vec<ExampleRecord> = (0..N).map(|i| record(i, clean(i), pgd(i))).collect();
    let aa_ex: Vec<ExampleRecord> = (0..AA_N).map(|i| record(i, clean(i), pgd(i) && i % 10 != 9)).collect();
    let acc =
        |v: &[ExampleRecord], f: fn(&ExampleRecord) -> bool| v.iter().filter(|e| f(e)).count() as f64 / v.len() as f64;
    let path = dir.join("test_examples.json");
    let doc =
        serde_json::json!({ "pgd": { "n": N, "examples": pgd_ex }, "autoattack": { "n": AA_N, "examples": aa_ex } });
    std::fs::write(&path, serde_json::to_string(&doc).unwrap()).unwrap();
    MethodResult {
        method,
        init,
        dir,
        optimizer: if method == StageKind::Probe {
            OptimizerKind::REFERENCE_SGD
        } else {
            OptimizerKind::REFERENCE_ADAMW
        },
        lr: 1.25e-4,
        epochs: 20,
        best_epoch: Some(7),
        best_val_robust: 0.4,
        trainable_tensors: 2,
        trainable_elements: 10_250,
        effective_elements: None,
        notes: vec![],
        test: TestResult {
            n: N,
            clean_accuracy: acc(&pgd_ex, |e| e.clean_correct),
            pgd_accuracy: acc(&pgd_ex, |e| e.robust),
            aa_accuracy: Some(acc(&aa_ex, |e| e.robust)),
            aa_n: Some(AA_N),
            examples_path: path,
            flags: vec![],
            checks: vec![],
            reliable: true,
            aa_robust_pgd_broken: None,
        },
        seconds: 1.0,
    }
}

fn summary(name: &str, results: Vec<MethodResult>) -> Summary {
    Summary {
        name: name.into(),
        backbone: "synthetic".into(),
        data: "synthetic/test".into(),
        test_n: N,
        head_artifact: PathBuf::from("linear/head.json"),
        results,
    }
}

/// Linear: clean 80, PGD 40. Full RanLI: clean 70, PGD 30. Full RoLI: clean 78 with 10 RoLI-only
/// and 2 RanLI-only correct examples (McNemar p = 0.0386), PGD 33 (3 vs 0 discordant, p = 0.25).
fn main_summary(root: &Path) -> Summary {
    summary(
        "synthetic robust",
        vec![
            result(root, StageKind::Probe, Init::Ranli, |i| i < 80, |i| i < 40),
            result(root, StageKind::full(), Init::Ranli, |i| i < 70, |i| i < 30),
            result(root, StageKind::full(), Init::Roli, |i| i < 68 || (70..80).contains(&i), |i| i < 33),
        ],
    )
}

#[test]
fn report_has_table_intervals_paired_tests_findings_and_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let main = main_summary(&tmp.path().join("robust"));
    let standard = summary(
        "synthetic standard",
        vec![result(&tmp.path().join("standard"), StageKind::full(), Init::Ranli, |i| i < 72, |i| i < 5)],
    );
    let curve = vec![("full/RoLI".to_string(), vec![(0.0, 0.78), (4.0 / 255.0, 0.5), (8.0 / 255.0, 0.33)])];
    let out = tmp.path().join("report");
    let opts = ReportOptions {
        title: "Synthetic study".into(),
        standard: Some(&standard),
        eps_curve: &curve,
        ..Default::default()
    };
    let paths = write_report(&main, &out, &opts).unwrap();

    let md = std::fs::read_to_string(&paths.markdown).unwrap();
    // The table with its intervals: 80/100 → Wilson [71.1, 86.7]; 78/100 computed here.
    assert!(md.contains("| method | init | clean % [95% CI] | PGD % [95% CI]"), "{md}");
    assert!(md.contains("| linear | – (stage 1) | 80.0 [71.1, 86.7] | 40.0 ["), "{md}");
    let (lo, hi) = stats::wilson(78, 100, stats::Z95);
    assert!(md.contains(&format!("| full | RoLI | 78.0 [{:.1}, {:.1}]", lo * 100.0, hi * 100.0)), "{md}");
    // AA on its own subset: full RoLI robust on 0..33 minus every 10th of the first 50 → 30/50.
    assert!(md.contains("| 60.0 [") && md.contains("| 50 |"), "{md}");
    // RoLI − RanLI with the exact McNemar p-value and the discordant counts.
    assert!(md.contains("| full | +8.0 (p = 0.0386; 10/2) | +3.0 (p = 0.2500; 3/0) |"), "{md}");
    // Findings judged from the numbers.
    assert!(md.contains("**Robust vs standard pretraining** — **holds**"), "{md}");
    assert!(md.contains("**Linear probing vs full finetuning (RanLI)** — **holds**"), "{md}");
    assert!(md.contains("**RoLI vs RanLI per method** — **inconclusive**"), "{md}");
    assert!(
        md.contains("full: inconclusive — clean +8.0 pp (p = 0.0386) holds; PGD +3.0 pp (p = 0.2500) inconclusive"),
        "{md}"
    );
    assert!(md.contains("![Figure 1"), "{md}");

    // Figures exist and are not empty.
    let (png, svg) = paths.figure1.clone().expect("figure 1 drawn");
    let (epng, esvg) = paths.eps_curve.clone().expect("eps curve drawn");
    for p in [&png, &svg, &epng, &esvg] {
        assert!(std::fs::metadata(p).map(|m| m.len() > 200).unwrap_or(false), "{} missing or empty", p.display());
    }
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");

    // results.json: every record of both summaries, with the AA flag only where AA ran.
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&paths.results_json).unwrap()).unwrap();
    let recs = j["records"].as_array().unwrap();
    assert_eq!(recs.len(), 4 * N);
    let r = recs.iter().find(|r| r["method"] == "full" && r["init"] == "roli" && r["index"] == 75).unwrap();
    assert_eq!(
        (r["clean_correct"].as_bool(), r["pgd_robust"].as_bool(), r["aa_robust"].as_bool()),
        (Some(true), Some(false), None)
    );
    assert_eq!(recs.iter().filter(|r| r["source"] == "standard").count(), N);
    assert_eq!(j["roli_minus_ranli"][0][1][0]["paired"]["only_a"], 10);
}

#[test]
fn moved_runs_are_found_and_missing_records_degrade_to_rates() {
    let tmp = tempfile::tempdir().unwrap();
    let mut main = main_summary(&tmp.path().join("run"));
    // The run folder was moved after the paths were recorded.
    std::fs::rename(tmp.path().join("run"), tmp.path().join("moved")).unwrap();
    let out = tmp.path().join("report");
    let opts = ReportOptions { run_dir: Some(&tmp.path().join("moved")), ..Default::default() };
    let md = std::fs::read_to_string(write_report(&main, &out, &opts).unwrap().markdown).unwrap();
    assert!(md.contains("p = 0.0386") && !md.contains("per-example records") && !md.contains("(unpaired)"), "{md}");

    // Without run_dir the files are gone: rates from result.json, no paired test, a note.
    main.results[2].test.examples_path = tmp.path().join("nowhere/test_examples.json");
    let md = std::fs::read_to_string(write_report(&main, &out, &ReportOptions::default()).unwrap().markdown).unwrap();
    assert!(md.contains("(unpaired)") && md.contains("nowhere/test_examples.json") && md.contains("full/RoLI"), "{md}");
    assert!(md.contains("| full | RoLI | 78.0 ["), "{md}");

    let bad = ReportOptions { confidence: 1.5, ..Default::default() };
    let e = write_report(&main, &out, &bad).unwrap_err().to_string();
    assert!(e.contains("confidence") && e.contains("1.5"), "{e}");
}

#[test]
fn failed_checks_of_both_runs_are_marked_and_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let main = main_summary(&tmp.path().join("robust"));
    let mut standard = summary(
        "synthetic standard",
        vec![result(&tmp.path().join("standard"), StageKind::full(), Init::Ranli, |i| i < 72, |i| i < 5)],
    );
    let failed = crate::results::Check {
        name: "square-beats-white-box".into(),
        on: "autoattack".into(),
        passed: false,
        detail: "Square lowered robust accuracy by 4.00%".into(),
        flag: Some(roli_attacks::Flag::SquareBeatsWhiteBox { delta: 0.04 }),
    };
    let passed = crate::results::Check { passed: true, flag: None, detail: "ok".into(), ..failed.clone() };
    crate::integrity::apply(&mut standard.results[0].test, vec![failed, passed]);
    let out = tmp.path().join("report");
    let opts = ReportOptions { standard: Some(&standard), ..Default::default() };
    let paths = write_report(&main, &out, &opts).unwrap();
    let md = std::fs::read_to_string(&paths.markdown).unwrap();
    // The main rows pass (their checks were not recorded), the standard row is marked in its table
    // (PGD and AA) and listed with the failed check.
    let marked: Vec<&str> = md.lines().filter(|l| l.contains("**unreliable** |")).collect();
    assert_eq!(marked.len(), 1, "{md}");
    assert!(marked[0].starts_with("| full | RanLI | 72.0") && marked[0].matches("**unreliable**").count() == 2, "{md}");
    assert!(md.contains("- standard full/RanLI: **unreliable** — 1 failed, 1 passed"), "{md}");
    assert!(md.contains("  - square-beats-white-box (autoattack): Square lowered"), "{md}");
    assert!(md.contains("- linear: no checks recorded"), "{md}");
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&paths.results_json).unwrap()).unwrap();
    let rows = j["rows"].as_array().unwrap();
    assert_eq!(rows.iter().filter(|r| r[1]["reliable"] == false).count(), 1, "{j}");
}

/// Two seeds of the synthetic study: seed 1 repeats seed 0's clean outcomes exactly, and its full
/// RoLI is PGD-robust on 0..35 (5 vs 0 discordant against RanLI, seed 0: 3 vs 0).
fn two_seeds(root: &Path) -> (Summary, Summary) {
    let s0 = main_summary(&root.join("seed-0"));
    let r1 = root.join("seed-1");
    let s1 = summary(
        "synthetic robust",
        vec![
            result(&r1, StageKind::Probe, Init::Ranli, |i| i < 80, |i| i < 40),
            result(&r1, StageKind::full(), Init::Ranli, |i| i < 70, |i| i < 30),
            result(&r1, StageKind::full(), Init::Roli, |i| i < 68 || (70..80).contains(&i), |i| i < 35),
        ],
    );
    (s0, s1)
}

#[test]
fn several_seeds_pool_means_t_intervals_and_the_per_example_sign_flip_test() {
    let tmp = tempfile::tempdir().unwrap();
    let (s0, mut s1) = two_seeds(tmp.path());
    // A failed check in seed 1's probe marks the pooled probe row.
    let failed = crate::results::Check {
        name: "zero-gradient".into(),
        on: "pgd".into(),
        passed: false,
        detail: "2 zero gradients".into(),
        flag: None,
    };
    crate::integrity::apply(&mut s1.results[0].test, vec![failed]);
    let standard = summary(
        "synthetic standard",
        vec![result(&tmp.path().join("standard"), StageKind::full(), Init::Ranli, |i| i < 72, |i| i < 5)],
    );
    let main: Vec<SeedEntry> = vec![(Some(0), &s0, None), (Some(1), &s1, None)];
    let std_runs: Vec<SeedEntry> = vec![(Some(0), &standard, None)];
    let out = tmp.path().join("report");
    let paths = write_study_report(&main, Some(&std_runs), &out, &ReportOptions::default()).unwrap();
    let md = std::fs::read_to_string(&paths.markdown).unwrap();
    assert!(md.contains("- seeds: 0, 1") && md.contains("paired sign-flip"), "{md}");
    assert!(md.contains("| method | init | seeds | clean % [95% CI]"), "{md}");
    // PGD 33 and 35 %: mean 34, half-width t(0.975, 1) · 0.01414 / √2 = 12.7 pp.
    assert!(md.contains("| full | RoLI | 2 | 78.0 [78.0, 78.0] | 34.0 [21.3, 46.7] | 100 |"), "{md}");
    // Clean: the same 10 vs 2 discordant examples in both seeds give d = ±2 on the same 12
    // examples, so p stays McNemar's 0.0386 (a pooled McNemar on 20 vs 4 would claim 0.0015).
    // PGD: d = (2, 2, 2, 1, 1): only the all-plus and all-minus signs reach |T| = 8, p = 2/32.
    assert!(
        md.contains(
            "| full | +8.0 [+8.0, +8.0] (p = 0.0386; 20/4; S = 2) | +4.0 [-8.7, +16.7] (p = 0.0625; 8/0; S = 2) |"
        ),
        "{md}"
    );
    assert!((stats::mcnemar_exact(20, 4) - 0.0015).abs() < 1e-4);
    // The unreliable seed marks the pooled row and is listed by seed.
    let probe_row = md.lines().find(|l| l.starts_with("| linear |")).unwrap();
    assert!(probe_row.contains("**unreliable**"), "{probe_row}");
    assert!(md.contains("- seed 1 linear: **unreliable** — 1 failed, 0 passed"), "{md}");
    // Finding 1 pairs the standard run with seed 0, the seed both ran: McNemar.
    assert!(md.contains("robust full/RanLI vs standard full/RanLI, PGD: +25.0 pp"), "{md}");
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&paths.results_json).unwrap()).unwrap();
    let pgd = &j["roli_minus_ranli"][0][1][1];
    assert_eq!(pgd["seeds"], 2);
    assert_eq!(pgd["per_seed"], serde_json::json!([[0, 0.03], [1, 0.05]]));
    assert_eq!(j["records"].as_array().unwrap().iter().filter(|r| r["seed"] == 1).count(), 3 * N);
}
