//! `report.md`: the results table with intervals, the RoLI − RanLI deltas with paired tests,
//! the findings, the figures and every caveat the numbers carry.
use super::compare::{describe, init_label, p_text, pct, signed_pp, Comparison, Estimate, Finding, Metric, Row};
use super::records::Loaded;
use crate::config::{Init, StageKind};
use crate::results::Summary;
use std::fmt::Write;

/// Everything the page shows, computed beforehand.
pub struct Page<'a> {
    pub title: &'a str,
    /// The main study's first (or only) summary: name, backbone, data.
    pub summary: &'a Summary,
    /// `(label, summary)` per seed of the main study (label empty for one study).
    pub runs: &'a [(String, &'a Summary)],
    pub standard: Option<&'a Summary>,
    pub standard_runs: &'a [(String, &'a Summary)],
    /// The main study's seeds (empty for a one-study report).
    pub seeds: Vec<u64>,
    pub confidence: f64,
    pub alpha: f64,
    pub rows: &'a [(Row, &'a Loaded<'a>)],
    pub standard_rows: &'a [Row],
    pub deltas: &'a [(StageKind, Vec<Comparison>)],
    pub findings: &'a [Finding],
    pub figures: &'a [(String, String)],
    pub notes: &'a [String],
}

fn cell(e: Option<Estimate>) -> String {
    match e {
        Some(e) => format!("{} [{}, {}]", pct(e.accuracy), pct(e.low), pct(e.high)),
        None => "–".into(),
    }
}

fn n_cell(e: Option<Estimate>) -> String {
    e.map(|e| e.n.to_string()).unwrap_or_else(|| "–".into())
}

fn init_cell(method: StageKind, init: Init) -> &'static str {
    if method == StageKind::Probe {
        "– (stage 1)"
    } else {
        init_label(init)
    }
}

fn results_table(out: &mut String, rows: &[Row], loaded: Option<&[(Row, &Loaded<'_>)]>, ci: &str, pooled: bool) {
    if pooled {
        let _ = writeln!(out, "| method | init | seeds | clean % [{ci}] | PGD % [{ci}] | n | AA % [{ci}] | AA seeds | AA n | optimizer | eff. LR | epochs | best epoch per seed |");
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    } else {
        let _ = writeln!(out, "| method | init | clean % [{ci}] | PGD % [{ci}] | n | AA % [{ci}] | AA n | optimizer | eff. LR | epochs | best epoch |");
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    }
    for (i, r) in rows.iter().enumerate() {
        let (opt, lr, ep, best) = match loaded.and_then(|l| l.get(i)) {
            Some((_, l)) => {
                let m = l.result;
                let opt = match m.optimizer {
                    crate::train::optim::OptimizerKind::Sgd { .. } => "SGD",
                    crate::train::optim::OptimizerKind::AdamW { .. } => "AdamW",
                };
                (
                    opt.to_string(),
                    format!("{:.3e}", m.lr),
                    m.epochs.to_string(),
                    l.seeds
                        .iter()
                        .map(|s| s.result.best_epoch.map(|e| e.to_string()).unwrap_or_else(|| "–".into()))
                        .collect::<Vec<_>>()
                        .join("/"),
                )
            }
            None => ("–".into(), "–".into(), "–".into(), "–".into()),
        };
        // A failed integrity check marks the robust numbers (RobustBench's word).
        let mark = if r.reliable { "" } else { " **unreliable**" };
        let aa_mark = if r.aa.is_some() { mark } else { "" };
        if pooled {
            // n per seed: every seed tests the same examples.
            let per = |e: Estimate| e.n / e.seeds.max(1);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {}{mark} | {} | {}{aa_mark} | {} | {} | {opt} | {lr} | {ep} | {best} |",
                r.method.as_str(),
                init_cell(r.method, r.init),
                r.clean.seeds,
                cell(Some(r.clean)),
                cell(Some(r.pgd)),
                per(r.pgd),
                cell(r.aa),
                r.aa.map(|a| a.seeds.to_string()).unwrap_or_else(|| "–".into()),
                r.aa.map(|a| per(a).to_string()).unwrap_or_else(|| "–".into()),
            );
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}{mark} | {} | {}{aa_mark} | {} | {opt} | {lr} | {ep} | {best} |",
            r.method.as_str(),
            init_cell(r.method, r.init),
            cell(Some(r.clean)),
            cell(Some(r.pgd)),
            r.pgd.n,
            cell(r.aa),
            n_cell(r.aa),
        );
    }
}

fn delta_cell(c: Option<&Comparison>) -> String {
    match c {
        Some(c) if c.seeds > 1 => match (c.p, c.paired, c.seed_interval) {
            (Some(p), Some(pr), Some((lo, hi))) => format!(
                "{} [{}, {}] (p = {}; {}/{}; S = {})",
                signed_pp(c.delta),
                signed_pp(lo),
                signed_pp(hi),
                p_text(p),
                pr.only_a,
                pr.only_b,
                c.seeds
            ),
            _ => format!("{} (unpaired)", signed_pp(c.delta)),
        },
        Some(c) => match (c.p, c.paired) {
            (Some(p), Some(pr)) => format!("{} (p = {}; {}/{})", signed_pp(c.delta), p_text(p), pr.only_a, pr.only_b),
            _ => format!("{} (unpaired)", signed_pp(c.delta)),
        },
        None => "–".into(),
    }
}

/// Renders the page, section by section.
pub fn render(p: &Page<'_>) -> String {
    let ci = format!("{:.0}% CI", p.confidence * 100.0);
    let mut out = String::new();
    header(&mut out, p, &ci);
    results(&mut out, p, &ci);
    deltas(&mut out, p);
    findings(&mut out, p, &ci);
    figures(&mut out, p);
    integrity(&mut out, p);
    flags_and_notes(&mut out, p);
    out
}

/// Title, what ran, and how the statistics are computed.
fn header(out: &mut String, p: &Page<'_>, ci: &str) {
    let s = p.summary;
    let _ = writeln!(out, "# {}\n", p.title);
    let _ = writeln!(out, "- run: {}", s.name);
    let _ = writeln!(out, "- backbone: {}", s.backbone);
    let _ = writeln!(out, "- data: {} ({} test examples)", s.data, s.test_n);
    if let Some(st) = p.standard {
        let _ = writeln!(out, "- standard-pretraining comparison run: {} — backbone {}", st.name, st.backbone);
    }
    if p.seeds.len() > 1 {
        let list: Vec<String> = p.seeds.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "- seeds: {} (each seed's study is a run folder `seed-<s>/` with its own report-ready summary)",
            list.join(", ")
        );
        let _ = writeln!(
            out,
            "- statistics: accuracies are means over the seeds; {ci} = Student-t interval of the per-seed accuracies (S − 1 degrees of freedom; a row or AA column with one seed: Wilson interval over its examples). \
             p = exact two-sided paired sign-flip test on the same test examples: per example d = Σ over seeds of (a correct − b correct), signs flipped per example (an example's seeds stay together, because they share the image); for one seed it is the exact McNemar test. \
             It conditions on the trained models; the seeds' spread is the t-interval of the per-seed Δ shown with it. No multiplicity correction; significance level α = {}.\n",
            p.alpha
        );
        return;
    }
    let _ = writeln!(
        out,
        "- statistics: {ci} = Wilson score interval over the evaluated test examples (AutoAttack: its own subset, column AA n); \
         p = exact two-sided McNemar test on the examples both runs evaluated, matched by index; significance level α = {}.\n",
        p.alpha
    );
}

/// The results table of the run, and of the standard-pretraining run if any.
fn results(out: &mut String, p: &Page<'_>, ci: &str) {
    let _ = writeln!(out, "## Results\n");
    let rows: Vec<Row> = p.rows.iter().map(|(r, _)| r.clone()).collect();
    let pooled = p.seeds.len() > 1;
    if pooled {
        let _ = writeln!(
            out,
            "Pooled over seeds (per-seed values: `summary.json` → `pooled`, and each `seed-<s>/summary.json`).\n"
        );
    }
    results_table(out, &rows, Some(p.rows), ci, pooled);
    if !p.standard_rows.is_empty() {
        let _ = writeln!(out, "\nStandard (non-robust) pretraining:\n");
        results_table(out, p.standard_rows, None, ci, false);
    }
}

/// RoLI − RanLI per method, with McNemar p-values.
fn deltas(out: &mut String, p: &Page<'_>) {
    let _ = writeln!(out, "\n## RoLI − RanLI\n");
    if p.deltas.is_empty() {
        let _ = writeln!(out, "No method has both a RanLI and a RoLI run.");
        return;
    }
    if p.seeds.len() > 1 {
        let _ = writeln!(out, "Accuracy difference in percentage points, RoLI minus RanLI on the same test examples, averaged over the seeds both ran; then the t-interval of the per-seed differences, the exact paired sign-flip p-value, the discordant example-seeds pooled over the seeds (RoLI-only correct / RanLI-only correct) and the number of seeds S. Per-seed differences: `results.json` → `roli_minus_ranli`.\n");
    } else {
        let _ = writeln!(out, "Accuracy difference in percentage points, RoLI minus RanLI on the same test examples; in brackets the McNemar p-value and the discordant counts (RoLI-only correct / RanLI-only correct).\n");
    }
    let _ = writeln!(out, "| method | Δ clean (pp) | Δ PGD (pp) | Δ AA (pp) |");
    let _ = writeln!(out, "|---|---|---|---|");
    for (m, cs) in p.deltas {
        let get = |k: Metric| cs.iter().find(|c| c.metric == k);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            m.as_str(),
            delta_cell(get(Metric::Clean)),
            delta_cell(get(Metric::Pgd)),
            delta_cell(get(Metric::Aa))
        );
    }
}

/// The paper's claims judged on these runs.
fn findings(out: &mut String, p: &Page<'_>, ci: &str) {
    let _ = writeln!(out, "\n## Findings\n");
    let _ = writeln!(out, "Each claim of the paper is checked on these runs only: **holds** = significant in the claimed direction, **does not hold** = significant in the opposite direction, **inconclusive** = neither (or mixed). Small test subsets make \"inconclusive\" the honest answer more often than not.\n");
    for (i, f) in p.findings.iter().enumerate() {
        let verdict = f.verdict.map(|v| format!("**{v}**")).unwrap_or_else(|| "**not evaluated**".into());
        let _ = writeln!(out, "{}. **{}** — {verdict}. Claim: {}", i + 1, f.title, f.claim);
        for line in &f.evidence {
            let _ = writeln!(out, "   - {line}");
        }
    }
    let unpaired: Vec<&Comparison> =
        p.findings.iter().flat_map(|f| f.comparisons.iter()).filter(|c| c.p.is_none()).collect();
    if !unpaired.is_empty() {
        let _ = writeln!(
            out,
            "\nComparisons without per-example records use disjoint {ci}s instead of McNemar (weaker): {}.",
            unpaired.iter().map(|c| describe(c)).collect::<Vec<_>>().join("; ")
        );
    }
}

fn figures(out: &mut String, p: &Page<'_>) {
    if !p.figures.is_empty() {
        let _ = writeln!(out, "\n## Figures\n");
        for (caption, file) in p.figures {
            let _ = writeln!(out, "![{caption}]({file})\n");
        }
    }
}

/// The integrity checks of every model, the standard run's included: the failed ones with what
/// was seen, per model; a count of those passed.
fn integrity(out: &mut String, p: &Page<'_>) {
    let _ = writeln!(out, "\n## Integrity checks\n");
    let _ = writeln!(out, "A failed check marks the model's robust accuracies `unreliable` (see roli-attacks FLAGS.md); `roli report` then exits 1 unless `--allow-flags`.\n");
    let runs = p
        .runs
        .iter()
        .map(|(l, s)| (l.clone(), *s))
        .chain(p.standard_runs.iter().map(|(l, s)| (format!("standard {l}"), *s)));
    for (tag, s) in runs {
        for r in &s.results {
            let t = &r.test;
            let name = format!("{tag}{}", super::compare::run_name(r.method, r.init));
            let passed = t.checks.iter().filter(|c| c.passed).count();
            if t.is_reliable() {
                if t.checks.is_empty() {
                    let _ = writeln!(out, "- {name}: no checks recorded (a run written before the integrity gate)");
                } else {
                    let _ = writeln!(out, "- {name}: all {passed} checks passed");
                }
                continue;
            }
            let _ = writeln!(
                out,
                "- {name}: **{}** — {} failed, {passed} passed",
                crate::integrity::UNRELIABLE,
                t.checks.len() - passed
            );
            if t.checks.is_empty() {
                for f in &t.flags {
                    let _ = writeln!(out, "  - {f}");
                }
            }
            for c in t.failed_checks() {
                let _ = writeln!(out, "  - {} ({}): {}", c.name, c.on, c.detail);
            }
        }
    }
}

/// Notes of the runs (e.g. a faithful optimiser switch) and of the report itself.
fn flags_and_notes(out: &mut String, p: &Page<'_>) {
    let runs = p
        .runs
        .iter()
        .map(|(l, s)| (l.clone(), *s))
        .chain(p.standard_runs.iter().map(|(l, s)| (format!("standard {l}"), *s)));
    let noted: Vec<String> = runs
        .flat_map(|(tag, s)| {
            s.results
                .iter()
                .filter(|r| !r.notes.is_empty())
                .map(move |r| format!("{tag}{}: {}", super::compare::run_name(r.method, r.init), r.notes.join("; ")))
                .collect::<Vec<_>>()
        })
        .collect();
    if !noted.is_empty() || !p.notes.is_empty() {
        let _ = writeln!(out, "\n## Notes\n");
        for line in noted.iter().chain(p.notes.iter()) {
            let _ = writeln!(out, "- {line}");
        }
    }
}
