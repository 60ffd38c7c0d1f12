//! Finetuned models as first-class checkpoints, and their export to other ecosystems.
//!
//! **The stage checkpoint.** Every stage of a run saves its best weights as a roli checkpoint
//! folder `DIR/<stage>/model/` (`model.safetensors` + `model.json`, [`roli_models::own`]): every
//! variable of the stage's model (backbone under timm names, PEFT tensors, head) and a sidecar
//! whose `info.roli_stage` ([`StageInfo`]) records what rebuilds the same model: the PEFT method
//! with its settings ([`PeftRecord`]: LoRA rank/alpha/dropout, adapter reduction, prompt
//! tokens/dropout), class count, input `[C, H, W]`, resize, attention, data, threat model and best
//! epoch. [`load_stage`] (and `roli eval --model DIR/<stage>`) injects the PEFT layers from the
//! record, loads every tensor strictly and checks the sidecar's fingerprint.
//!
//! **`roli export`** ([`export`]):
//! * `timm`: a timm `state_dict` (safetensors) plus `<out>.json` describing the timm twin. LoRA is
//!   merged into the fused `qkv` Linear (`W[q rows] += (alpha/r)·B_q·A_q`, same for v); full, bias,
//!   layernorm finetuning and the linear probe change only timm tensors and export as they are.
//!   Adapters and VPT add computation a plain timm model does not have: refused with the reason.
//! * `peft`: HF peft's layout (`adapter_config.json` + `adapter_model.safetensors`, plus
//!   `base_model.safetensors`, the frozen backbone in timm names, and `roli_export.json`, the
//!   twin). peft's LoRA targets whole modules while roli's acts on the q and v slices of timm's
//!   fused `qkv`; the export is the *equivalent* LoRA on `qkv` of rank 2r with a block-structured
//!   B, so only the q and v rows change: `A = [A_q; A_v]` (2r×d), `B = [[B_q, 0], [0, 0], [0, B_v]]`
//!   (3d×2r), and `lora_alpha = 2·alpha` so peft's scaling `lora_alpha / (2r)` equals roli's
//!   `alpha / r`. The head is a `modules_to_save` module. Only LoRA is expressible: full/bias/
//!   layernorm/probe are refused (use `timm`, which is exact), adapters and VPT too (peft has no
//!   Pfeiffer adapter or VPT-deep for timm models).
//! * `robustbench`: a RobustBench `model_info` JSON from the stage's `result.json` and
//!   `test_examples.json` (clean and AutoAttack accuracy on the AutoAttack subset, eps, threat
//!   model, data set, examples, forward passes, architecture); fields only the author can fill
//!   (name, authors, venue, link, reported, footnote) are `null`.
use crate::artifacts;
use crate::peft::adapter::AdapterConfig;
use crate::peft::lora::LoraConfig;
use crate::peft::vpt::PromptConfig;
use crate::peft::{Method, Settings};
use crate::results::MethodResult;
use anyhow::{bail, Context};
use roli_models::own::{self, LoadedClassifier};
use roli_models::peft::{NoPeft, PeftSpec};
use roli_models::AttentionImpl;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The checkpoint folder inside a stage folder.
pub const MODEL_DIR: &str = "model";
/// The key of [`StageInfo`] in the sidecar's free-form `info`.
pub const INFO_KEY: &str = "roli_stage";

/// The PEFT method of a checkpoint and the settings that shape its tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeftRecord {
    /// The finetuning method; `None`: the linear probe (only the head trained).
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<AdapterConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptConfig>,
}

impl PeftRecord {
    /// The record of `method` (None: the probe) under `settings`: only the method's own config.
    pub fn new(method: Option<Method>, s: &Settings) -> Self {
        let name = method.map(|m| m.as_str());
        PeftRecord {
            method: name.map(String::from),
            lora: (name == Some("lora")).then(|| s.lora.clone()),
            adapter: (name == Some("adapter")).then(|| s.adapter.clone()),
            prompt: (name == Some("prompt")).then(|| s.prompt.clone()),
        }
    }

    /// The registered method, if any.
    pub fn method(&self) -> anyhow::Result<Option<Method>> {
        self.method.as_deref().map(Method::named).transpose()
    }

    /// The build-time injector that recreates the method's layers (`None`: plain model).
    pub fn injector(&self) -> anyhow::Result<Option<Box<dyn PeftSpec>>> {
        let Some(m) = self.method()? else { return Ok(None) };
        let s = Settings {
            lora: self.lora.clone().unwrap_or_default(),
            adapter: self.adapter.clone().unwrap_or_default(),
            prompt: self.prompt.clone().unwrap_or_default(),
            ..Settings::default()
        };
        m.injector(&s)
    }
}

/// What a stage checkpoint records besides the backbone descriptor (sidecar `info.roli_stage`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageInfo {
    /// The stage folder's name (`lora_roli`, `linear`, …).
    pub stage: String,
    pub peft: PeftRecord,
    pub num_classes: i64,
    /// Input `[C, H, W]` of the data it was trained on.
    pub input: [i64; 3],
    pub resize: bool,
    pub attention: AttentionImpl,
    /// The data set (as the run resolved it).
    pub data: String,
    /// `linf` / `l2`.
    pub norm: String,
    pub eps: f64,
    pub best_epoch: Option<u32>,
    pub best_val_robust: f64,
}

/// Writes a stage's model (its current — best — weights) to `stage_dir/model/`. A TorchScript
/// backbone keeps buffers inside its module, which a roli checkpoint cannot hold: its stages get
/// no checkpoint (`None`, with a warning).
pub fn save_stage(stage_dir: &Path, built: &crate::zoo::Built, info: &StageInfo) -> anyhow::Result<Option<PathBuf>> {
    if matches!(built.descriptor.arch, roli_models::ArchConfig::TorchScript(_)) {
        tracing::warn!("{}: TorchScript backbone, no roli checkpoint of the stage (use best.safetensors)", info.stage);
        return Ok(None);
    }
    let dir = stage_dir.join(MODEL_DIR);
    own::save_classifier(&dir, &built.vs, &built.model, json!({ INFO_KEY: info }))
        .with_context(|| format!("saving the stage checkpoint {}", dir.display()))?;
    Ok(Some(dir))
}

/// The checkpoint folder of `p`: a stage folder (`DIR/<stage>`), its `model/` folder, or the
/// sidecar / weights file inside it.
pub fn model_dir(p: &Path) -> anyhow::Result<PathBuf> {
    let p = if p.is_file() { p.parent().unwrap_or(Path::new(".")) } else { p };
    if p.join(own::SIDECAR_FILE).exists() {
        return Ok(p.to_path_buf());
    }
    if p.join(MODEL_DIR).join(own::SIDECAR_FILE).exists() {
        return Ok(p.join(MODEL_DIR));
    }
    bail!(
        "{} holds no roli checkpoint (model.json, or model/model.json in a stage folder; stages finished \
         before checkpoints were saved have none: re-run them)",
        p.display()
    )
}

/// The stage folder of a checkpoint folder (its parent when it is `model/`).
fn stage_dir(model: &Path) -> PathBuf {
    if model.file_name().is_some_and(|n| n == MODEL_DIR)
        && model.parent().is_some_and(|p| p.join(artifacts::RESULT).exists())
    {
        model.parent().unwrap().to_path_buf()
    } else {
        model.to_path_buf()
    }
}

/// The stage record of a checkpoint folder; `None` for a plain roli checkpoint (a zoo backbone).
pub fn stage_info(model_dir: &Path) -> anyhow::Result<Option<StageInfo>> {
    let sc = own::read_sidecar(model_dir)?;
    match sc.info.get(INFO_KEY) {
        None => Ok(None),
        Some(v) => Ok(Some(
            serde_json::from_value(v.clone())
                .with_context(|| format!("reading {INFO_KEY} in {}", model_dir.join(own::SIDECAR_FILE).display()))?,
        )),
    }
}

/// The PEFT injector a checkpoint folder needs (none for a plain checkpoint or a probe).
pub fn checkpoint_peft(model_dir: &Path) -> anyhow::Result<Option<Box<dyn PeftSpec>>> {
    match stage_info(model_dir)? {
        Some(i) => i.peft.injector(),
        None => Ok(None),
    }
}

/// Checks that `vs` holds exactly the checkpoint's tensors (the sidecar's fingerprint over every
/// variable): after `zoo::build`, which allows PEFT tensors to be missing, this makes the load
/// of a stage checkpoint strict.
pub fn verify_loaded(vs: &tch::nn::VarStore, model_dir: &Path) -> anyhow::Result<()> {
    let sc = own::read_sidecar(model_dir)?;
    let mut vars: Vec<(String, Tensor)> =
        vs.variables().into_iter().map(|(n, t)| (n, t.detach().to_device(Device::Cpu).contiguous())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let actual = roli_models::fingerprint(&vars);
    if actual != sc.fingerprint {
        bail!(
            "the model built from {} does not hold exactly its tensors (fingerprint {actual} ≠ {})",
            model_dir.display(),
            sc.fingerprint
        );
    }
    Ok(())
}

/// Loads a stage checkpoint on the CPU: PEFT layers injected from its record, every tensor loaded
/// strictly, fingerprint verified.
pub fn load_stage(p: &Path) -> anyhow::Result<(LoadedClassifier, StageInfo)> {
    let dir = model_dir(p)?;
    let info = stage_info(&dir)?.with_context(|| {
        format!("{} is a plain roli checkpoint, not a finetuned stage (no {INFO_KEY} in model.json)", dir.display())
    })?;
    let inj = info.peft.injector()?;
    let none = NoPeft;
    let loaded = own::load_classifier_with_peft(&dir, Device::Cpu, inj.as_deref().unwrap_or(&none))
        .with_context(|| format!("loading {}", dir.display()))?;
    Ok((loaded, info))
}

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Timm,
    Peft,
    Robustbench,
}

/// What an export wrote.
#[derive(Debug)]
pub struct Exported {
    pub files: Vec<PathBuf>,
    pub summary: String,
}

/// `roli export`: writes the stage of `p` in `format` to `out` (a file for `timm` and
/// `robustbench`, a folder for `peft`).
pub fn export(p: &Path, format: Format, out: &Path) -> anyhow::Result<Exported> {
    match format {
        Format::Timm => export_timm(p, out),
        Format::Peft => export_peft(p, out),
        Format::Robustbench => export_robustbench(p, out),
    }
}

fn method_name(info: &StageInfo) -> &str {
    info.peft.method.as_deref().unwrap_or("linear probe")
}

/// The tensors of a loaded stage by name (CPU, contiguous).
fn tensors(l: &LoadedClassifier) -> std::collections::BTreeMap<String, Tensor> {
    l.vs.variables().into_iter().map(|(n, t)| (n, t.detach().to_device(Device::Cpu).contiguous())).collect()
}

/// The LoRA blocks of a loaded stage: the attention prefix (`blocks.0.attn.`) of every `lora_q_a`.
fn lora_prefixes(t: &std::collections::BTreeMap<String, Tensor>) -> Vec<String> {
    t.keys().filter_map(|n| n.strip_suffix("lora_q_a")).map(String::from).collect()
}

/// The timm state_dict of a stage: LoRA merged into `qkv`, nothing else changed; refuses methods
/// that a plain timm model cannot express.
pub fn timm_state_dict(l: &LoadedClassifier, info: &StageInfo) -> anyhow::Result<Vec<(String, Tensor)>> {
    let mut t = tensors(l);
    match info.peft.method.as_deref() {
        Some("adapter") => bail!(
            "adapter stages cannot be exported to timm: the bottleneck adapters after each MLP are extra layers \
             a plain timm model does not have, and they cannot be merged into its weights (GELU in between)"
        ),
        Some("prompt") => bail!(
            "prompt (VPT) stages cannot be exported to timm: the learned prompt tokens lengthen the token sequence \
             of every block, which a plain timm model cannot express or merge into its weights"
        ),
        Some("lora") => {
            let cfg = info.peft.lora.clone().context("a LoRA checkpoint without its LoRA settings")?;
            merge_lora(&mut t, cfg.alpha / cfg.rank as f64)?;
        }
        _ => {}
    }
    if let Some(extra) = t.keys().find(|n| crate::peft::is_added_tensor(n)) {
        bail!("{} stage: tensor {extra} has no timm counterpart", method_name(info));
    }
    Ok(t.into_iter().collect())
}

/// Merges every block's LoRA into its fused `qkv` weight (`W[q rows] += scale·B_q·A_q`, same for
/// v, in double precision) and removes the LoRA tensors.
fn merge_lora(t: &mut std::collections::BTreeMap<String, Tensor>, scale: f64) -> anyhow::Result<()> {
    for pre in lora_prefixes(t) {
        let get = |k: &str| t.get(&format!("{pre}{k}")).map(|x| x.to_kind(Kind::Double));
        let (Some(aq), Some(bq), Some(av), Some(bv), Some(w)) =
            (get("lora_q_a"), get("lora_q_b"), get("lora_v_a"), get("lora_v_b"), get("qkv.weight"))
        else {
            bail!("LoRA tensors or qkv.weight missing under {pre}");
        };
        let c = bq.size()[0];
        let dq = bq.matmul(&aq) * scale;
        let dv = bv.matmul(&av) * scale;
        let merged = Tensor::cat(&[w.narrow(0, 0, c) + dq, w.narrow(0, c, c), w.narrow(0, 2 * c, c) + dv], 0);
        t.insert(format!("{pre}qkv.weight"), merged.to_kind(Kind::Float).contiguous());
        for k in ["lora_q_a", "lora_q_b", "lora_v_a", "lora_v_b"] {
            t.remove(&format!("{pre}{k}"));
        }
    }
    Ok(())
}

/// The timm twin of a stage (`study::bench::twin` of its descriptor plus its class count, input
/// and resize): what `scripts/export_check.py` and a user need to rebuild the model in timm.
pub fn twin_json(l: &LoadedClassifier, info: &StageInfo) -> anyhow::Result<Value> {
    let mut twin = crate::study::bench::twin(&l.sidecar.descriptor)?;
    twin["kwargs"]["drop_path_rate"] = json!(0.0);
    Ok(json!({
        "format": "roli-export",
        "twin": twin,
        "num_classes": info.num_classes,
        "input": info.input,
        "resize": info.resize,
        "stage": info.stage,
        "method": info.peft.method,
        "architecture": l.sidecar.descriptor.name,
    }))
}

fn write_tensors(path: &Path, t: &[(String, Tensor)]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    artifacts::save_tensors(path, t)
}

fn export_timm(p: &Path, out: &Path) -> anyhow::Result<Exported> {
    let (l, info) = load_stage(p)?;
    let sd = timm_state_dict(&l, &info)?;
    write_tensors(out, &sd)?;
    let side = out.with_extension("json");
    artifacts::write_json(&side, &twin_json(&l, &info)?)?;
    let lora = if info.peft.method.as_deref() == Some("lora") { " (LoRA merged into qkv)" } else { "" };
    Ok(Exported {
        summary: format!(
            "{} ({}, {} classes): timm state_dict of {} tensors{lora}",
            info.stage,
            l.sidecar.descriptor.name,
            info.num_classes,
            sd.len()
        ),
        files: vec![out.to_path_buf(), side],
    })
}

fn export_peft(p: &Path, out: &Path) -> anyhow::Result<Exported> {
    let (l, info) = load_stage(p)?;
    let why = match info.peft.method.as_deref() {
        Some("lora") => None,
        Some("adapter") => Some("peft has no Pfeiffer bottleneck adapter for timm models"),
        Some("prompt") => Some("peft's prompt tuning is for language models; it has no VPT-deep for timm ViTs"),
        Some("full") => Some("full finetuning changes every tensor: use --format timm"),
        Some(_) => Some("peft cannot express this method on a timm model: use --format timm (exact)"),
        None => Some("a linear probe trains only the head: use --format timm"),
    };
    if let Some(why) = why {
        bail!("{} stages cannot be exported to peft: {why}", method_name(&info));
    }
    let cfg = info.peft.lora.clone().context("a LoRA checkpoint without its LoRA settings")?;
    let t = tensors(&l);
    let head = l.model.head_var_names().to_vec();
    let r = cfg.rank;
    let mut adapter: Vec<(String, Tensor)> = Vec::new();
    for pre in lora_prefixes(&t) {
        let g = |k: &str| t[&format!("{pre}{k}")].shallow_clone();
        let (aq, bq, av, bv) = (g("lora_q_a"), g("lora_q_b"), g("lora_v_a"), g("lora_v_b"));
        let c = bq.size()[0];
        let a = Tensor::cat(&[aq, av], 0);
        let z = Tensor::zeros([c, r], (Kind::Float, Device::Cpu));
        let b = Tensor::cat(
            &[
                Tensor::cat(&[&bq, &z], 1),
                Tensor::zeros([c, 2 * r], (Kind::Float, Device::Cpu)),
                Tensor::cat(&[&z, &bv], 1),
            ],
            0,
        );
        adapter.push((format!("base_model.model.{pre}qkv.lora_A.weight"), a.contiguous()));
        adapter.push((format!("base_model.model.{pre}qkv.lora_B.weight"), b.contiguous()));
    }
    for h in &head {
        adapter.push((format!("base_model.model.{h}"), t[h].shallow_clone()));
    }
    let base: Vec<(String, Tensor)> = t
        .iter()
        .filter(|(n, _)| !head.contains(n) && !crate::peft::is_added_tensor(n))
        .map(|(n, x)| (n.clone(), x.shallow_clone()))
        .collect();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let config = json!({
        "peft_type": "LORA",
        "task_type": null,
        "base_model_name_or_path": null,
        "revision": null,
        "inference_mode": true,
        "r": 2 * r,
        "lora_alpha": 2.0 * cfg.alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": ["qkv"],
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "use_dora": false,
        "init_lora_weights": true,
        "modules_to_save": [l.sidecar.descriptor.classifier],
        "rank_pattern": {},
        "alpha_pattern": {},
        "layers_to_transform": null,
        "layers_pattern": null,
    });
    let files = vec![
        out.join("adapter_config.json"),
        out.join("adapter_model.safetensors"),
        out.join("base_model.safetensors"),
        out.join("roli_export.json"),
    ];
    artifacts::write_json(&files[0], &config)?;
    write_tensors(&files[1], &adapter)?;
    write_tensors(&files[2], &base)?;
    let mut twin = twin_json(&l, &info)?;
    twin["peft_note"] = json!(
        "LoRA on the q and v slices of qkv, written as peft LoRA on qkv with rank 2r, A = [A_q; A_v], \
         B = [[B_q,0],[0,0],[0,B_v]], lora_alpha = 2*alpha (same scaling alpha/r); base_model.safetensors \
         is the frozen backbone (timm names, no head)"
    );
    artifacts::write_json(&files[3], &twin)?;
    Ok(Exported {
        summary: format!(
            "{} ({}): peft LoRA on qkv, rank {} (= 2×{r}, q and v blocks), lora_alpha {}, {} LoRA modules, head saved",
            info.stage,
            l.sidecar.descriptor.name,
            2 * r,
            2.0 * cfg.alpha,
            lora_prefixes(&t).len()
        ),
        files,
    })
}

/// `8/255`-style text of an eps when it is a whole number of 255ths, else the number.
fn eps_text(eps: f64) -> String {
    let k = eps * 255.0;
    if (k - k.round()).abs() < 1e-6 && k.round() >= 1.0 {
        format!("{}/255", k.round() as i64)
    } else {
        format!("{eps}")
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

/// The RobustBench `model_info` JSON of a stage.
pub fn robustbench_info(p: &Path) -> anyhow::Result<Value> {
    let dir = model_dir(p)?;
    let sdir = stage_dir(&dir);
    let sc = own::read_sidecar(&dir)?;
    let info = stage_info(&dir)?.context("not a finetuned stage checkpoint")?;
    let r: MethodResult = artifacts::read_json(&sdir.join(artifacts::RESULT))
        .with_context(|| format!("reading {}", sdir.join(artifacts::RESULT).display()))?;
    let ex: Value = artifacts::read_json(&sdir.join(artifacts::TEST_EXAMPLES)).unwrap_or(Value::Null);
    let aa = ex.get("autoattack").filter(|v| !v.is_null());
    let (clean, aa_acc, n, attack) = match aa {
        Some(a) => (
            a["clean_accuracy"].as_f64().unwrap_or(r.test.clean_accuracy),
            Some(a["robust_accuracy"].as_f64().or(r.test.aa_accuracy).unwrap_or(f64::NAN)),
            a["n"].as_u64().map(|n| n as usize).or(r.test.aa_n).unwrap_or(0),
            a["attack"].as_str().map(String::from),
        ),
        None => (r.test.clean_accuracy, r.test.aa_accuracy, r.test.aa_n.unwrap_or(r.test.n), None),
    };
    let threat = match info.norm.as_str() {
        "linf" | "Linf" => "Linf",
        "l2" | "L2" => "L2",
        other => bail!("threat model {other} has no RobustBench leaderboard"),
    };
    Ok(json!({
        "link": null,
        "name": null,
        "authors": null,
        "venue": null,
        "footnote": null,
        "reported": null,
        "additional_data": false,
        "number_forward_passes": 1,
        "dataset": info.data,
        "threat_model": threat,
        "eps": eps_text(info.eps),
        "architecture": sc.descriptor.name,
        "clean_acc": pct(clean),
        "autoattack_acc": aa_acc.map(pct),
        "n_eval_examples": n,
        "unreliable": false,
        "roli": {
            "stage": info.stage,
            "method": info.peft.method,
            "eps_value": info.eps,
            "autoattack": attack,
            "pgd_acc": pct(r.test.pgd_accuracy),
            "pgd_n": r.test.n,
            "test_clean_acc": pct(r.test.clean_accuracy),
            "flags": r.test.flags,
            "note": if aa.is_none() { "no AutoAttack in this run: autoattack_acc is null" } else { "clean_acc and autoattack_acc on the same AutoAttack examples" },
        },
    }))
}

fn export_robustbench(p: &Path, out: &Path) -> anyhow::Result<Exported> {
    let v = robustbench_info(p)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    artifacts::write_json(out, &v)?;
    Ok(Exported {
        summary: format!(
            "RobustBench model_info: {} {} eps {}: clean {}%, AutoAttack {} (n = {})",
            v["dataset"].as_str().unwrap_or("?"),
            v["threat_model"].as_str().unwrap_or("?"),
            v["eps"].as_str().unwrap_or("?"),
            v["clean_acc"].as_str().unwrap_or("?"),
            v["autoattack_acc"].as_str().map(|a| format!("{a}%")).unwrap_or_else(|| "not run (null)".into()),
            v["n_eval_examples"]
        ),
        files: vec![out.to_path_buf()],
    })
}

#[cfg(test)]
mod tests;
