//! Where backbones come from: the model zoo (real checkpoints fetched into the cache, and the
//! project's own robust backbones committed under `zoo/`), registry presets with a weights file,
//! roli checkpoints, and TorchScript files. [`build`] turns any of them into a [`Classifier`] with a
//! head of K classes, loads the weights strictly and fingerprints the backbone.
use anyhow::{bail, Context};
use roli_models::checkpoint::{HeadPolicy, LoadOptions};
use roli_models::peft::PeftSpec;
use roli_models::script::ScriptOutput;
use roli_models::{BackboneDescriptor, Classifier, ClassifierOptions, HeadInit, SourceLayout};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::nn;

/// A checkpoint in the zoo.
#[derive(Debug, Clone, Copy)]
pub struct ZooEntry {
    pub name: &'static str,
    pub preset: &'static str,
    /// Fetch source (`roli data fetch <source>`) and file inside it.
    pub source: &'static str,
    pub file: &'static str,
    pub description: &'static str,
}

/// Third-party checkpoints, fetched by `roli data fetch`.
pub const FETCHED: &[ZooEntry] = &[
    ZooEntry {
        name: "advertorch-lenet5-mnist-at",
        preset: "lenet5_advertorch",
        source: "advertorch",
        file: "mnist_lenet5_advtrained.safetensors",
        description: "advertorch 0.2.3 LeNet-5, PGD-40 adversarially trained on MNIST at L∞ 0.3 (robust)",
    },
    ZooEntry {
        name: "advertorch-lenet5-mnist-std",
        preset: "lenet5_advertorch",
        source: "advertorch",
        file: "mnist_lenet5_clntrained.safetensors",
        description: "advertorch 0.2.3 LeNet-5, standard training on MNIST (not robust)",
    },
];

/// The folder of the project's own committed zoo (`<repo>/zoo`), overridable by `ROLI_ZOO`.
pub fn zoo_dir() -> PathBuf {
    let dir = std::env::var_os("ROLI_ZOO")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../zoo"));
    // `<repo>/zoo` rather than `<repo>/crates/roli/../../zoo` in reports and logs.
    dir.canonicalize().unwrap_or(dir)
}

/// Where a backbone's weights are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackboneSource {
    /// A registry preset; `weights` None means random init (e.g. pretraining from scratch).
    Preset { preset: String, weights: Option<PathBuf>, layout: SourceLayout },
    /// A roli checkpoint folder (`model.safetensors` + `model.json`).
    Own { dir: PathBuf },
    /// A TorchScript archive: a feature extractor or a whole classifier.
    Script { file: PathBuf },
}

impl BackboneSource {
    pub fn describe(&self) -> String {
        match self {
            BackboneSource::Preset { preset, weights: Some(w), .. } => format!("{preset} ← {}", w.display()),
            BackboneSource::Preset { preset, weights: None, .. } => format!("{preset} (random init)"),
            BackboneSource::Own { dir } => format!("roli checkpoint {}", dir.display()),
            BackboneSource::Script { file } => format!("TorchScript {}", file.display()),
        }
    }
}

/// Resolves `--model`/`model.backbone`: a zoo name, a `zoo/` entry, a roli checkpoint folder or
/// `model.json`, a TorchScript file (`.pt`/`.ts`/`.torchscript`), or a registry preset (with an
/// optional weights file from `checkpoint`).
pub fn resolve(spec: &str, checkpoint: Option<&Path>, layout: SourceLayout) -> anyhow::Result<BackboneSource> {
    if let Some(e) = FETCHED.iter().find(|e| e.name == spec) {
        let src = roli_data::fetch::find_source(e.source).context("zoo source missing from the fetch table")?;
        let file = roli_data::fetch::source_dir(src).join(e.file);
        if !file.exists() {
            bail!("model '{spec}' is not in the cache ({}); run `roli data fetch {}`", file.display(), e.source);
        }
        return Ok(BackboneSource::Preset {
            preset: e.preset.into(),
            weights: Some(file),
            layout: SourceLayout::Native,
        });
    }
    let own = zoo_dir().join(spec);
    if own.join("model.json").exists() {
        return Ok(BackboneSource::Own { dir: own });
    }
    let p = Path::new(spec);
    if p.is_dir() && p.join("model.json").exists() {
        return Ok(BackboneSource::Own { dir: p.to_path_buf() });
    }
    // A run's stage folder: its checkpoint is `model/` (`crate::export`).
    if p.is_dir() && p.join(crate::export::MODEL_DIR).join("model.json").exists() {
        return Ok(BackboneSource::Own { dir: p.join(crate::export::MODEL_DIR) });
    }
    if p.is_file() && p.file_name().is_some_and(|f| f == "model.json" || f == "model.safetensors") {
        return Ok(BackboneSource::Own { dir: p.parent().unwrap_or(Path::new(".")).to_path_buf() });
    }
    if p.is_file()
        && p.extension().is_some_and(|e| e == "pt" || e == "ts" || e == "torchscript" || e == "jit")
        && checkpoint.is_none()
    {
        return Ok(BackboneSource::Script { file: p.to_path_buf() });
    }
    if roli_models::descriptor(spec).is_ok() {
        if let Some(c) = checkpoint {
            if !c.exists() {
                bail!("checkpoint {} does not exist", c.display());
            }
        }
        return Ok(BackboneSource::Preset { preset: spec.into(), weights: checkpoint.map(Path::to_path_buf), layout });
    }
    let own = list_own();
    bail!(
        "unknown model '{spec}': not a zoo model ({}{}), a roli checkpoint folder, a TorchScript file, or a registry preset ({})",
        FETCHED.iter().map(|e| e.name).collect::<Vec<_>>().join(", "),
        if own.is_empty() { String::new() } else { format!(", {}", own.join(", ")) },
        roli_models::registry::preset_names().join(", ")
    )
}

/// The names of the project's own zoo entries (folders with a `model.json`) under [`zoo_dir`].
/// Only names: a malformed `model.json` is reported, naming the file, when the model is used.
pub fn list_own() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(zoo_dir()) {
        for e in rd.flatten() {
            if e.path().join("model.json").is_file() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// How to build the classifier.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub num_classes: i64,
    pub head_init: HeadInit,
    /// Resize inputs inside the model to the backbone's size (`None`: only if sizes differ).
    pub resize: bool,
    /// Input `[C, H, W]` of the data (TorchScript needs it; others check it).
    pub input: [i64; 3],
    /// Keep the checkpoint's own head (evaluation of a finished classifier) instead of a new one.
    pub keep_head: bool,
    pub drop_path: f64,
    /// TorchScript backbones: trainable parameters (full finetuning).
    pub trainable_script: bool,
    /// Seed of the random initialisation (backbone without weights, head, PEFT tensors).
    pub init_seed: u64,
    /// Explicit or fused attention (ViT, Swin; other families ignore it).
    pub attention: roli_models::AttentionImpl,
    /// Where the built model lives. It is always built and loaded on the CPU first, so its
    /// random initialisation and fingerprint do not depend on the device.
    pub device: tch::Device,
}

impl BuildOptions {
    /// A preset with random weights drawn from `seed` and a PyTorch-default head of `num_classes`
    /// for `input` images (resized inside the model when they are not the preset's `native`
    /// size): what `roli bench` and `roli device parity` compare.
    pub fn random_preset(
        num_classes: i64,
        input: [i64; 3],
        native: [i64; 3],
        seed: u64,
        attention: roli_models::AttentionImpl,
        device: tch::Device,
    ) -> Self {
        BuildOptions {
            num_classes,
            head_init: HeadInit::TorchDefault,
            resize: native != input,
            input,
            keep_head: false,
            drop_path: 0.0,
            trainable_script: false,
            init_seed: seed,
            attention,
            device,
        }
    }
}

/// A built model with its provenance.
pub struct Built {
    pub vs: nn::VarStore,
    pub model: Classifier,
    pub descriptor: BackboneDescriptor,
    /// SHA-256 over the backbone tensors (not head, not PEFT), after loading.
    pub backbone_fingerprint: String,
    pub source: BackboneSource,
    pub load_summary: String,
}

/// Names of the backbone tensors (everything except head and PEFT tensors).
pub fn backbone_names(all: &[String], head: &[String]) -> Vec<String> {
    all.iter().filter(|n| !head.contains(n) && !crate::peft::is_added_tensor(n)).cloned().collect()
}

/// Builds and loads a classifier: the architecture of the source, PEFT layers injected, the
/// weights loaded strictly (or a seeded random backbone, the same for every method), and the
/// backbone's fingerprint.
pub fn build(source: &BackboneSource, opts: &BuildOptions, peft: &dyn PeftSpec) -> anyhow::Result<Built> {
    let (desc, weights, layout) = architecture(source, opts)?;
    check_fits_data(source, &desc, weights.as_deref(), opts)?;
    let desc = if opts.drop_path > 0.0 { desc.with_drop_path(opts.drop_path)? } else { desc };
    let desc = desc.with_attention(opts.attention);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let copts = ClassifierOptions { num_classes: opts.num_classes, head_init: opts.head_init, resize: opts.resize };
    let plain_backbone = match (&weights, source) {
        (None, BackboneSource::Preset { .. } | BackboneSource::Own { .. }) => {
            Some(random_backbone(&desc, &copts, opts.init_seed)?)
        }
        _ => None,
    };
    tch::manual_seed(opts.init_seed.wrapping_add(1) as i64);
    let model = Classifier::with_peft(&vs.root(), &desc, &copts, peft)?;
    if let Some(bb) = plain_backbone {
        copy_into(&vs, &bb);
    }
    let load_summary = match &weights {
        Some(w) => load_weights(&vs, &model, w, layout, opts.keep_head)?,
        None if matches!(source, BackboneSource::Script { .. }) => "weights inside the TorchScript file".to_string(),
        None => "no weights file: random initialisation".to_string(),
    };
    let backbone_fingerprint = fingerprint_backbone(&vs, &model);
    let (vs, model) = match opts.device {
        tch::Device::Cpu => (vs, model),
        device => onto_device(&vs, device, &desc, &copts, peft)?,
    };
    Ok(Built { vs, model, descriptor: desc, backbone_fingerprint, source: source.clone(), load_summary })
}

/// Refuses a model that cannot read the data (`opts.input`) before anything is built: channels,
/// size without resizing, and with `keep_head` the class count of the checkpoint's own head.
fn check_fits_data(
    source: &BackboneSource,
    desc: &BackboneDescriptor,
    weights: Option<&Path>,
    opts: &BuildOptions,
) -> anyhow::Result<()> {
    crate::validate::model_fits_data(&desc.name, desc.input_size(), opts.resize, "the data", opts.input)?;
    if !opts.keep_head {
        return Ok(());
    }
    let own_classes = match (source, weights) {
        (BackboneSource::Own { dir }, _) => Some(roli_models::own::read_sidecar(dir)?.num_classes),
        (BackboneSource::Script { .. }, _) => Some(desc.num_features()),
        (BackboneSource::Preset { .. }, Some(w)) => {
            let key = format!("{}.weight", desc.classifier);
            let sd = roli_models::checkpoint::read_state_dict(w).with_context(|| format!("reading {}", w.display()))?;
            sd.tensors.iter().find(|(n, _)| *n == key || n.ends_with(&format!(".{key}"))).map(|(_, t)| t.size()[0])
        }
        (BackboneSource::Preset { .. }, None) => None,
    };
    if let Some(k) = own_classes {
        crate::validate::classes_fit(&desc.name, k, "the data", opts.num_classes)?;
    }
    Ok(())
}

/// The same model on `device`: built again there (so its non-parameter buffers — normalisation
/// constants, Swin's position indices and masks, a TorchScript module — live on the device
/// too), then every tensor copied from the CPU build.
fn onto_device(
    cpu: &nn::VarStore,
    device: tch::Device,
    desc: &BackboneDescriptor,
    copts: &ClassifierOptions,
    peft: &dyn PeftSpec,
) -> anyhow::Result<(nn::VarStore, Classifier)> {
    let mut vs = nn::VarStore::new(device);
    let model = Classifier::with_peft(&vs.root(), desc, copts, peft)?;
    vs.copy(cpu).with_context(|| format!("moving the model to {}", crate::device::name(device)))?;
    Ok((vs, model))
}

/// The source's architecture, its weights file (if any) and the file's key layout.
fn architecture(
    source: &BackboneSource,
    opts: &BuildOptions,
) -> anyhow::Result<(BackboneDescriptor, Option<PathBuf>, SourceLayout)> {
    Ok(match source {
        BackboneSource::Preset { preset, weights, layout } => {
            (roli_models::descriptor(preset)?, weights.clone(), *layout)
        }
        BackboneSource::Own { dir } => {
            let sc = roli_models::own::read_sidecar(dir)
                .with_context(|| format!("reading {}", dir.join("model.json").display()))?;
            (sc.descriptor, Some(dir.join("model.safetensors")), SourceLayout::Native)
        }
        BackboneSource::Script { file } => {
            let output = if opts.keep_head { ScriptOutput::Logits } else { ScriptOutput::Features };
            let c = opts.input[0] as usize;
            let d = roli_models::script::describe(
                file,
                opts.input,
                output,
                opts.trainable_script,
                vec![0.0; c],
                vec![1.0; c],
            )?;
            (d, None, SourceLayout::Native)
        }
    })
}

/// A random backbone drawn from `seed` without PEFT layers. PEFT tensors are created block by
/// block while the backbone is built, which would shift a random initialisation; drawing it once
/// without them and copying it in makes it identical for every method (same fingerprint, RoLI
/// heads transfer).
fn random_backbone(
    desc: &BackboneDescriptor,
    copts: &ClassifierOptions,
    seed: u64,
) -> anyhow::Result<Vec<(String, tch::Tensor)>> {
    tch::manual_seed(seed as i64);
    let pvs = nn::VarStore::new(tch::Device::Cpu);
    let plain = Classifier::new(&pvs.root(), desc, copts)?;
    let head = plain.head_var_names().to_vec();
    Ok(pvs.variables().into_iter().filter(|(n, _)| !head.contains(n)).collect())
}

/// Copies tensors into the same-named variables of `vs` (names it lacks are skipped).
fn copy_into(vs: &nn::VarStore, tensors: &[(String, tch::Tensor)]) {
    let vars = vs.variables();
    tch::no_grad(|| {
        for (n, t) in tensors {
            if let Some(v) = vars.get(n) {
                v.shallow_clone().copy_(t);
            }
        }
    });
}

/// Loads a weights file strictly (PEFT tensors may be missing: the registry names them).
fn load_weights(
    vs: &nn::VarStore,
    model: &Classifier,
    w: &Path,
    layout: SourceLayout,
    keep_head: bool,
) -> anyhow::Result<String> {
    let lo = LoadOptions {
        layout,
        head: if keep_head { HeadPolicy::Load } else { HeadPolicy::Drop },
        allow_missing_containing: crate::peft::added_markers().into_iter().map(String::from).collect(),
        strict: true,
    };
    let rep = roli_models::load_backbone(vs, model, w, &lo).with_context(|| format!("loading {}", w.display()))?;
    Ok(format!("{} tensors loaded strictly from {}", rep.loaded.len(), w.display()))
}

/// SHA-256 over the backbone tensors (not head, not PEFT).
fn fingerprint_backbone(vs: &nn::VarStore, model: &Classifier) -> String {
    let vars = vs.variables();
    let all: Vec<String> = vars.keys().cloned().collect();
    let named: Vec<(String, tch::Tensor)> =
        backbone_names(&all, model.head_var_names()).iter().map(|n| (n.clone(), vars[n].shallow_clone())).collect();
    roli_models::fingerprint(&named)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_model_lists_choices() {
        let e = resolve("no-such-model", None, SourceLayout::Native).unwrap_err().to_string();
        assert!(e.contains("advertorch-lenet5-mnist-at") && e.contains("swin_base_patch4_window7_224"), "{e}");
    }

    #[test]
    fn backbone_names_exclude_head_and_peft() {
        let all: Vec<String> = ["a.weight", "blocks.0.attn.lora_q_a", "head.weight", "blocks.0.adapter_up.bias"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(backbone_names(&all, &["head.weight".to_string()]), vec!["a.weight"]);
    }
}
