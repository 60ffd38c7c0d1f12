//! `roli bench`: roli against PyTorch eager on the same work, in the same run.
//!
//! On synthetic data (seeded uniform images in [0,1], seeded labels) and one registry preset with
//! random weights, roli times
//! * `pgd10-eval`: PGD-10 evaluation of the batch (eval mode);
//! * `apgd-ce`, `apgd-t`, `fab-t`, `square`: the AutoAttack `standard` stages (restarts and
//!   targets from [`roli_attacks::presets::AA_STANDARD`], `--aa-iters` iterations / queries) on a
//!   fixed AA set;
//! * `pgd7-train-full`, `pgd7-train-lora`: one PGD-7 adversarial training step (L∞ 8/255, step
//!   2/255, random start; the attack in eval mode on input gradients only, then the training
//!   forward, mean CE, backward, AdamW step) for full finetuning and for LoRA (rank 16 on q, v:
//!   roli's default settings; only LoRA and the head train).
//!
//! Evaluation and AA labels are the model's own clean predictions, so every point is attacked.
//! The evaluations run before the training steps (which change the weights), on both sides.
//!
//! The PyTorch side is `scripts/bench_torch.py` (embedded in the binary, so a carried binary runs
//! the script it was built with), run as a subprocess on the same weights (written here with timm
//! names), the same batch and the same settings; it prints one JSON object. Forward FLOPs per image
//! come from that side too (`torch.utils.flop_counter.FlopCounterMode` on its twin), multiplied by
//! each side's own pass counts. Without it roli's numbers stand alone, with the reason printed.
use crate::artifacts;
use crate::device;
use crate::peft::{self, Method};
use crate::precision::Precision;
use crate::train::optim::{OptimImpl, OptimImplChoice};
use crate::zoo::{self, BackboneSource, BuildOptions};
use anyhow::{bail, Context};
use roli_attacks::apgd::{Apgd, ApgdConfig, ApgdLoss};
use roli_attacks::fab::{Fab, FabConfig};
use roli_attacks::pgd::{BestIterate, Pgd, PgdConfig, StepSize};
use roli_attacks::presets::{Stage, AA_STANDARD};
use roli_attacks::square::{Square, SquareConfig};
use roli_attacks::{Attack, Counting, LossKind, PassCounts, ThreatModel};
use roli_models::{ArchConfig, AttentionImpl, BackboneDescriptor, Classifier, SourceLayout};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

mod roli_side;
mod table;
mod torch_side;

use roli_side::*;
use table::work_note;
pub use table::{table, write};
use torch_side::*;

/// The PyTorch side, compiled in.
pub const TORCH_SCRIPT: &str = include_str!("../../../../../scripts/bench_torch.py");

/// Item names, in the order both sides run them.
pub const PGD10_EVAL: &str = "pgd10-eval";
pub const TRAIN_FULL: &str = "pgd7-train-full";
pub const TRAIN_LORA: &str = "pgd7-train-lora";
/// The PyTorch side's `torch.compile` run of [`PGD10_EVAL`] (`--compile`).
pub const PGD10_COMPILED: &str = "pgd10-eval-compiled";
pub const AA_ITEMS: [&str; 4] = ["apgd-ce", "apgd-t", "fab-t", "square"];

/// L∞ radius and steps of every item.
pub const EPS: f64 = 8.0 / 255.0;
pub const STEP: f64 = 2.0 / 255.0;
pub const TRAIN_STEPS: usize = 7;
pub const EVAL_STEPS: usize = 10;
/// AdamW of the training items (HF-style in roli, `torch.optim.AdamW` in PyTorch).
pub const LR: f64 = 1e-4;
pub const WEIGHT_DECAY: f64 = 0.05;

/// What to benchmark.
#[derive(Debug, Clone)]
pub struct BenchRequest {
    pub preset: String,
    pub batch: i64,
    /// Square image size (None: the preset's native size; another size is resized inside).
    pub image_size: Option<i64>,
    pub classes: i64,
    pub device: Device,
    pub precision: Precision,
    /// roli's attention (ViT, Swin); timm's own models use fused attention by default.
    pub attention: AttentionImpl,
    pub iters: usize,
    pub warmup: usize,
    pub aa_iters: usize,
    pub aa_n: i64,
    /// Run the PyTorch side.
    pub torch: bool,
    /// Its interpreter (None: `$ROLI_PYTHON`, the project's `.venv/bin/python`, else `python3`).
    pub python: Option<PathBuf>,
    /// Also time `torch.compile(model)` for PGD-10 on the PyTorch side.
    pub compile: bool,
    /// The device's peak TFLOP/s at this precision, for "% of peak".
    pub peak_tflops: Option<f64>,
    pub seed: u64,
}

/// PGD settings as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgdSetting {
    pub steps: usize,
    pub step: f64,
}

/// Everything the numbers depend on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub preset: String,
    pub batch: i64,
    pub image_size: i64,
    pub native_size: i64,
    pub channels: i64,
    pub classes: i64,
    pub device: String,
    pub precision: Precision,
    /// roli's attention implementation.
    #[serde(default)]
    pub attention: AttentionImpl,
    /// roli's optimiser implementation in the training items.
    #[serde(default)]
    pub optimizer_impl: OptimImpl,
    pub threads: i64,
    pub iters: usize,
    pub warmup: usize,
    pub aa_iters: usize,
    pub aa_n: i64,
    pub aa_targets: usize,
    pub eps: f64,
    pub train_pgd: PgdSetting,
    pub eval_pgd: PgdSetting,
    pub lora_rank: i64,
    pub lora_alpha: f64,
    pub lr: f64,
    pub weight_decay: f64,
    pub peak_tflops: Option<f64>,
    pub seed: u64,
}

/// FLOPs per image of one model (forward, forward + input gradient, training forward + backward).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PassFlops {
    pub forward: f64,
    pub input_grad: f64,
    pub train: f64,
}

/// Per-item work per iteration: examples through the attack's model (all forwards, and those whose
/// input gradient was taken) and examples of the training forward + backward.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Work {
    pub forward_examples: f64,
    pub backward_examples: f64,
    pub train_examples: f64,
}

/// FLOPs of one iteration: plain forwards, forwards with an input gradient, training passes.
pub fn flops_per_iter(f: &PassFlops, w: &Work) -> f64 {
    let plain = (w.forward_examples - w.backward_examples).max(0.0);
    plain * f.forward + w.backward_examples * f.input_grad + w.train_examples * f.train
}

/// Achieved TFLOP/s.
pub fn tflops(flops: f64, seconds: f64) -> Option<f64> {
    (seconds > 0.0 && flops.is_finite()).then(|| flops / seconds / 1e12)
}

/// Images per second.
pub fn images_per_s(images: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        images / seconds
    } else {
        f64::NAN
    }
}

/// roli's throughput over PyTorch's (> 1: roli is faster).
pub fn ratio(roli_ips: f64, torch_ips: f64) -> Option<f64> {
    let r = roli_ips / torch_ips;
    (r.is_finite() && r > 0.0).then_some(r)
}

/// One side's timing of one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideTiming {
    pub seconds_per_iter: f64,
    pub images_per_s: f64,
    #[serde(flatten)]
    pub work: Work,
    /// Peak device memory of the item's timed iterations; `null` on the CPU.
    pub peak_memory_bytes: Option<u64>,
    pub flops_per_iter: Option<f64>,
    pub tflops: Option<f64>,
    pub pct_of_peak: Option<f64>,
}

impl SideTiming {
    fn new(seconds: f64, images: f64, work: Work, peak: Option<u64>) -> Self {
        SideTiming {
            seconds_per_iter: seconds,
            images_per_s: images_per_s(images, seconds),
            work,
            peak_memory_bytes: peak,
            flops_per_iter: None,
            tflops: None,
            pct_of_peak: None,
        }
    }

    /// Fills the FLOP columns from FLOPs per image (and the device peak, if known).
    pub fn with_flops(mut self, f: Option<&PassFlops>, peak_tflops: Option<f64>) -> Self {
        if let Some(f) = f {
            let fl = flops_per_iter(f, &self.work);
            self.flops_per_iter = Some(fl);
            self.tflops = tflops(fl, self.seconds_per_iter);
            self.pct_of_peak = self.tflops.zip(peak_tflops).map(|(t, p)| 100.0 * t / p);
        }
        self
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    pub item: String,
    pub images_per_iter: i64,
    pub roli: Option<SideTiming>,
    pub torch: Option<SideTiming>,
    /// roli img/s over PyTorch img/s.
    pub ratio: Option<f64>,
    /// Why a side is missing, or what differs.
    pub note: Option<String>,
}

/// FLOPs per image and where they come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlopReport {
    pub source: String,
    /// `full` (the plain model) and `lora` (with LoRA layers), when measured.
    pub per_image: BTreeMap<String, PassFlops>,
}

/// What became of the PyTorch side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TorchReport {
    /// `ok`, `failed` or `disabled`.
    pub status: String,
    pub reason: Option<String>,
    pub python: Option<String>,
    pub versions: Value,
    pub device_name: Option<String>,
    pub threads: Option<i64>,
    /// roli's clean logits on the AA set against the twin's: the same model?
    pub parity: Value,
    pub errors: BTreeMap<String, String>,
    pub compile: Value,
}

impl TorchReport {
    fn missing(status: &str, reason: Option<String>, python: Option<String>) -> Self {
        TorchReport {
            status: status.into(),
            reason,
            python,
            versions: Value::Null,
            device_name: None,
            threads: None,
            parity: Value::Null,
            errors: BTreeMap::new(),
            compile: Value::Null,
        }
    }
}

/// The whole outcome (`--json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub settings: Settings,
    pub flops: Option<FlopReport>,
    pub torch: TorchReport,
    pub items: Vec<ItemResult>,
}

/// Peak device memory (bytes allocated by libtorch's caching allocator) since the last
/// [`reset_peak_memory`]; `None` on the CPU, which has no such statistics.
pub fn peak_memory(device: Device) -> Option<u64> {
    match device {
        Device::Cuda(i) => roli_torch_ext::memory::peak_allocated(i).ok().flatten(),
        _ => None,
    }
}

/// Starts a new peak for [`peak_memory`].
pub fn reset_peak_memory(device: Device) {
    if let Device::Cuda(i) = device {
        let _ = roli_torch_ext::memory::reset_peak(i);
    }
}

/// How the PyTorch side rebuilds a preset: a timm model name where roli's preset is one,
/// otherwise the family's constructor kwargs (as `crates/roli-models/tests/golden/gen.py` does).
pub fn twin(desc: &BackboneDescriptor) -> anyhow::Result<Value> {
    const TIMM_NAMES: [&str; 4] = ["swin_base_patch4_window7_224", "vit_base_patch16_224", "resnet18", "resnet50"];
    let timm_name = TIMM_NAMES.contains(&desc.name.as_str()).then(|| desc.name.clone());
    let (family, kwargs) = match &desc.arch {
        ArchConfig::Vit(c) => (
            "vit",
            json!({
                "img_size": c.img_size, "patch_size": c.patch_size, "in_chans": c.in_chans,
                "embed_dim": c.embed_dim, "depth": c.depth, "num_heads": c.num_heads,
                "mlp_ratio": c.mlp_ratio, "qkv_bias": c.qkv_bias, "drop_path_rate": c.drop_path_rate,
                "pos_drop_rate": c.dropout, "proj_drop_rate": c.dropout,
            }),
        ),
        ArchConfig::Swin(c) => (
            "swin",
            json!({
                "img_size": c.img_size, "patch_size": c.patch_size, "in_chans": c.in_chans,
                "embed_dim": c.embed_dim, "depths": c.depths, "num_heads": c.num_heads,
                "window_size": c.window_size, "mlp_ratio": c.mlp_ratio, "qkv_bias": c.qkv_bias,
                "drop_path_rate": c.drop_path_rate,
            }),
        ),
        ArchConfig::Resnet(c) => (
            "resnet",
            json!({
                "block": match c.block {
                    roli_models::resnet::BlockKind::Basic => "basic",
                    roli_models::resnet::BlockKind::Bottleneck => "bottleneck",
                },
                "layers": c.layers, "channels": c.channels, "in_chans": c.in_chans,
                "stem_width": c.stem_width, "drop_path_rate": c.drop_path_rate,
            }),
        ),
        ArchConfig::Lenet(c) => (
            "lenet",
            json!({"in_chans": c.in_chans, "conv1": c.conv1, "conv2": c.conv2, "hidden": c.hidden, "img_size": c.img_size}),
        ),
        ArchConfig::TorchScript(_) => bail!("roli bench needs a registry preset, not a TorchScript model"),
    };
    Ok(json!({
        "family": family,
        "timm_name": timm_name,
        "kwargs": kwargs,
        "mean": desc.mean,
        "std": desc.std,
        "classifier": desc.classifier,
        "native_size": desc.input_size()[1],
    }))
}

/// Runs the benchmark: writes the models and data, runs the PyTorch side on them (unless
/// disabled), then times roli's side.
pub fn run(req: &BenchRequest) -> anyhow::Result<BenchReport> {
    if req.iters == 0 || req.batch < 1 || req.aa_n < 1 || req.aa_iters == 0 || req.classes < 4 {
        bail!("roli bench needs --iters ≥ 1, --batch ≥ 1, --aa-n ≥ 1, --aa-iters ≥ 1 and --classes ≥ 4 (APGD-T's targeted DLR loss needs 4)");
    }
    let desc = roli_models::descriptor(&req.preset)?;
    let twin = twin(&desc)?;
    let [c, native, _] = desc.input_size();
    let size = req.image_size.unwrap_or(native);
    let lora_cfg = peft::Settings::default().lora;
    let settings = Settings {
        preset: req.preset.clone(),
        batch: req.batch,
        image_size: size,
        native_size: native,
        channels: c,
        classes: req.classes,
        device: device::name(req.device),
        precision: req.precision,
        attention: req.attention,
        optimizer_impl: OptimImplChoice::Auto.resolve(req.device),
        threads: tch::get_num_threads() as i64,
        iters: req.iters,
        warmup: req.warmup,
        aa_iters: req.aa_iters,
        aa_n: req.aa_n,
        aa_targets: 9usize.min(req.classes as usize - 1),
        eps: EPS,
        train_pgd: PgdSetting { steps: TRAIN_STEPS, step: STEP },
        eval_pgd: PgdSetting { steps: EVAL_STEPS, step: STEP },
        lora_rank: lora_cfg.rank,
        lora_alpha: lora_cfg.alpha,
        lr: LR,
        weight_decay: WEIGHT_DECAY,
        peak_tflops: req.peak_tflops,
        seed: req.seed,
    };
    let tmp = TempDir::new()?;
    let has_blocks = matches!(desc.arch, ArchConfig::Vit(_) | ArchConfig::Swin(_));
    let prepared = prepare(req, &settings, has_blocks, &tmp.0)?;
    // The PyTorch side runs while roli only holds its models and data: neither process keeps a
    // cache of device memory from its timed work while the other one runs.
    let (torch, torch_out) = if req.torch {
        torch_side(req, &settings, &twin, has_blocks, &tmp.0)
    } else {
        (TorchReport::missing("disabled", Some("--no-torch".into()), None), None)
    };
    let roli = roli_side(req, &settings, prepared)?;
    Ok(assemble(settings, roli, torch, torch_out.as_ref()))
}

/// Joins both sides into rows, with FLOPs and ratios.
fn assemble(settings: Settings, roli: RoliSide, torch: TorchReport, t: Option<&TorchOut>) -> BenchReport {
    let flops = t.filter(|t| !t.flops_per_image.is_empty()).map(|t| FlopReport {
        source: format!(
            "{} on the PyTorch twin (per image: eval forward; forward + input gradient; training forward + backward), × each side's own pass counts",
            t.flop_source.clone().unwrap_or_else(|| "torch.utils.flop_counter.FlopCounterMode".into())
        ),
        per_image: t.flops_per_image.clone(),
    });
    let model_flops = |item: &str| {
        let key = if item == TRAIN_LORA { "lora" } else { "full" };
        flops.as_ref().and_then(|f| f.per_image.get(key).copied())
    };
    let peak = settings.peak_tflops;
    let torch_item = |name: &str| -> (Option<SideTiming>, Option<String>) {
        let Some(t) = t else { return (None, None) };
        if let Some(e) = t.errors.get(name) {
            return (None, Some(format!("PyTorch side failed: {e}")));
        }
        let Some(i) = t.items.get(name) else { return (None, None) };
        let Some(secs) = i.seconds_per_iter else { return (None, Some("PyTorch timing not finite".into())) };
        let work = Work {
            forward_examples: i.forward_examples.unwrap_or(f64::NAN),
            backward_examples: i.backward_examples.unwrap_or(f64::NAN),
            train_examples: i.train_examples,
        };
        (Some(SideTiming::new(secs, i.images_per_iter, work, i.peak_memory_bytes)), None)
    };
    let mut items = Vec::new();
    let mut pgd10_roli = None;
    for (name, images, r) in roli.timings {
        let (roli_t, mut note) = match r {
            Ok(t) => (Some(t.with_flops(model_flops(&name).as_ref(), peak)), None),
            Err(why) => (None, Some(why)),
        };
        let (torch_t, tnote) = torch_item(&name);
        let torch_t = torch_t.map(|x| x.with_flops(model_flops(&name).as_ref(), peak));
        note = note.or(tnote).or_else(|| work_note(roli_t.as_ref(), torch_t.as_ref()));
        if name == PGD10_EVAL {
            pgd10_roli = roli_t.clone();
        }
        let ratio = roli_t.as_ref().zip(torch_t.as_ref()).and_then(|(a, b)| ratio(a.images_per_s, b.images_per_s));
        items.push(ItemResult { item: name, images_per_iter: images, roli: roli_t, torch: torch_t, ratio, note });
    }
    if let Some(tc) = t.filter(|t| t.items.contains_key(PGD10_COMPILED)) {
        let (torch_t, _) = torch_item(PGD10_COMPILED);
        let torch_t = torch_t.map(|x| x.with_flops(model_flops(PGD10_EVAL).as_ref(), peak));
        let ratio = pgd10_roli.as_ref().zip(torch_t.as_ref()).and_then(|(a, b)| ratio(a.images_per_s, b.images_per_s));
        items.push(ItemResult {
            item: PGD10_COMPILED.into(),
            images_per_iter: tc.items[PGD10_COMPILED].images_per_iter as i64,
            roli: pgd10_roli,
            torch: torch_t,
            ratio,
            note: Some("PyTorch: torch.compile(model); roli: the same eager pgd10-eval".into()),
        });
    }
    BenchReport { settings, flops, torch, items }
}

#[cfg(test)]
mod tests;
