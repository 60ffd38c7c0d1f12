//! `manifest.json`: what a `run`, `eval`, `pretrain` or `demo` output folder was made from and
//! where — roli's version and commit, tch/libtorch/CUDA versions, device, precision, attention,
//! threads, OS and CPU, seeds per stage, SHA-256 of the resolved config, of the backbone, of the
//! files a stage leaves (best weights, head, per-example records), of every data split and of the
//! evaluated example indices, pass counts and wall time per stage. `roli verify` (`crate::verify`)
//! checks a folder against it. Written atomically with [`artifacts::write_json`].
use crate::artifacts;
use anyhow::Context;
use roli_attacks::{EvalReport, PassCounts};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// The file name, in every output folder.
pub const MANIFEST: &str = "manifest.json";
/// `format` of the file.
pub const FORMAT: &str = "roli-manifest";
/// Schema version.
pub const VERSION: u32 = 1;
/// The files of a stage folder whose SHA-256 the manifest records (those present).
pub const STAGE_FILES: [&str; 4] =
    [artifacts::BEST, artifacts::HEAD_TENSORS, artifacts::HEAD_JSON, artifacts::TEST_EXAMPLES];

/// One output folder's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// The command that wrote the folder: `run`, `eval`, `pretrain`, `demo`.
    pub command: String,
    pub build: BuildInfo,
    pub environment: Environment,
    pub settings: Settings,
    /// SHA-256 of the resolved config text (`config.resolved.toml`), when the command has one.
    pub config_sha256: Option<String>,
    /// The backbone as described by the zoo.
    pub backbone: Option<String>,
    /// The backbone fingerprint (SHA-256 of its tensors, PEFT and head excluded).
    pub backbone_fingerprint: Option<String>,
    /// The dataset description.
    pub data: Option<String>,
    /// `train`/`val`/`test` (or the evaluated split): size and `Dataset::fingerprint()`.
    pub splits: BTreeMap<String, SplitRecord>,
    pub stages: Vec<StageRecord>,
    /// Other files of the folder (relative path → SHA-256).
    pub files: BTreeMap<String, String>,
}

/// Where the binary came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildInfo {
    pub roli_version: String,
    /// `unknown` when built outside git.
    pub git_commit: String,
    /// Uncommitted changes at build time (`None`: unknown).
    pub git_dirty: Option<bool>,
    pub tch_version: String,
    pub libtorch_version: String,
}

/// The machine and process (what may explain float-level differences).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// `cpu`, `cuda:0`.
    pub device: String,
    /// The accelerator's name (not read: `null`).
    pub device_name: Option<String>,
    /// CUDA runtime and cuDNN, when the device is CUDA.
    pub cuda: Option<String>,
    pub cudnn: Option<String>,
    /// libtorch intra-op threads.
    pub threads: i32,
    pub os: String,
    pub arch: String,
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: Option<String>,
}

/// Numerics settings of the command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// `None` when nothing trains (`eval`).
    pub train_precision: Option<String>,
    pub eval_precision: String,
    pub attention: String,
    /// The study's (or evaluation's) seed.
    pub seed: u64,
}

/// A data split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitRecord {
    pub n: usize,
    pub fingerprint: String,
}

/// A stage (or the single evaluation of `eval`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// The stage's folder relative to the manifest's (`linear`, `full_roli`, `train`, `.`).
    pub name: String,
    /// The training stream (`Stage::seed`); `None` when nothing trains.
    pub seed: Option<u64>,
    /// The test attacks' seed.
    pub eval_seed: u64,
    /// Wall time of training and test (`result.json`'s `seconds`), or of the evaluation.
    pub seconds: Option<f64>,
    /// Model passes per evaluation (`pgd`, `autoattack`, or `eps=…` of a sweep).
    pub passes: BTreeMap<String, PassCounts>,
    /// Evaluated examples per evaluation.
    pub n_evaluated: BTreeMap<String, usize>,
    /// SHA-256 of the evaluated example indices, per evaluation.
    pub indices_sha256: BTreeMap<String, String>,
    /// Files of the stage folder (name → SHA-256), of [`STAGE_FILES`] those present.
    pub files: BTreeMap<String, String>,
}

/// The per-example records of a stage's test (`test_examples.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestExamples {
    pub pgd: EvalReport,
    pub autoattack: Option<EvalReport>,
}

impl TestExamples {
    /// `pgd` and (when it ran) `autoattack`, by name.
    pub fn reports(&self) -> Vec<(&'static str, &EvalReport)> {
        std::iter::once(("pgd", &self.pgd)).chain(self.autoattack.as_ref().map(|a| ("autoattack", a))).collect()
    }
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(h.finalize()))
}

/// SHA-256 of example indices (decimal, comma-separated).
pub fn indices_sha256(indices: impl IntoIterator<Item = usize>) -> String {
    let s: Vec<String> = indices.into_iter().map(|i| i.to_string()).collect();
    sha256_hex(s.join(",").as_bytes())
}

/// The `model name` of a /proc/cpuinfo text.
pub fn cpu_model_from(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim().to_string())
    })
}

/// This build: version, commit (build-time environment of `build/rpath.rs`), tch, libtorch.
pub fn build_info() -> BuildInfo {
    BuildInfo {
        roli_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: option_env!("ROLI_GIT_COMMIT").unwrap_or("unknown").into(),
        git_dirty: option_env!("ROLI_GIT_DIRTY").and_then(|s| s.parse().ok()),
        tch_version: "0.24.0".into(),
        libtorch_version: option_env!("ROLI_LIBTORCH_VERSION").unwrap_or("unknown").into(),
    }
}

/// The environment of this process on `device`.
pub fn environment(device: tch::Device) -> Environment {
    let cuda = match device {
        tch::Device::Cuda(_) => roli_torch_ext::cuda_versions().ok().flatten(),
        _ => None,
    };
    let (cuda, cudnn) = match cuda {
        Some(v) => {
            let s = v.to_string();
            let mut parts = s.split(", ");
            let rt = parts.next().map(str::to_string);
            let dnn = parts.next().filter(|p| p.starts_with("cuDNN")).map(str::to_string);
            (rt, dnn)
        }
        None => (None, None),
    };
    Environment {
        device: crate::device::name(device),
        device_name: match device {
            tch::Device::Cuda(n) => roli_torch_ext::cuda_device_name(n).ok().flatten(),
            _ => None,
        },
        cuda,
        cudnn,
        threads: tch::get_num_threads(),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        cpu_model: std::fs::read_to_string("/proc/cpuinfo").ok().as_deref().and_then(cpu_model_from),
    }
}

/// A field that differs between two environments (or builds).
#[derive(Debug, Clone, PartialEq)]
pub struct EnvDiff {
    pub field: &'static str,
    pub recorded: String,
    pub now: String,
}

/// The build and environment fields that differ between `recorded` and `now`.
pub fn env_differences(recorded: &Manifest, now_build: &BuildInfo, now_env: &Environment) -> Vec<EnvDiff> {
    let (b, e) = (&recorded.build, &recorded.environment);
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let dirty = |d: Option<bool>| d.map(|d| d.to_string()).unwrap_or_else(|| "unknown".into());
    let pairs: Vec<(&'static str, String, String)> = vec![
        ("roli_version", b.roli_version.clone(), now_build.roli_version.clone()),
        ("git_commit", b.git_commit.clone(), now_build.git_commit.clone()),
        ("git_dirty", dirty(b.git_dirty), dirty(now_build.git_dirty)),
        ("tch_version", b.tch_version.clone(), now_build.tch_version.clone()),
        ("libtorch_version", b.libtorch_version.clone(), now_build.libtorch_version.clone()),
        ("device", e.device.clone(), now_env.device.clone()),
        ("device_name", opt(&e.device_name), opt(&now_env.device_name)),
        ("cuda", opt(&e.cuda), opt(&now_env.cuda)),
        ("cudnn", opt(&e.cudnn), opt(&now_env.cudnn)),
        ("threads", e.threads.to_string(), now_env.threads.to_string()),
        ("os", e.os.clone(), now_env.os.clone()),
        ("arch", e.arch.clone(), now_env.arch.clone()),
        ("cpu_model", opt(&e.cpu_model), opt(&now_env.cpu_model)),
    ];
    pairs
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(field, recorded, now)| EnvDiff { field, recorded, now })
        .collect()
}

/// Whether a difference can change floating-point results of the same code and inputs (another
/// machine, thread count, device or library), as opposed to another program.
pub fn explains_float_changes(d: &EnvDiff) -> bool {
    matches!(
        d.field,
        "threads" | "device" | "device_name" | "cuda" | "cudnn" | "cpu_model" | "arch" | "os" | "libtorch_version"
    )
}

/// The record of a stage folder `dir` (named `name` relative to the manifest).
pub fn stage_record(
    name: &str,
    dir: &Path,
    seed: Option<u64>,
    eval_seed: u64,
    seconds: Option<f64>,
) -> anyhow::Result<StageRecord> {
    let mut rec = StageRecord {
        name: name.into(),
        seed,
        eval_seed,
        seconds,
        passes: BTreeMap::new(),
        n_evaluated: BTreeMap::new(),
        indices_sha256: BTreeMap::new(),
        files: BTreeMap::new(),
    };
    let examples = dir.join(artifacts::TEST_EXAMPLES);
    if examples.exists() {
        let t: TestExamples = artifacts::read_json(&examples)?;
        for (k, r) in t.reports() {
            add_report(&mut rec, k, r);
        }
    }
    for f in STAGE_FILES {
        let p = dir.join(f);
        if p.exists() {
            rec.files.insert(f.to_string(), sha256_file(&p)?);
        }
    }
    Ok(rec)
}

/// Adds an evaluation's passes, size and index hash under `key`.
pub fn add_report(rec: &mut StageRecord, key: &str, r: &EvalReport) {
    rec.passes.insert(key.into(), r.passes);
    rec.n_evaluated.insert(key.into(), r.n);
    rec.indices_sha256.insert(key.into(), indices_sha256(r.examples.iter().map(|e| e.index)));
}

impl Manifest {
    /// A manifest of this build and process on `device`, to be filled in by the writer.
    pub fn new(command: &str, device: tch::Device, settings: Settings) -> Self {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            command: command.into(),
            build: build_info(),
            environment: environment(device),
            settings,
            config_sha256: None,
            backbone: None,
            backbone_fingerprint: None,
            data: None,
            splits: BTreeMap::new(),
            stages: Vec::new(),
            files: BTreeMap::new(),
        }
    }

    /// Records a split's size and fingerprint.
    pub fn split(&mut self, name: &str, ds: &dyn roli_data::Dataset) {
        self.splits.insert(name.into(), SplitRecord { n: ds.len(), fingerprint: ds.fingerprint() });
    }

    /// Records the SHA-256 of `dir/rel` (when present).
    pub fn file(&mut self, dir: &Path, rel: &str) -> anyhow::Result<()> {
        let p = dir.join(rel);
        if p.is_file() {
            self.files.insert(rel.into(), sha256_file(&p)?);
        }
        Ok(())
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        artifacts::write_json(&dir.join(MANIFEST), self)
    }

    /// Reads `dir/manifest.json`, refusing another format or a newer version.
    pub fn read(dir: &Path) -> anyhow::Result<Manifest> {
        let p = dir.join(MANIFEST);
        if !p.exists() {
            anyhow::bail!("{} has no {MANIFEST} (written by run, eval, pretrain and demo)", dir.display());
        }
        let m: Manifest = artifacts::read_json(&p)?;
        if m.format != FORMAT || m.version > VERSION {
            anyhow::bail!(
                "{}: format {} version {} is not a roli manifest this build reads",
                p.display(),
                m.format,
                m.version
            );
        }
        Ok(m)
    }

    /// One line per recorded file whose SHA-256 differs now (or that is gone), checking the
    /// config, every stage's files and the folder's other files.
    pub fn changed_files(&self, dir: &Path) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |path: &Path, what: String, recorded: &str| match sha256_file(path) {
            Ok(now) if now == recorded => {}
            Ok(now) => problems.push(format!("{what} changed since the run: sha256 {recorded} ≠ {now}")),
            Err(_) => problems.push(format!("{what} is missing ({})", path.display())),
        };
        if let Some(h) = &self.config_sha256 {
            if self.command == "run" {
                check(&dir.join(artifacts::RESOLVED_CONFIG), artifacts::RESOLVED_CONFIG.to_string(), h);
            }
        }
        for s in &self.stages {
            for (f, h) in &s.files {
                check(&dir.join(&s.name).join(f), format!("{f} of {}", s.name), h);
            }
        }
        for (f, h) in &self.files {
            check(&dir.join(f), f.clone(), h);
        }
        problems
    }
}

/// The settings of a study plan.
fn plan_settings(plan: &crate::plan::StudyPlan) -> Settings {
    Settings {
        train_precision: Some(plan.train_precision.as_str().into()),
        eval_precision: plan.eval.precision.as_str().into(),
        attention: plan.model.attention.as_str().into(),
        seed: plan.seed,
    }
}

/// `manifest.json` of a finished `roli run` folder (also each backbone's folder of `roli demo`).
pub fn write_run(
    plan: &crate::plan::StudyPlan,
    out: &Path,
    data: &crate::pipeline::PreparedData,
    src: &crate::zoo::BackboneSource,
    summary: &crate::results::Summary,
) -> anyhow::Result<()> {
    let mut m = Manifest::new("run", plan.model.device()?, plan_settings(plan));
    m.config_sha256 = Some(sha256_hex(plan.resolved_toml.as_bytes()));
    m.backbone = Some(src.describe());
    m.data = Some(data.spec.clone());
    for (name, ds) in [("train", &data.train), ("val", &data.val), ("test", &data.test)] {
        m.split(name, ds.as_ref());
    }
    for (spec, r) in plan.stages.iter().zip(&summary.results) {
        let name = spec.stage.dir_name();
        let dir = out.join(&name);
        if spec.stage == crate::plan::Stage::Probe {
            let head: crate::head::HeadArtifact = artifacts::read_json(&dir.join(artifacts::HEAD_JSON))?;
            m.backbone_fingerprint = Some(head.backbone_fingerprint);
        }
        m.stages.push(stage_record(&name, &dir, Some(spec.stage.seed(plan.seed)), plan.eval.seed, Some(r.seconds))?);
    }
    m.write(out)
}

/// `manifest.json` of a `roli eval` folder (its `results.json`).
pub fn write_eval(
    r: &crate::study::evaluate::EvalRequest,
    ds: &dyn roli_data::Dataset,
    backbone: String,
    backbone_fingerprint: &str,
    outcome: &crate::study::evaluate::EvalOutcome,
) -> anyhow::Result<()> {
    let settings = Settings {
        train_precision: None,
        eval_precision: r.precision.as_str().into(),
        attention: r.attention.as_str().into(),
        seed: r.seed,
    };
    let mut m = Manifest::new("eval", r.device, settings);
    m.backbone = Some(backbone);
    m.backbone_fingerprint = Some(backbone_fingerprint.into());
    m.data = Some(r.data.clone());
    m.split(&r.split.to_string(), ds);
    let mut rec = StageRecord {
        name: ".".into(),
        seed: None,
        eval_seed: r.seed,
        seconds: None,
        passes: BTreeMap::new(),
        n_evaluated: BTreeMap::new(),
        indices_sha256: BTreeMap::new(),
        files: BTreeMap::new(),
    };
    let reports: Vec<&EvalReport> = match outcome {
        crate::study::evaluate::EvalOutcome::Single(rep) => vec![rep],
        crate::study::evaluate::EvalOutcome::Sweep(sw) => sw.reports.iter().collect(),
    };
    for rep in &reports {
        let key = if reports.len() == 1 { rep.attack.clone() } else { format!("{} eps={}", rep.attack, rep.eps) };
        add_report(&mut rec, &key, rep);
    }
    rec.seconds = Some(reports.iter().map(|r| r.seconds).sum());
    m.stages.push(rec);
    m.file(&r.out, "results.json")?;
    m.write(&r.out)
}

/// `manifest.json` of a `roli pretrain` folder: the training stage in `train/`, the saved
/// classifier's files in the folder.
pub fn write_pretrain(
    plan: &crate::plan::StudyPlan,
    stage_seed: u64,
    eval: &crate::plan::EvalPlan,
    data: &crate::pipeline::PreparedData,
    backbone_fingerprint: &str,
    seconds: f64,
    out: &Path,
) -> anyhow::Result<()> {
    let mut m = Manifest::new("pretrain", plan.model.device()?, plan_settings(plan));
    m.config_sha256 = Some(sha256_hex(plan.resolved_toml.as_bytes()));
    m.backbone = Some(plan.model.backbone.clone());
    m.backbone_fingerprint = Some(backbone_fingerprint.into());
    m.data = Some(data.spec.clone());
    for (name, ds) in [("train", &data.train), ("val", &data.val), ("test", &data.test)] {
        m.split(name, ds.as_ref());
    }
    m.stages.push(stage_record("train", &out.join("train"), Some(stage_seed), eval.seed, Some(seconds))?);
    for e in std::fs::read_dir(out)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name != MANIFEST {
            m.file(out, &name)?;
        }
    }
    m.write(out)
}

/// `manifest.json` of a `roli demo` folder: the two backbones' run folders (each with its own
/// manifest, whose hash is recorded here) and the report.
pub fn write_demo(plan: &crate::study::demo::DemoPlan, out: &Path) -> anyhow::Result<()> {
    let first = plan.robust.first();
    let mut m = Manifest::new("demo", first.model.device()?, plan_settings(first));
    m.config_sha256 = Some(sha256_hex(plan.robust.resolved_toml.as_bytes()));
    m.backbone = Some(first.model.backbone.clone());
    for sub in ["robust", "standard"] {
        m.file(out, &format!("{sub}/{MANIFEST}"))?;
    }
    m.file(out, "report.md")?;
    m.write(out)
}

/// `manifest.json` of a multi-seed folder: each seed's run folder (its manifest's hash). The pooled
/// `summary.json` is not hashed: `roli demo` adds the eps curve's checks to it afterwards, as it
/// does to a one-seed run's `result.json`s.
pub fn write_seeds(plans: &crate::study::seeds::SeedPlans, out: &Path) -> anyhow::Result<()> {
    let first = plans.first();
    let mut m = Manifest::new("seeds", first.model.device()?, plan_settings(first));
    m.config_sha256 = Some(sha256_hex(plans.resolved_toml.as_bytes()));
    m.backbone = Some(first.model.backbone.clone());
    for (s, _) in &plans.plans {
        m.file(out, &format!("{}/{MANIFEST}", crate::study::seeds::seed_dir_name(*s).display()))?;
    }
    m.write(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            train_precision: Some("fp32".into()),
            eval_precision: "fp32".into(),
            attention: "explicit".into(),
            seed: 0,
        }
    }

    #[test]
    fn hashes_and_cpu_model() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(indices_sha256([0, 1, 2]), sha256_hex(b"0,1,2"));
        assert_ne!(indices_sha256([0, 1, 2]), indices_sha256([0, 12]));
        let info = "processor\t: 0\nvendor_id\t: X\nmodel name\t: AMD EPYC 9999 64-Core\nflags\t: a b\n";
        assert_eq!(cpu_model_from(info).as_deref(), Some("AMD EPYC 9999 64-Core"));
        assert_eq!(cpu_model_from("processor : 0\n"), None);
    }

    #[test]
    fn build_info_is_captured_at_build_time() {
        let b = build_info();
        assert_eq!(b.roli_version, env!("CARGO_PKG_VERSION"));
        assert!(b.git_commit == "unknown" || b.git_commit.len() == 40, "{}", b.git_commit);
        assert!(b.libtorch_version.starts_with("2.") || b.libtorch_version == "unknown", "{}", b.libtorch_version);
    }

    #[test]
    fn environment_differences_name_fields_and_what_explains_float_changes() {
        let m = Manifest::new("run", tch::Device::Cpu, settings());
        assert!(env_differences(&m, &m.build, &m.environment).is_empty());
        let mut env = m.environment.clone();
        env.threads += 3;
        env.cpu_model = Some("Other CPU".into());
        let mut build = m.build.clone();
        build.git_commit = "abc".into();
        let d = env_differences(&m, &build, &env);
        let fields: Vec<&str> = d.iter().map(|d| d.field).collect();
        assert_eq!(fields, ["git_commit", "threads", "cpu_model"]);
        assert_eq!(d[1].now, (m.environment.threads + 3).to_string());
        assert!(!explains_float_changes(&d[0]));
        assert!(explains_float_changes(&d[1]) && explains_float_changes(&d[2]));
    }

    #[test]
    fn manifest_round_trips_and_changed_files_name_the_stage_and_hashes() {
        let d = tempfile::tempdir().unwrap();
        let stage = d.path().join("full_roli");
        std::fs::create_dir_all(&stage).unwrap();
        std::fs::write(stage.join(artifacts::BEST), b"weights").unwrap();
        std::fs::write(d.path().join(artifacts::RESOLVED_CONFIG), b"seed = 0\n").unwrap();
        let mut m = Manifest::new("run", tch::Device::Cpu, settings());
        m.config_sha256 = Some(sha256_hex(b"seed = 0\n"));
        m.stages.push(stage_record("full_roli", &stage, Some(1), 2, Some(3.0)).unwrap());
        assert_eq!(m.stages[0].files[artifacts::BEST], sha256_hex(b"weights"));
        m.write(d.path()).unwrap();
        let back = Manifest::read(d.path()).unwrap();
        assert_eq!(back, m);
        assert!(back.changed_files(d.path()).is_empty());
        std::fs::write(stage.join(artifacts::BEST), b"weightz").unwrap();
        std::fs::write(d.path().join(artifacts::RESOLVED_CONFIG), b"seed = 1\n").unwrap();
        let p = back.changed_files(d.path());
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("config.resolved.toml changed since the run"), "{p:?}");
        let want = format!(
            "best.safetensors of full_roli changed since the run: sha256 {} ≠ {}",
            sha256_hex(b"weights"),
            sha256_hex(b"weightz")
        );
        assert_eq!(p[1], want);
        std::fs::remove_file(stage.join(artifacts::BEST)).unwrap();
        assert!(back.changed_files(d.path())[1].contains("is missing"));
        let e = Manifest::read(&stage).unwrap_err().to_string();
        assert!(e.contains("has no manifest.json"), "{e}");
    }
}
