//! A study over several seeds (`seeds = [...]`, `--seeds`; the rules are in `crate::seeds`): each
//! seed's study is a normal run folder `DIR/seed-<s>/` (so `roli report`, `roli verify` and
//! `roli export` take it as it is), and `DIR/summary.json` pools them ([`SeedsSummary`]): every
//! seed's summary with its checks, and per (method, init) the mean over seeds with a t-interval.
//! One seed keeps the one-study layout (`DIR/linear/`, …), so earlier runs stay valid.
//!
//! Resuming: a seed whose `summary.json` holds every stage of its plan is taken as it is (no data
//! is loaded); the others resume stage by stage as a one-seed run does. Adding seeds to a finished
//! folder runs only the new ones; other settings are refused as for one study.
use crate::artifacts;
use crate::config::{Init, RunConfig, StageKind};
use crate::pipeline;
use crate::plan::StudyPlan;
use crate::report::pooled::mean_t_interval;
use crate::report::stats::{wilson, z_for};
use crate::results::{MethodResult, PooledRow, PooledValue, SeedRun, SeedsSummary, Summary, SEEDS_FORMAT};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// Confidence of the pooled intervals in `summary.json` (the report's default).
pub const CONFIDENCE: f64 = 0.95;

/// The folder of seed `s` inside a multi-seed folder, relative to it.
pub fn seed_dir_name(s: u64) -> PathBuf {
    PathBuf::from(format!("seed-{s}"))
}

/// The resolved studies of a config, one per seed.
#[derive(Debug, Clone)]
pub struct SeedPlans {
    /// `(seed, plan)` in the configured order; the first is the complete study.
    pub plans: Vec<(u64, StudyPlan)>,
    /// The whole config written out (with `seeds`): the multi-seed folder's `config.resolved.toml`.
    pub resolved_toml: String,
}

impl SeedPlans {
    pub fn resolve(cfg: &RunConfig) -> SeedPlans {
        let plans = cfg
            .seed_list()
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, StudyPlan::resolve(&cfg.for_seed(s, i == 0))))
            .collect();
        SeedPlans { plans, resolved_toml: cfg.to_resolved_toml() }
    }
    /// The first seed's (complete) study.
    pub fn first(&self) -> &StudyPlan {
        &self.plans[0].1
    }
    pub fn is_multi(&self) -> bool {
        self.plans.len() > 1
    }
    /// Models trained over all seeds.
    pub fn model_count(&self) -> usize {
        self.plans.iter().map(|(_, p)| p.model_count()).sum()
    }
}

/// What a run of [`SeedPlans`] produced.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// One seed: today's layout and summary.
    One(Summary),
    /// Several seeds, pooled.
    Seeds(SeedsSummary),
}

impl Outcome {
    /// `(label, summary)` of every study, for the integrity gate and tables.
    pub fn summaries(&self) -> Vec<(String, &Summary)> {
        match self {
            Outcome::One(s) => vec![(String::new(), s)],
            Outcome::Seeds(p) => p.seeds.iter().map(|r| (format!("seed {}", r.seed), &r.summary)).collect(),
        }
    }
}

/// Runs every seed (see the module doc), calling `on_model(result, reused)` after each model.
pub fn run_with(plans: &SeedPlans, out: &Path, on_model: &dyn Fn(&MethodResult, bool)) -> anyhow::Result<Outcome> {
    if !plans.is_multi() {
        return Ok(Outcome::One(pipeline::run_with(plans.first(), out, on_model)?));
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    check_folder(plans, out)?;
    artifacts::write_atomic(&out.join(artifacts::RESOLVED_CONFIG), plans.resolved_toml.as_bytes())?;
    let mut seeds = Vec::new();
    for (s, plan) in &plans.plans {
        let rel = seed_dir_name(*s);
        let dir = out.join(&rel);
        let summary = match finished(plan, &dir)? {
            Some(summary) => {
                tracing::info!("seed {s}: finished in {}, reused", dir.display());
                summary.results.iter().for_each(|r| on_model(r, true));
                summary
            }
            None => pipeline::run_with(plan, &dir, on_model)?,
        };
        seeds.push(SeedRun { seed: *s, dir: rel, summary });
    }
    let summary = pool(seeds, CONFIDENCE);
    write_summary(out, &summary)?;
    crate::manifest::write_seeds(plans, out)?;
    Ok(Outcome::Seeds(summary))
}

/// Writes a multi-seed folder's `summary.json`.
pub fn write_summary(out: &Path, s: &SeedsSummary) -> anyhow::Result<()> {
    artifacts::write_json(&out.join(artifacts::SUMMARY), s)
}

/// Refuses a folder that holds a multi-seed run of other settings (the seed list itself may grow
/// or shrink: each seed's folder checks its own settings). A one-seed run of the first seed's
/// exact settings (e.g. an earlier one-seed `roli demo`) is that seed's study: it moves into
/// `seed-<s>/` and is reused; a one-seed run of other settings is refused.
fn check_folder(plans: &SeedPlans, out: &Path) -> anyhow::Result<()> {
    let p = out.join(artifacts::RESOLVED_CONFIG);
    if out.join(crate::config::StageKind::PROBE_NAME).exists() {
        let (first, plan) = &plans.plans[0];
        let same = std::fs::read_to_string(&p).is_ok_and(|t| crate::config::same_settings(&t, &plan.resolved_toml));
        if !same {
            bail!(
                "{} holds a one-seed run of other settings than seed {first}'s; use another --out folder for several seeds",
                out.display()
            );
        }
        let dest = out.join(seed_dir_name(*first));
        tracing::info!(
            "{} holds seed {first}'s study as a one-seed run: moving it into {}",
            out.display(),
            dest.display()
        );
        std::fs::create_dir_all(&dest)?;
        for entry in std::fs::read_dir(out)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with("seed-") {
                continue;
            }
            std::fs::rename(entry.path(), dest.join(entry.file_name()))
                .with_context(|| format!("moving {} into {}", entry.path().display(), dest.display()))?;
        }
        return Ok(());
    }
    let Ok(text) = std::fs::read_to_string(&p) else { return Ok(()) };
    let without_seeds =
        |t: &str| toml::from_str::<RunConfig>(t).ok().map(|c| RunConfig { seeds: Vec::new(), ..c }.to_resolved_toml());
    let same = match (without_seeds(&text), without_seeds(&plans.resolved_toml)) {
        (Some(a), Some(b)) => crate::config::same_settings(&a, &b),
        _ => false,
    };
    if !same {
        bail!(
            "{} holds a run of different settings ({}); use another --out folder, or delete it to start over",
            out.display(),
            p.display()
        );
    }
    Ok(())
}

/// A seed's finished study: its `summary.json` when it holds every stage of the plan (settings
/// checked first: a folder of other settings is an error, never silently reused).
fn finished(plan: &StudyPlan, dir: &Path) -> anyhow::Result<Option<Summary>> {
    let p = dir.join(artifacts::SUMMARY);
    if !p.exists() {
        return Ok(None);
    }
    pipeline::check_same_run(plan, dir)?;
    let s: Summary = artifacts::read_json(&p)
        .with_context(|| format!("{} cannot be read; delete it to re-run the seed", p.display()))?;
    let complete = s.results.len() == plan.stages.len()
        && plan.stages.iter().zip(&s.results).all(|(st, r)| st.stage.kind() == r.method && st.stage.init() == r.init);
    Ok(complete.then_some(s))
}

/// The pooled summary of seeds' studies: per (method, init), in the order they first appear.
pub fn pool(seeds: Vec<SeedRun>, confidence: f64) -> SeedsSummary {
    let mut keys: Vec<(StageKind, Init)> = Vec::new();
    for r in seeds.iter().flat_map(|s| &s.summary.results) {
        if !keys.contains(&(r.method, r.init)) {
            keys.push((r.method, r.init));
        }
    }
    let pooled = keys
        .into_iter()
        .map(|(method, init)| {
            let rs: Vec<(u64, &MethodResult)> = seeds
                .iter()
                .filter_map(|s| {
                    s.summary.results.iter().find(|r| r.method == method && r.init == init).map(|r| (s.seed, r))
                })
                .collect();
            let n = rs.first().map(|(_, r)| r.test.n).unwrap_or(0);
            let value = |f: &dyn Fn(&MethodResult) -> Option<(f64, usize)>| {
                let per: Vec<(u64, f64, usize)> =
                    rs.iter().filter_map(|(s, r)| f(r).map(|(a, n)| (*s, a, n))).collect();
                pooled_value(&per, confidence)
            };
            let failed: Vec<String> = rs
                .iter()
                .flat_map(|(s, r)| r.test.failure_names().into_iter().map(move |f| format!("seed {s}: {f}")))
                .collect();
            PooledRow {
                method,
                init,
                clean: value(&|r| Some((r.test.clean_accuracy, r.test.n))).unwrap_or_else(|| empty(n)),
                pgd: value(&|r| Some((r.test.pgd_accuracy, r.test.n))).unwrap_or_else(|| empty(n)),
                aa: value(&|r| r.test.aa_accuracy.zip(r.test.aa_n)),
                reliable: rs.iter().all(|(_, r)| r.test.is_reliable()),
                failed_checks: failed,
            }
        })
        .collect();
    let first = seeds.first().map(|s| &s.summary);
    SeedsSummary {
        format: SEEDS_FORMAT.into(),
        name: first.map(|s| s.name.clone()).unwrap_or_default(),
        backbone: first.map(|s| s.backbone.clone()).unwrap_or_default(),
        data: first.map(|s| s.data.clone()).unwrap_or_default(),
        test_n: first.map(|s| s.test_n).unwrap_or(0),
        seeds,
        pooled,
    }
}

fn empty(n: usize) -> PooledValue {
    PooledValue { per_seed: vec![], n, mean: f64::NAN, low: f64::NAN, high: f64::NAN }
}

/// `(seed, accuracy, n)` per seed → mean with a t-interval (S ≥ 2, clamped to [0, 1]) or the
/// Wilson interval of the one seed; None without any seed.
pub fn pooled_value(per: &[(u64, f64, usize)], confidence: f64) -> Option<PooledValue> {
    let &(_, a0, n) = per.first()?;
    let (mean, low, high) = if per.len() == 1 {
        let (lo, hi) = wilson((a0 * n as f64).round() as usize, n, z_for(confidence));
        (a0, lo, hi)
    } else {
        let accs: Vec<f64> = per.iter().map(|p| p.1).collect();
        let (m, lo, hi) = mean_t_interval(&accs, confidence);
        (m, lo.max(0.0), hi.min(1.0))
    };
    Some(PooledValue { per_seed: per.iter().map(|p| (p.0, p.1)).collect(), n, mean, low, high })
}

/// Reads a folder's `summary.json`: a one-study [`Summary`] or a multi-seed [`SeedsSummary`].
pub fn read_any(dir: &Path) -> anyhow::Result<Outcome> {
    let p = dir.join(artifacts::SUMMARY);
    let bytes = std::fs::read(&p)
        .with_context(|| format!("no {} — is {} a finished `roli run` folder?", p.display(), dir.display()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", p.display()))?;
    if v.get("format").and_then(|f| f.as_str()) == Some(SEEDS_FORMAT) {
        let s =
            serde_json::from_value(v).with_context(|| format!("{} is not a roli multi-seed summary", p.display()))?;
        Ok(Outcome::Seeds(s))
    } else {
        let s = serde_json::from_value(v).with_context(|| format!("{} is not a roli summary", p.display()))?;
        Ok(Outcome::One(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[data]\nname = \"fashion-mnist\"\n[model]\nbackbone = \"lenet5_advertorch\"\n";

    fn plans(set: &[&str]) -> SeedPlans {
        let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        SeedPlans::resolve(&RunConfig::from_toml_str(MIN, &set, "t").unwrap())
    }

    #[test]
    fn one_seed_keeps_the_plain_plan_and_several_derive_their_streams() {
        let one = plans(&["seeds=[3]"]);
        assert!(!one.is_multi());
        assert_eq!(one.first().seed, 3);
        assert_eq!(one.first().resolved_toml, plans(&["seed=3"]).first().resolved_toml);
        let many = plans(&["seeds=[0,1]"]);
        assert!(many.is_multi() && many.model_count() == 2 * one.model_count());
        let (p0, p1) = (&many.plans[0].1, &many.plans[1].1);
        // Every random stream follows the seed; the data (test subset included) does not.
        assert_ne!(p0.model.init_seed, p1.model.init_seed);
        assert_ne!(p0.eval.seed, p1.eval.seed);
        assert_ne!(p0.stages[1].stage.seed(p0.seed), p1.stages[1].stage.seed(p1.seed));
        assert_eq!(p0.data, p1.data);
    }

    #[test]
    fn a_multi_seed_folder_refuses_other_settings_but_not_other_seeds() {
        let d = tempfile::tempdir().unwrap();
        let a = plans(&["seeds=[0,1]"]);
        check_folder(&a, d.path()).unwrap();
        artifacts::write_atomic(&d.path().join(artifacts::RESOLVED_CONFIG), a.resolved_toml.as_bytes()).unwrap();
        check_folder(&plans(&["seeds=[0,1,2]"]), d.path()).unwrap();
        let e = check_folder(&plans(&["seeds=[0,1]", "threat.eps=0.2"]), d.path()).unwrap_err().to_string();
        assert!(e.contains("different settings"), "{e}");
        // A one-seed run of other settings is refused; one of the first seed's settings moves in.
        let one = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(one.path().join("linear")).unwrap();
        let seed0 = &a.plans[0].1;
        let other = plans(&["seed=5"]);
        std::fs::write(one.path().join(artifacts::RESOLVED_CONFIG), &other.first().resolved_toml).unwrap();
        assert!(check_folder(&a, one.path()).unwrap_err().to_string().contains("one-seed run of other settings"));
        std::fs::write(one.path().join(artifacts::RESOLVED_CONFIG), &seed0.resolved_toml).unwrap();
        check_folder(&a, one.path()).unwrap();
        assert!(one.path().join("seed-0/linear").is_dir() && one.path().join("seed-0/config.resolved.toml").exists());
        assert!(!one.path().join("linear").exists());
    }

    #[test]
    fn pooled_values_use_t_over_seeds_and_wilson_for_one() {
        let v = pooled_value(&[(0, 0.5, 100), (1, 0.6, 100), (2, 0.7, 100)], 0.95).unwrap();
        assert!((v.mean - 0.6).abs() < 1e-12 && (v.high - 0.6 - 0.248_414).abs() < 1e-5, "{v:?}");
        assert_eq!(v.per_seed, vec![(0, 0.5), (1, 0.6), (2, 0.7)]);
        let one = pooled_value(&[(3, 0.8, 10)], 0.95).unwrap();
        assert!((one.low - 0.4902).abs() < 5e-4 && (one.high - 0.9433).abs() < 5e-4, "{one:?}");
        // Clamped to [0, 1].
        let wide = pooled_value(&[(0, 0.0, 10), (1, 0.2, 10)], 0.95).unwrap();
        assert_eq!(wide.low, 0.0);
        assert!(pooled_value(&[], 0.95).is_none());
    }
}
