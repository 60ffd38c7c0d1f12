//! Accuracies with intervals, paired comparisons, and the findings, all computed from the runs'
//! numbers: nothing here knows what the paper concluded, only what it claimed.
use super::pooled::{mean_t_interval, pooled_differences, sign_flip_exact};
use super::records::{Loaded, RunRecords, SeedLoaded};
use super::stats::{wilson, Paired};
use crate::config::{Init, StageKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// What is measured on each test example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Clean,
    Pgd,
    Aa,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::Clean, Metric::Pgd, Metric::Aa];
    pub fn label(self) -> &'static str {
        match self {
            Metric::Clean => "clean",
            Metric::Pgd => "PGD",
            Metric::Aa => "AA",
        }
    }
}

/// The report's confidence level: the intervals' confidence, its normal z, and α = 1 − confidence
/// for the tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    pub confidence: f64,
    pub z: f64,
    pub alpha: f64,
}

impl Level {
    pub fn new(confidence: f64) -> Self {
        // Rounded so 0.95 shows α = 0.05, not 0.050000000000000044.
        let alpha = ((1.0 - confidence) * 1e12).round() / 1e12;
        Level { confidence, z: super::stats::z_for(confidence), alpha }
    }
}

/// An accuracy with its interval (fractions): k/n with the Wilson interval over examples for one
/// seed; over several seeds the mean of the per-seed accuracies with a Student-t interval over
/// the seeds (k and n then total over the seeds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub k: usize,
    pub n: usize,
    pub accuracy: f64,
    pub low: f64,
    pub high: f64,
    /// Seeds behind the estimate (1: Wilson over examples; ≥ 2: t over seeds).
    pub seeds: usize,
}

impl Estimate {
    pub fn new(k: usize, n: usize, z: f64) -> Self {
        let (low, high) = wilson(k, n, z);
        Estimate { k, n, accuracy: if n == 0 { 0.0 } else { k as f64 / n as f64 }, low, high, seeds: 1 }
    }

    /// Per-seed `(k, n)` pooled: one seed is [`Estimate::new`]; several give the mean accuracy
    /// with a t-interval over the seeds, clamped to [0, 1].
    pub fn over_seeds(per_seed: &[(usize, usize)], level: Level) -> Option<Self> {
        match per_seed {
            [] => None,
            &[(k, n)] => Some(Self::new(k, n, level.z)),
            _ => {
                let accs: Vec<f64> =
                    per_seed.iter().map(|&(k, n)| if n == 0 { 0.0 } else { k as f64 / n as f64 }).collect();
                let (mean, low, high) = mean_t_interval(&accs, level.confidence);
                Some(Estimate {
                    k: per_seed.iter().map(|p| p.0).sum(),
                    n: per_seed.iter().map(|p| p.1).sum(),
                    accuracy: mean,
                    low: low.max(0.0),
                    high: high.min(1.0),
                    seeds: per_seed.len(),
                })
            }
        }
    }
}

/// One (method, init) of a summary with its three accuracies.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub method: StageKind,
    pub init: Init,
    pub clean: Estimate,
    pub pgd: Estimate,
    pub aa: Option<Estimate>,
    /// True when computed from per-example records, false when from result.json's rates.
    pub from_records: bool,
    /// False when an integrity check of the test failed: the robust numbers are `unreliable`.
    pub reliable: bool,
    /// The failed checks (`on: name`), empty when reliable.
    pub failed_checks: Vec<String>,
}

/// `(k, n)` of one seed's result on each metric: from its records, or its result.json rates.
fn seed_counts(l: &SeedLoaded<'_>) -> [Option<(usize, usize)>; 3] {
    let t = &l.result.test;
    let rate = |acc: f64, n: usize| ((acc * n as f64).round().max(0.0) as usize, n);
    match &l.records {
        Some(r) => {
            let n = r.pgd.len();
            [
                Some((r.pgd.values().filter(|v| v.1).count(), n)),
                Some((r.pgd.values().filter(|v| v.2).count(), n)),
                (!r.aa.is_empty()).then(|| (r.aa.values().filter(|&&v| v).count(), r.aa.len())),
            ]
        }
        None => [
            Some(rate(t.clean_accuracy, t.n)),
            Some(rate(t.pgd_accuracy, t.n)),
            t.aa_accuracy.zip(t.aa_n).map(|(a, n)| rate(a, n)),
        ],
    }
}

impl Row {
    /// The row of a (method, init) over its seeds (see [`Estimate::over_seeds`]); unreliable
    /// when any seed's test failed a check.
    pub fn of(l: &Loaded<'_>, level: Level) -> Self {
        let counts: Vec<[Option<(usize, usize)>; 3]> = l.seeds.iter().map(seed_counts).collect();
        let metric = |i: usize| -> Vec<(usize, usize)> { counts.iter().filter_map(|c| c[i]).collect() };
        let none = Estimate::new(0, 0, level.z);
        let multi = l.seeds.len() > 1;
        let failed_checks = l
            .seeds
            .iter()
            .filter(|s| !s.result.test.is_reliable())
            .flat_map(|s| {
                let tag = s.seed.filter(|_| multi).map(|x| format!("seed {x}: ")).unwrap_or_default();
                s.result.test.failure_names().into_iter().map(move |f| format!("{tag}{f}"))
            })
            .collect();
        Row {
            method: l.result.method,
            init: l.result.init,
            clean: Estimate::over_seeds(&metric(0), level).unwrap_or(none),
            pgd: Estimate::over_seeds(&metric(1), level).unwrap_or(none),
            aa: Estimate::over_seeds(&metric(2), level),
            from_records: l.seeds.iter().all(|s| s.records.is_some()),
            reliable: l.seeds.iter().all(|s| s.result.test.is_reliable()),
            failed_checks,
        }
    }

    pub fn get(&self, m: Metric) -> Option<Estimate> {
        match m {
            Metric::Clean => Some(self.clean),
            Metric::Pgd => Some(self.pgd),
            Metric::Aa => self.aa,
        }
    }

    /// `full/RoLI`, `linear`.
    pub fn name(&self) -> String {
        run_name(self.method, self.init)
    }
}

/// `linear` for the probe, `<method>/<RanLI|RoLI>` otherwise.
pub fn run_name(method: StageKind, init: Init) -> String {
    if method == StageKind::Probe {
        "linear".into()
    } else {
        format!("{}/{}", method.as_str(), init_label(init))
    }
}

pub fn init_label(init: Init) -> &'static str {
    match init {
        Init::Ranli => "RanLI",
        Init::Roli => "RoLI",
    }
}

/// Whether a directional claim ("a beats b") holds on these runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Significantly in the claimed direction.
    Holds,
    /// Significantly in the opposite direction.
    DoesNotHold,
    /// No significant difference (or mixed evidence).
    Inconclusive,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Holds => "holds",
            Verdict::DoesNotHold => "does not hold",
            Verdict::Inconclusive => "inconclusive",
        })
    }
}

/// Several verdicts about one claim: it holds when every part holds, does not hold when none
/// holds and at least one significantly contradicts it, and is inconclusive otherwise.
pub fn combine(vs: &[Verdict]) -> Verdict {
    if !vs.is_empty() && vs.iter().all(|v| *v == Verdict::Holds) {
        Verdict::Holds
    } else if !vs.contains(&Verdict::Holds) && vs.contains(&Verdict::DoesNotHold) {
        Verdict::DoesNotHold
    } else {
        Verdict::Inconclusive
    }
}

/// "a beats b" on one metric.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub metric: Metric,
    /// Accuracy of a minus accuracy of b (fraction; over the shared examples when paired).
    pub delta: f64,
    /// Paired counts when both runs have per-example records on shared examples; over several
    /// seeds the example-seed pairs of all of them (pooled discordant counts, as a
    /// Cochran–Mantel–Haenszel table would sum them).
    pub paired: Option<Paired>,
    /// Exact p-value (paired only): McNemar for one seed, the paired sign-flip test pooled per
    /// example over several (`super::pooled`), which equals McNemar for one seed.
    pub p: Option<f64>,
    pub verdict: Verdict,
    /// How the verdict was reached.
    pub test: String,
    /// Seeds paired (both runs on the same seed, with records); 0 when unpaired.
    #[serde(default)]
    pub seeds: usize,
    /// `(seed, a − b)` per paired seed (several seeds only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_seed: Vec<(u64, f64)>,
    /// t-interval of the per-seed differences over the seeds (training noise; several seeds only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed_interval: Option<(f64, f64)>,
}

fn flags(r: &RunRecords, m: Metric) -> BTreeMap<usize, bool> {
    match m {
        Metric::Clean => r.clean(),
        Metric::Pgd => r.pgd_robust(),
        Metric::Aa => r.aa.clone(),
    }
}

/// A paired seed: its id and `(index, a correct, b correct)` per shared example.
type SeedPairs = (Option<u64>, Vec<(usize, bool, bool)>);

/// b's entry paired with a's seed `seed`: the same seed, or — when one side is a one-study
/// report (seed unknown) — the other side's first seed.
fn partner<'a, 'b>(b: &'a Loaded<'b>, seed: Option<u64>, first: bool) -> Option<&'a SeedLoaded<'b>> {
    b.seed(seed).or_else(|| {
        let unknown = seed.is_none() || (b.seeds.len() == 1 && b.seeds[0].seed.is_none());
        b.seeds.first().filter(|_| unknown && first)
    })
}

/// Compares a with b on `metric`, paired on the seeds both ran (matched by seed) and the examples
/// both evaluated (matched by index): exact McNemar for one seed, the exact paired sign-flip
/// test pooled per example for several. Without records on a shared seed: whether the intervals
/// are disjoint, a conservative stand-in. None when either run lacks the metric.
pub fn compare(a: &Loaded<'_>, b: &Loaded<'_>, metric: Metric, level: Level) -> Option<Comparison> {
    let (ra, rb) = (Row::of(a, level), Row::of(b, level));
    let (ea, eb) = (ra.get(metric)?, rb.get(metric)?);
    let alpha = level.alpha;
    // Per shared seed: (seed, [(index, a, b)]).
    let per_seed: Vec<SeedPairs> = a
        .seeds
        .iter()
        .enumerate()
        .filter_map(|(i, sa)| {
            let sb = partner(b, sa.seed, i == 0)?;
            let (fx, fy) = (flags(sa.records.as_ref()?, metric), flags(sb.records.as_ref()?, metric));
            let pairs: Vec<(usize, bool, bool)> =
                fx.iter().filter_map(|(i, &u)| fy.get(i).map(|&v| (*i, u, v))).collect();
            (!pairs.is_empty()).then_some((sa.seed, pairs))
        })
        .collect();
    let paired = (!per_seed.is_empty())
        .then(|| Paired::from_pairs(per_seed.iter().flat_map(|(_, p)| p.iter().map(|&(_, x, y)| (x, y)))));
    let seeds = per_seed.len();
    let deltas: Vec<(u64, f64)> = if seeds > 1 {
        per_seed
            .iter()
            .map(|(s, p)| (s.unwrap_or(0), Paired::from_pairs(p.iter().map(|&(_, x, y)| (x, y))).delta()))
            .collect()
    } else {
        Vec::new()
    };
    let seed_interval = (seeds > 1).then(|| {
        let (_, lo, hi) = mean_t_interval(&deltas.iter().map(|d| d.1).collect::<Vec<_>>(), level.confidence);
        (lo, hi)
    });
    let (delta, p, verdict, test) = match paired {
        Some(pr) => {
            let (p, test) = if seeds == 1 {
                (
                    pr.p_value(),
                    format!(
                        "exact McNemar on {} paired examples ({} vs {} discordant), α = {alpha}",
                        pr.n, pr.only_a, pr.only_b
                    ),
                )
            } else {
                let d = pooled_differences(per_seed.iter().map(|(_, p)| p.as_slice()));
                (
                    sign_flip_exact(&d),
                    format!(
                        "exact paired sign-flip test over {} examples × {seeds} seeds (per example Σ over seeds of a − b; {} vs {} discordant example-seeds), α = {alpha}",
                        d.len(),
                        pr.only_a,
                        pr.only_b
                    ),
                )
            };
            let v = if p < alpha && pr.delta() > 0.0 {
                Verdict::Holds
            } else if p < alpha && pr.delta() < 0.0 {
                Verdict::DoesNotHold
            } else {
                Verdict::Inconclusive
            };
            (pr.delta(), Some(p), v, test)
        }
        None => {
            let v = if ea.low > eb.high {
                Verdict::Holds
            } else if ea.high < eb.low {
                Verdict::DoesNotHold
            } else {
                Verdict::Inconclusive
            };
            (
                ea.accuracy - eb.accuracy,
                None,
                v,
                "disjoint intervals (no paired per-example records on a shared seed)".to_string(),
            )
        }
    };
    Some(Comparison {
        a: ra.name(),
        b: rb.name(),
        metric,
        delta,
        paired,
        p,
        verdict,
        test,
        seeds,
        per_seed: deltas,
        seed_interval,
    })
}

/// One finding: a claim, its verdict (None: not evaluated) and the evidence lines.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub title: String,
    pub claim: String,
    pub verdict: Option<Verdict>,
    pub evidence: Vec<String>,
    pub comparisons: Vec<Comparison>,
}

pub fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

pub fn signed_pp(x: f64) -> String {
    format!("{:+.1}", 100.0 * x)
}

pub fn p_text(p: f64) -> String {
    if p >= 0.001 {
        format!("{p:.4}")
    } else {
        format!("{p:.1e}")
    }
}

/// `, 3 seeds` after a p-value pooled over several seeds.
fn seeds_note(c: &Comparison) -> String {
    if c.seeds > 1 {
        format!(", {} seeds", c.seeds)
    } else {
        String::new()
    }
}

/// `full/RoLI vs full/RanLI, PGD: +2.4 pp (p = 0.0123) → holds`.
pub fn describe(c: &Comparison) -> String {
    let stat = match c.p {
        Some(p) => format!("p = {}{}", p_text(p), seeds_note(c)),
        None => "no paired records; interval test".into(),
    };
    format!("{} vs {}, {}: {} pp ({stat}) → {}", c.a, c.b, c.metric.label(), signed_pp(c.delta), c.verdict)
}

fn find<'a, 'b>(ls: &'a [Loaded<'b>], method: StageKind, init: Init) -> Option<&'a Loaded<'b>> {
    ls.iter().find(|l| l.result.method == method && (method == StageKind::Probe || l.result.init == init))
}

/// The three findings (robust vs standard pretraining, linear probe vs full finetuning, RoLI vs
/// RanLI per method), each judged at level `alpha` on the given runs.
pub fn findings(main: &[Loaded<'_>], standard: Option<&[Loaded<'_>]>, level: Level) -> Vec<Finding> {
    vec![robust_vs_standard(main, standard, level), linear_vs_full(main, level), roli_vs_ranli(main, level)]
}

fn robust_vs_standard(main: &[Loaded<'_>], standard: Option<&[Loaded<'_>]>, level: Level) -> Finding {
    let title = "Robust vs standard pretraining".to_string();
    let claim = "With the same method and initialisation, the robustly pretrained backbone gives higher PGD robust accuracy than the standard one.".to_string();
    let Some(std_runs) = standard else {
        return Finding {
            title,
            claim,
            verdict: None,
            evidence: vec!["not evaluated: no standard-pretraining summary was given (ReportOptions::standard)".into()],
            comparisons: vec![],
        };
    };
    let comps: Vec<Comparison> = main
        .iter()
        .filter_map(|m| find(std_runs, m.result.method, m.result.init).and_then(|s| compare(m, s, Metric::Pgd, level)))
        .map(|mut c| {
            c.a = format!("robust {}", c.a);
            c.b = format!("standard {}", c.b);
            c
        })
        .collect();
    let mut evidence: Vec<String> = comps.iter().map(describe).collect();
    if comps.is_empty() {
        evidence.push("not evaluated: the two summaries share no (method, init)".into());
    }
    let verdict = (!comps.is_empty()).then(|| combine(&comps.iter().map(|c| c.verdict).collect::<Vec<_>>()));
    Finding { title, claim, verdict, evidence, comparisons: comps }
}

fn linear_vs_full(main: &[Loaded<'_>], level: Level) -> Finding {
    let title = "Linear probing vs full finetuning (RanLI)".to_string();
    let claim = "Adversarial linear probing reaches higher PGD robust accuracy than full adversarial finetuning from a random head (the paper: on some datasets).".to_string();
    let (Some(lin), Some(full)) =
        (find(main, StageKind::Probe, Init::Ranli), find(main, StageKind::full(), Init::Ranli))
    else {
        return Finding {
            title,
            claim,
            verdict: None,
            evidence: vec!["not evaluated: needs both the linear probe and full/RanLI results".into()],
            comparisons: vec![],
        };
    };
    let comps: Vec<Comparison> = Metric::ALL.iter().filter_map(|&m| compare(lin, full, m, level)).collect();
    let verdict = comps.iter().find(|c| c.metric == Metric::Pgd).map(|c| c.verdict);
    let mut evidence: Vec<String> = comps
        .iter()
        .map(|c| format!("{}{}", describe(c), if c.metric == Metric::Pgd { " (decides the claim)" } else { "" }))
        .collect();
    // The paper's wider claim: the probe against every other RanLI method, for context.
    for other in main.iter().filter(|l| {
        l.result.init == Init::Ranli && !(l.result.method.is_probe() || l.result.method == StageKind::full())
    }) {
        if let Some(c) = compare(lin, other, Metric::Pgd, level) {
            evidence.push(format!("context: {}", describe(&c)));
        }
    }
    Finding { title, claim, verdict, evidence, comparisons: comps }
}

fn roli_vs_ranli(main: &[Loaded<'_>], level: Level) -> Finding {
    let title = "RoLI vs RanLI per method".to_string();
    let claim = "Starting finetuning from the robust linear probe (RoLI) gives higher clean and PGD accuracy than a random head (RanLI), for each method.".to_string();
    let mut methods: Vec<StageKind> = Vec::new();
    for m in main.iter().map(|l| l.result.method).filter(|m| *m != StageKind::Probe) {
        if !methods.contains(&m) {
            methods.push(m);
        }
    }
    let mut evidence = Vec::new();
    let mut comps = Vec::new();
    let mut per_method = Vec::new();
    for m in methods {
        let (Some(roli), Some(ranli)) = (find(main, m, Init::Roli), find(main, m, Init::Ranli)) else {
            evidence.push(format!("{}: not evaluated (needs both RanLI and RoLI runs)", m.as_str()));
            continue;
        };
        let cs: Vec<Comparison> = Metric::ALL.iter().filter_map(|&k| compare(roli, ranli, k, level)).collect();
        let decisive: Vec<Verdict> = cs.iter().filter(|c| c.metric != Metric::Aa).map(|c| c.verdict).collect();
        let v = combine(&decisive);
        per_method.push(v);
        let parts: Vec<String> = cs
            .iter()
            .map(|c| {
                format!(
                    "{} {} pp{} {}",
                    c.metric.label(),
                    signed_pp(c.delta),
                    c.p.map(|p| format!(" (p = {}{})", p_text(p), seeds_note(c))).unwrap_or_default(),
                    c.verdict
                )
            })
            .collect();
        evidence.push(format!("{}: {} — {}", m.as_str(), v, parts.join("; ")));
        comps.extend(cs);
    }
    let verdict = (!per_method.is_empty()).then(|| combine(&per_method));
    Finding { title, claim, verdict, evidence, comparisons: comps }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_is_strict_about_holding() {
        use Verdict::*;
        assert_eq!(combine(&[Holds, Holds]), Holds);
        assert_eq!(combine(&[Holds, Inconclusive]), Inconclusive);
        assert_eq!(combine(&[Holds, DoesNotHold]), Inconclusive);
        assert_eq!(combine(&[DoesNotHold, Inconclusive]), DoesNotHold);
        assert_eq!(combine(&[Inconclusive]), Inconclusive);
        assert_eq!(combine(&[]), Inconclusive);
    }

    #[test]
    fn number_formats() {
        assert_eq!(pct(0.4237), "42.4");
        assert_eq!(signed_pp(0.0244), "+2.4");
        assert_eq!(signed_pp(-0.031), "-3.1");
        assert_eq!(p_text(0.038574), "0.0386");
        assert_eq!(p_text(2.3e-5), "2.3e-5");
    }
}
