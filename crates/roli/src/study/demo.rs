//! The main job (`roli demo`): the RoLI study of `configs/demo.toml` (embedded) on the robust
//! backbone — over the config's seeds (`seeds`, [`super::seeds`]) — and on its standard-trained
//! twin (the paper's finding 1; the first seed only), a robustness curve, and the report (table
//! with CIs, paired tests pooled over seeds, findings, Figure 1).
use crate::config::{RunConfig, StageKind};
use crate::pipeline;
use crate::plan::StudyPlan;
use crate::report::{self, AaPoint, EpsCurve, ReportOptions, ReportPaths};
use crate::results::{MethodResult, Summary};
use crate::study::seeds::{self, Outcome, SeedPlans};
use std::cell::Cell;
use std::path::Path;
use std::time::Instant;

/// The embedded default study.
pub const DEMO_TOML: &str = include_str!("../../../../configs/demo.toml");

/// How much data and how many epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Budget {
    /// Minutes on 2 CPU cores (the defaults of configs/demo.toml).
    Quick,
    /// More data and epochs: the properly converged study (about an hour on 2 cores).
    Full,
}

/// Overrides that turn the quick demo into the full one.
pub const FULL_BUDGET: &[&str] = &[
    "data.train_limit=20000",
    "data.val_limit=2000",
    "data.test_limit=5000",
    "eval.aa_limit=500",
    "eval.aa_methods=[]",
];
/// Epochs of every stage (probe and each method's) under `--budget full`.
pub const FULL_EPOCHS: u32 = 10;

/// The config of a budget: the quick one is the file as written. The full one runs the file's
/// first seed only (its study alone takes about an hour), unless the command line chooses seeds.
pub fn budget_config(toml: &str, origin: &str, budget: Budget, set: &[String]) -> anyhow::Result<RunConfig> {
    let mut overrides: Vec<String> =
        if budget == Budget::Full { FULL_BUDGET.iter().map(|s| s.to_string()).collect() } else { vec![] };
    overrides.extend(set.iter().cloned());
    let mut cfg = RunConfig::from_toml_str(toml, &overrides, origin)?;
    if budget == Budget::Full && !set.iter().any(|o| crate::seeds::seed_key(o).is_some()) {
        cfg.seed = cfg.seed_list()[0];
        cfg.seeds.clear();
    }
    if budget == Budget::Full {
        for s in std::iter::once(&mut cfg.probe)
            .chain([&mut cfg.finetune.ranli, &mut cfg.finetune.roli])
            .chain(cfg.finetune.per_method.values_mut())
        {
            s.epochs = s.epochs.max(FULL_EPOCHS);
        }
    }
    Ok(cfg)
}

/// The two studies of the demo: the robust backbone over its seeds and, unless skipped, its
/// standard twin on the first seed.
pub struct DemoPlan {
    pub robust: SeedPlans,
    pub standard: Option<StudyPlan>,
}

impl DemoPlan {
    /// Resolves the demo's config; `with_standard = false` skips the twin (finding 1 then unjudged).
    pub fn resolve(cfg: &RunConfig, with_standard: bool) -> DemoPlan {
        let first = cfg.seed_list()[0];
        let standard =
            cfg.standard_twin().filter(|_| with_standard).map(|c| StudyPlan::resolve(&c.for_seed(first, true)));
        DemoPlan { robust: SeedPlans::resolve(cfg), standard }
    }
    /// Models trained in all: every stage of each study and seed.
    pub fn model_count(&self) -> usize {
        self.robust.model_count() + self.standard.as_ref().map_or(0, |s| s.model_count())
    }
}

/// What the demo produced.
pub struct DemoOutcome {
    pub robust: Outcome,
    pub standard: Option<Summary>,
    pub report: ReportPaths,
}

/// Models done across both backbones, with an ETA from the average time of the models trained
/// in this invocation (reused ones cost nothing).
struct Progress {
    total: usize,
    start: Instant,
    done: Cell<usize>,
    trained: Cell<(usize, f64)>,
}

impl Progress {
    fn line(&self, r: &MethodResult, reused: bool) -> String {
        self.done.set(self.done.get() + 1);
        if !reused {
            let (k, s) = self.trained.get();
            self.trained.set((k + 1, s + r.seconds));
        }
        let (k, s) = self.trained.get();
        let eta = if k > 0 {
            format!(", ETA {:.1} min", s / k as f64 * (self.total - self.done.get()) as f64 / 60.0)
        } else {
            String::new()
        };
        format!(
            "roli demo: {}/{} models ({}{}: clean {:.1}%, PGD {:.1}%{}), {:.1} min elapsed{eta}",
            self.done.get(),
            self.total,
            r.label(),
            if reused { ", reused" } else { "" },
            100.0 * r.test.clean_accuracy,
            100.0 * r.test.pgd_accuracy,
            if r.test.is_reliable() { "" } else { " unreliable" },
            self.start.elapsed().as_secs_f64() / 60.0
        )
    }
}

/// Runs both studies in `out/robust` (one folder per seed when several) and `out/standard`, the
/// eps curve (first seed) and the report in `out`.
pub fn run(plan: &DemoPlan, out: &Path) -> anyhow::Result<DemoOutcome> {
    let (robust_dir, standard_dir) = (out.join("robust"), out.join("standard"));
    let runs = 1 + plan.standard.is_some() as usize;
    let first = plan.robust.first();
    eprintln!(
        "roli demo: {} models × {runs} backbones{}, then the report in {}",
        first.model_count(),
        if plan.robust.is_multi() {
            format!(" (robust: {} seeds, {} models)", plan.robust.plans.len(), plan.robust.model_count())
        } else {
            String::new()
        },
        out.display()
    );
    let progress =
        Progress { total: plan.model_count(), start: Instant::now(), done: Cell::new(0), trained: Cell::new((0, 0.0)) };
    let on_model = |r: &MethodResult, reused: bool| eprintln!("{}", progress.line(r, reused));
    eprintln!("[1/{}] robust backbone {}", runs + 1, first.model.backbone);
    let mut robust = seeds::run_with(&plan.robust, &robust_dir, &on_model)?;
    let standard = match &plan.standard {
        Some(sp) => {
            eprintln!("[2/{}] standard backbone {}", runs + 1, sp.model.backbone);
            Some(pipeline::run_with(sp, &standard_dir, &on_model)?)
        }
        None => None,
    };
    eprintln!("[{}/{}] robustness curve and report", runs + 1, runs + 1);
    let (curve, curve_aa) = match &mut robust {
        Outcome::One(s) => eps_curves(first, s, &robust_dir)?,
        Outcome::Seeds(p) => {
            let dir = robust_dir.join(&p.seeds[0].dir);
            let c = eps_curves(first, &mut p.seeds[0].summary, &dir)?;
            // The curve's checks joined the first seed's results: pool again.
            *p = seeds::pool(std::mem::take(&mut p.seeds), seeds::CONFIDENCE);
            seeds::write_summary(&robust_dir, p)?;
            c
        }
    };
    let opts =
        ReportOptions { title: first.name.clone(), eps_curve: &curve, eps_curve_aa: &curve_aa, ..Default::default() };
    let seed_dirs: Vec<std::path::PathBuf> = match &robust {
        Outcome::One(_) => vec![robust_dir.clone()],
        Outcome::Seeds(p) => p.seeds.iter().map(|r| robust_dir.join(&r.dir)).collect(),
    };
    let main: Vec<report::SeedEntry> = match &robust {
        Outcome::One(s) => vec![(None, s, Some(seed_dirs[0].as_path()))],
        Outcome::Seeds(p) => {
            p.seeds.iter().zip(&seed_dirs).map(|(r, d)| (Some(r.seed), &r.summary, Some(d.as_path()))).collect()
        }
    };
    let standard_seed = plan.robust.is_multi().then(|| plan.robust.plans[0].0);
    let standard_runs = standard.as_ref().map(|s| vec![(standard_seed, s, Some(standard_dir.as_path()))]);
    let report = report::write_study_report(&main, standard_runs.as_deref(), out, &opts)?;
    crate::manifest::write_demo(plan, out)?;
    Ok(DemoOutcome { robust, standard, report })
}

/// The eps curve of the probe and full finetuning (the configured eps values; none: no curve),
/// with each model's AutoAttack accuracy at the training eps where AutoAttack ran. The curve's
/// checks (monotone in eps, eps = 0 equals clean) join those of the model's test, rewritten into
/// its `result.json` and the run's `summary.json`.
fn eps_curves(plan: &StudyPlan, summary: &mut Summary, dir: &Path) -> anyhow::Result<(Vec<EpsCurve>, Vec<AaPoint>)> {
    let (mut curve, mut aa) = (Vec::new(), Vec::new());
    if plan.eval.eps_curve.is_empty() {
        return Ok((curve, aa));
    }
    let data = pipeline::prepare_data(&plan.data)?;
    let src = pipeline::source(&plan.model)?;
    let on_curve = |k: StageKind| k.is_probe() || k.as_str() == crate::peft::full::NAME;
    for r in summary.results.iter_mut().filter(|r| on_curve(r.method)) {
        // The report's run names ("linear", "full/RoLI"), so that the curves match its tables.
        let label = crate::report::run_name(r.method, r.init);
        if let (Some(acc), Some(n)) = (r.test.aa_accuracy, r.test.aa_n) {
            aa.push(AaPoint { label: label.clone(), eps: plan.threat.threat.eps(), accuracy: acc, n });
        }
        let c = pipeline::eps_curve(plan, &src, &data, r, 500)?;
        crate::integrity::apply(&mut r.test, c.checks());
        crate::artifacts::write_json(&r.dir.join(crate::artifacts::RESULT), &*r)?;
        curve.push((label, c.points));
    }
    crate::artifacts::write_json(&dir.join(crate::artifacts::SUMMARY), &*summary)?;
    Ok((curve, aa))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_config_and_full_budget_parse() {
        let quick = RunConfig::from_toml_str(DEMO_TOML, &[], "demo").unwrap();
        // Both backbones of the demo are committed zoo entries.
        let own = crate::zoo::list_own();
        assert!(own.contains(&quick.model.backbone), "{} not in zoo/ ({own:?})", quick.model.backbone);
        assert!(own.contains(quick.model.standard_backbone.as_ref().unwrap()));
        assert_eq!(quick.finetune.methods.len(), 5, "the demo runs every finetuning method of the paper");
        assert!(quick.eval.aa_limit.is_some() && quick.data.test_limit.is_some());
        let full = budget_config(DEMO_TOML, "demo", Budget::Full, &[]).unwrap();
        assert!(full.data.train_limit > quick.data.train_limit && full.probe.epochs > quick.probe.epochs);
        // Every stage gets the full epochs, including per-method overrides, and AA runs on every model.
        assert!(!quick.finetune.per_method.is_empty());
        assert!(full.finetune.per_method.values().all(|s| s.epochs == FULL_EPOCHS));
        assert!(full.eval.aa_methods.is_empty() && !quick.eval.aa_methods.is_empty());
        // The quick demo pools three seeds; the full one runs the first unless told otherwise.
        assert_eq!((quick.seed_list(), full.seed_list()), (vec![0, 1, 2], vec![0]));
        let full2 = budget_config(DEMO_TOML, "demo", Budget::Full, &["seeds=[0,1]".into()]).unwrap();
        assert_eq!(full2.seed_list(), vec![0, 1]);
        let plan = DemoPlan::resolve(&quick, true);
        assert_eq!(plan.robust.plans.iter().map(|p| p.1.model_count()).collect::<Vec<_>>(), [11, 7, 7]);
        assert!(plan.robust.plans[1].1.eval.attacks.len() == 1 && plan.robust.plans[1].1.eval.eps_curve.is_empty());
        assert!(StageKind::all().all(|k| full.eval.runs_aa(k)));
        let k = |n| StageKind::named(n).unwrap();
        assert!(quick.eval.runs_aa(k("full")) && !quick.eval.runs_aa(k("lora")));
    }

    #[test]
    fn the_standard_twin_differs_only_in_backbone_and_title() {
        let cfg = RunConfig::from_toml_str(DEMO_TOML, &[], "demo").unwrap();
        let plan = DemoPlan::resolve(&cfg, true);
        let twin = plan.standard.as_ref().expect("the demo names a standard twin");
        assert_eq!(twin.model.backbone, *cfg.model.standard_backbone.as_ref().unwrap());
        assert_ne!(twin.model.backbone, plan.robust.first().model.backbone);
        let first = plan.robust.first();
        assert_eq!(twin.stages, first.stages);
        assert_eq!(twin.eval, first.eval);
        assert!(twin.name.ends_with("(standard backbone)"));
        assert_eq!(plan.model_count(), plan.robust.model_count() + first.model_count());
        assert!(DemoPlan::resolve(&cfg, false).standard.is_none());
    }
}
