//! Shared helpers: golden-data generation, io files, parity checks, tiny descriptors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use roli_models::descriptor::{ArchConfig, BackboneDescriptor, ParamLayout};
use roli_models::registry::{IMAGENET_MEAN, IMAGENET_STD};
use roli_models::resnet::{BlockKind, ResNetConfig};
use roli_models::Classifier;
use tch::{Kind, Tensor};

/// Tolerance of every fp32 parity check (the brief's requirement).
pub const PARITY_TOL: f64 = 1e-4;

pub fn python() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    p.exists().then_some(p)
}

fn gen_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gen.py")
}

/// Runs gen.py in `mode` into `CARGO_TARGET_TMPDIR/roli-models-golden/<mode>` unless a stamp
/// shows the same gen.py already produced it. Returns None (after printing a note) when the
/// venv's Python is absent.
pub fn generate(mode: &str, extra: &[&str]) -> Option<PathBuf> {
    let py = match python() {
        Some(p) => p,
        None => {
            eprintln!("note: .venv/bin/python not found; skipping golden-data test (run `make setup`)");
            return None;
        }
    };
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("roli-models-golden").join(mode);
    let script = std::fs::read(gen_script()).expect("tests/golden/gen.py is readable");
    let stamp_path = out.join("stamp");
    let mut stamp = script.clone();
    stamp.extend(extra.join("\n").as_bytes());
    if std::fs::read(&stamp_path).ok().as_deref() == Some(stamp.as_slice()) {
        return Some(out);
    }
    let status = Command::new(py).arg(gen_script()).arg(&out).arg(mode).args(extra).output().expect("python runs");
    assert!(status.status.success(), "gen.py {mode} failed:\n{}", String::from_utf8_lossy(&status.stderr));
    std::fs::write(&stamp_path, stamp).expect("write stamp");
    Some(out)
}

/// The tiny-model golden directory, generated once per test run.
pub fn tiny() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| generate("tiny", &[])).as_deref()
}

pub fn read_io(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).into_iter().collect()
}

pub fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shape mismatch");
    f64::try_from((a - b).abs().max()).unwrap()
}

/// Compares logits and input gradients (of sum(logits·w)) with the golden io file.
pub fn check_parity(label: &str, model: &Classifier, io: &HashMap<String, Tensor>) {
    let x = io["x"].to_kind(Kind::Float).set_requires_grad(true);
    let logits = model.forward_t(&x, false);
    let loss = (&logits * &io["w"]).sum(Kind::Float);
    let grad = Tensor::run_backward(&[loss], &[&x], false, false).remove(0);
    let dl = max_abs(&logits, &io["logits"]);
    let dg = max_abs(&grad, &io["grad"]);
    let scale = f64::try_from(io["logits"].abs().max()).unwrap();
    let gscale = f64::try_from(io["grad"].abs().max()).unwrap();
    println!(
        "{label}: max|Δlogits| = {dl:.3e} (max|logit| {scale:.3}), max|Δgrad| = {dg:.3e} (max|grad| {gscale:.3e})"
    );
    assert!(scale > 1e-2 && gscale > 0.0, "{label}: degenerate golden data");
    assert!(dl <= PARITY_TOL, "{label}: logits differ by {dl:e}");
    assert!(dg <= PARITY_TOL, "{label}: input gradients differ by {dg:e}");
}

/// The tiny ResNets gen.py builds (timm `ResNet(layers=(1,1,1,1), channels=(8,16,32,64))`, default 64-wide stem).
pub fn tiny_resnet(kind: BlockKind) -> BackboneDescriptor {
    BackboneDescriptor {
        name: format!("resnet_tiny_{kind:?}").to_lowercase(),
        arch: ArchConfig::Resnet(ResNetConfig {
            img_size: 32,
            in_chans: 3,
            block: kind,
            layers: vec![1, 1, 1, 1],
            channels: vec![8, 16, 32, 64],
            stem_width: 64,
            drop_path_rate: 0.0,
        }),
        mean: IMAGENET_MEAN.to_vec(),
        std: IMAGENET_STD.to_vec(),
        classifier: "fc".into(),
        layout: ParamLayout::Timm,
    }
}

/// `$ROLI_CACHE` or `~/.cache/roli`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("ROLI_CACHE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/roli"),
    }
}

/// Reads an uncompressed IDX file (MNIST) into a u8 tensor of its shape.
pub fn read_idx(path: &Path) -> Tensor {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dims = data[3] as usize;
    let shape: Vec<i64> =
        (0..dims).map(|i| u32::from_be_bytes(data[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as i64).collect();
    Tensor::from_slice(&data[4 + 4 * dims..]).view(shape.as_slice())
}
