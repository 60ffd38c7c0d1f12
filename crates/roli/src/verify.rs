//! `roli verify DIR`: re-computes a run folder's results from its artifacts and diffs them with
//! what was recorded. First the manifest's hashes (config, each stage's best weights, head and
//! per-example records, every data split, the backbone) — a changed file is refused, one line per
//! problem. Then, per stage, the saved best model (`best.safetensors`) is rebuilt
//! ([`pipeline::load_trained`]) and its test evaluation re-run into a temp folder
//! ([`pipeline::evaluate_test`]); `--full` re-trains the stages into a temp folder instead and
//! also compares the best weights. The verdict lists the differing examples (index, field,
//! recorded, now) and the environment fields that differ between the run and now.
use crate::artifacts;
use crate::config::RunConfig;
use crate::manifest::{self, Manifest, TestExamples};
use crate::pipeline;
use crate::plan::{Stage, StudyPlan};
use crate::results::MethodResult;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// What to verify.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Only this stage (folder name `full_roli` or label `full/roli`); all when `None`.
    pub stage: Option<String>,
    /// Re-train the stages (slow) instead of re-evaluating the saved best weights.
    pub full: bool,
    /// Overrides the recorded config's device (`device="…"` form, e.g. `cpu`).
    pub device: Option<crate::device::DeviceChoice>,
}

/// One differing value.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub stage: String,
    /// `pgd`, `autoattack`, or `weights`.
    pub what: String,
    /// The example's index (None: a whole-evaluation field).
    pub index: Option<usize>,
    pub field: String,
    pub recorded: String,
    pub now: String,
}

/// The outcome: identical or not, and the text to print.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub identical: bool,
    pub differences: Vec<Difference>,
    pub text: String,
}

/// A temp folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> anyhow::Result<TempDir> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let p = std::env::temp_dir().join(format!("roli-verify-{}-{tag}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The per-example and whole-evaluation differences between two `test_examples.json`.
pub fn diff_examples(stage: &str, recorded: &TestExamples, now: &TestExamples) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut push = |what: &str, index: Option<usize>, field: &str, a: String, b: String| {
        out.push(Difference {
            stage: stage.into(),
            what: what.into(),
            index,
            field: field.into(),
            recorded: a,
            now: b,
        });
    };
    let (r, n) = (recorded.reports(), now.reports());
    if r.len() != n.len() {
        push("autoattack", None, "ran", (r.len() == 2).to_string(), (n.len() == 2).to_string());
    }
    for ((what, a), (_, b)) in r.iter().zip(n.iter()) {
        for (field, x, y) in [
            ("n", a.n.to_string(), b.n.to_string()),
            ("clean_accuracy", a.clean_accuracy.to_string(), b.clean_accuracy.to_string()),
            ("robust_accuracy", a.robust_accuracy.to_string(), b.robust_accuracy.to_string()),
            ("passes", format!("{:?}", a.passes), format!("{:?}", b.passes)),
        ] {
            if x != y {
                push(what, None, field, x, y);
            }
        }
        for (ea, eb) in a.examples.iter().zip(&b.examples) {
            let (va, vb) = (serde_json::to_value(ea).unwrap_or_default(), serde_json::to_value(eb).unwrap_or_default());
            let (Some(oa), Some(ob)) = (va.as_object(), vb.as_object()) else { continue };
            for (k, x) in oa {
                let y = ob.get(k).cloned().unwrap_or_default();
                if *x != y {
                    push(what, Some(ea.index), k, x.to_string(), y.to_string());
                }
            }
        }
    }
    out
}

/// The differences between two safetensors files of weights (per tensor: max |Δ|).
pub fn diff_weights(stage: &str, recorded: &Path, now: &Path) -> anyhow::Result<Vec<Difference>> {
    let read = |p: &Path| -> anyhow::Result<std::collections::BTreeMap<String, Tensor>> {
        Ok(Tensor::read_safetensors(p).with_context(|| format!("reading {}", p.display()))?.into_iter().collect())
    };
    let (a, b) = (read(recorded)?, read(now)?);
    let mut out = Vec::new();
    for (name, x) in &a {
        let d = match b.get(name) {
            None => Some(("absent".to_string(), "present".to_string())),
            Some(y) if x.size() != y.size() => Some((format!("{:?}", x.size()), format!("{:?}", y.size()))),
            Some(y) if !x.equal(y) => {
                let max = (x - y).abs().max().double_value(&[]);
                Some(("weights".to_string(), format!("max |Δ| = {max:.3e}")))
            }
            Some(_) => None,
        };
        if let Some((r, n)) = d {
            out.push(Difference {
                stage: stage.into(),
                what: "weights".into(),
                index: None,
                field: name.clone(),
                recorded: r,
                now: n,
            });
        }
    }
    Ok(out)
}

/// Whether `filter` names the stage (folder `full_roli` or label `full/roli`).
fn selected(stage: Stage, filter: Option<&str>) -> bool {
    filter.is_none_or(|f| f == stage.dir_name() || f == stage.label() || (stage == Stage::Probe && f == "probe"))
}

/// Verifies a folder with a manifest (a `run`, or a `demo`'s two runs; other commands: hashes).
pub fn verify(dir: &Path, opts: &VerifyOptions) -> anyhow::Result<Verdict> {
    let t0 = std::time::Instant::now();
    let m = Manifest::read(dir)?;
    let problems = m.changed_files(dir);
    if !problems.is_empty() {
        bail!("refusing to verify {}:\n{}", dir.display(), problems.join("\n"));
    }
    let mut v = match m.command.as_str() {
        "run" => verify_run(dir, &m, opts)?,
        // A demo's backbone folders and a multi-seed folder's seed folders: each verified in turn.
        "demo" | "seeds" => {
            let mut all = Verdict { identical: true, differences: Vec::new(), text: String::new() };
            let suffix = format!("/{}", manifest::MANIFEST);
            for sub in m.files.keys().filter_map(|k| k.strip_suffix(&suffix)) {
                let v = verify(&dir.join(sub), opts)?;
                all.identical &= v.identical;
                all.differences.extend(v.differences);
                all.text += &format!("== {sub}\n{}", v.text);
            }
            all
        }
        other => Verdict {
            identical: true,
            differences: Vec::new(),
            text: format!("{other} folder: recorded hashes match; re-computation covers run and demo folders only\n"),
        },
    };
    v.text += &format!("verified {} in {:.1}s\n", dir.display(), t0.elapsed().as_secs_f64());
    Ok(v)
}

fn verify_run(dir: &Path, m: &Manifest, opts: &VerifyOptions) -> anyhow::Result<Verdict> {
    let overrides = crate::cli::run::with_device(&[], opts.device);
    let cfg = RunConfig::load(&dir.join(artifacts::RESOLVED_CONFIG), &overrides)?;
    let plan = StudyPlan::resolve(&cfg);
    let device = plan.model.device()?;
    let data = pipeline::prepare_data(&plan.data)?;
    let mut problems = Vec::new();
    for (name, ds) in [("train", &data.train), ("val", &data.val), ("test", &data.test)] {
        match m.splits.get(name) {
            Some(r) if r.fingerprint != ds.fingerprint() || r.n != ds.len() => problems.push(format!(
                "the {name} split of {} changed since the run: fingerprint {} (n={}) ≠ {} (n={})",
                data.spec,
                r.fingerprint,
                r.n,
                ds.fingerprint(),
                ds.len()
            )),
            Some(_) => {}
            None => problems.push(format!("the manifest records no {name} split")),
        }
    }
    let src = pipeline::source(&plan.model)?;
    let stages: Vec<_> = plan.stages.iter().filter(|s| selected(s.stage, opts.stage.as_deref())).cloned().collect();
    if stages.is_empty() {
        let names: Vec<String> = plan.stages.iter().map(|s| s.stage.dir_name()).collect();
        bail!(
            "--stage {}: no such stage in this run (stages: {})",
            opts.stage.as_deref().unwrap_or(""),
            names.join(", ")
        );
    }
    if !problems.is_empty() {
        bail!("refusing to verify {}:\n{}", dir.display(), problems.join("\n"));
    }
    let mut diffs = Vec::new();
    if opts.full {
        // Re-train the probe (RoLI needs its head) and the selected stages.
        let tmp = TempDir::new("full")?;
        let mut p = plan.clone();
        p.stages.retain(|s| s.stage == Stage::Probe || stages.iter().any(|t| t.stage == s.stage));
        pipeline::run(&p, &tmp.0)?;
        for s in &stages {
            let name = s.stage.dir_name();
            diffs.extend(diff_weights(
                &name,
                &dir.join(&name).join(artifacts::BEST),
                &tmp.0.join(&name).join(artifacts::BEST),
            )?);
            diffs.extend(diff_stage(dir, &tmp.0.join(&name), &name)?);
        }
    } else {
        for s in &stages {
            let name = s.stage.dir_name();
            let stage_dir = dir.join(&name);
            let mut r: MethodResult = artifacts::read_json(&stage_dir.join(artifacts::RESULT))?;
            r.dir = stage_dir.clone();
            let built = pipeline::load_trained(&plan.model, &src, &data, &r)?;
            if let Some(fp) = m.backbone_fingerprint.as_ref().filter(|fp| **fp != built.backbone_fingerprint) {
                bail!(
                    "refusing to verify {}:\nthe backbone {} changed since the run: fingerprint {fp} ≠ {}",
                    dir.display(),
                    src.describe(),
                    built.backbone_fingerprint
                );
            }
            let tmp = TempDir::new(&name)?;
            let eval_dir = tmp.0.join(&name);
            std::fs::create_dir_all(&eval_dir)?;
            pipeline::evaluate_test(
                &plan.eval,
                &plan.eval.attacks_for(s.stage.kind()),
                &built.model,
                device,
                data.test.as_ref(),
                &eval_dir,
            )?;
            diffs.extend(diff_stage(dir, &eval_dir, &name)?);
        }
    }
    Ok(render(m, device, stages.len(), opts.full, diffs))
}

/// The differences between a recorded stage's `test_examples.json` and a re-computed one.
fn diff_stage(dir: &Path, now_dir: &Path, name: &str) -> anyhow::Result<Vec<Difference>> {
    let recorded: TestExamples = artifacts::read_json(&dir.join(name).join(artifacts::TEST_EXAMPLES))?;
    let now: TestExamples = artifacts::read_json(&now_dir.join(artifacts::TEST_EXAMPLES))?;
    Ok(diff_examples(name, &recorded, &now))
}

/// The verdict's text: the differing examples, then the environment fields that differ.
pub fn render(m: &Manifest, device: tch::Device, stages: usize, full: bool, diffs: Vec<Difference>) -> Verdict {
    let env = manifest::env_differences(m, &manifest::build_info(), &manifest::environment(device));
    render_with(stages, full, diffs, &env)
}

/// [`render`] with the environment differences given (testable).
pub fn render_with(stages: usize, full: bool, diffs: Vec<Difference>, env: &[manifest::EnvDiff]) -> Verdict {
    let mut t = String::new();
    let how = if full { "re-trained and re-evaluated" } else { "re-evaluated" };
    if diffs.is_empty() {
        t += &format!("identical: {stages} stage(s) {how}, every recorded result reproduced\n");
    } else {
        t += &format!("{} difference(s) in {stages} stage(s) {how}:\n", diffs.len());
        t += &format!("{:<14} {:<10} {:>6}  {:<20} {:<24} {}\n", "stage", "what", "index", "field", "recorded", "now");
        for d in &diffs {
            let idx = d.index.map(|i| i.to_string()).unwrap_or_else(|| "-".into());
            t += &format!("{:<14} {:<10} {:>6}  {:<20} {:<24} {}\n", d.stage, d.what, idx, d.field, d.recorded, d.now);
        }
    }
    if env.is_empty() {
        t += "environment: same as recorded (build, device, threads, versions, CPU)\n";
        if !diffs.is_empty() {
            t += "the same environment does not explain the differences\n";
        }
    } else {
        t += "environment differs from the recorded one:\n";
        for e in env {
            t += &format!("  {:<18} recorded {:<30} now {}\n", e.field, e.recorded, e.now);
        }
        let why: Vec<&str> = env.iter().filter(|e| manifest::explains_float_changes(e)).map(|e| e.field).collect();
        if !diffs.is_empty() {
            if why.is_empty() {
                t += "none of these explains float-level changes (another build of roli: check git_commit)\n";
            } else {
                t += &format!("a different {} explains float-level changes\n", why.join(", "));
            }
        }
    }
    Verdict { identical: diffs.is_empty(), differences: diffs, text: t }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::EnvDiff;

    #[test]
    fn the_table_names_differences_and_the_environment_that_explains_them() {
        let d = Difference {
            stage: "full_roli".into(),
            what: "pgd".into(),
            index: Some(7),
            field: "robust".into(),
            recorded: "true".into(),
            now: "false".into(),
        };
        let v = render_with(2, false, vec![d.clone()], &[]);
        assert!(!v.identical);
        assert!(v.text.contains("full_roli") && v.text.contains("robust") && v.text.contains("     7"), "{}", v.text);
        assert!(v.text.contains("does not explain"), "{}", v.text);
        let env = [EnvDiff { field: "threads", recorded: "2".into(), now: "4".into() }];
        let v = render_with(2, false, vec![d], &env);
        assert!(v.text.contains("a different threads explains float-level changes"), "{}", v.text);
        let v = render_with(2, false, vec![], &env);
        assert!(v.identical && v.text.starts_with("identical"), "{}", v.text);
        assert!(v.text.contains("threads") && v.text.contains("recorded 2"), "{}", v.text);
    }

    #[test]
    fn stage_filters_take_folder_names_and_labels() {
        assert!(selected(Stage::Probe, None));
        assert!(selected(Stage::Probe, Some("linear")) && selected(Stage::Probe, Some("probe")));
        assert!(!selected(Stage::Probe, Some("full_roli")));
    }
}
