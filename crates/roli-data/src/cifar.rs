//! CIFAR-10/100 in both official encodings.
//! * Binary: `data_batch_{1..5}.bin`/`test_batch.bin` (CIFAR-10, rows of 1 label byte + 3072
//!   pixel bytes) and `train.bin`/`test.bin` (CIFAR-100, rows of coarse + fine label + 3072).
//! * Python: pickled dicts `data_batch_{1..5}`/`test_batch` (CIFAR-10, `labels`) and
//!   `train`/`test` (CIFAR-100, `fine_labels`), `data` a uint8 array `[N, 3072]`.
//!
//! Pixels are stored plane by plane (R then G then B), 32×32 each: exactly CHW.
use crate::dataset::{Split, TensorDataset};
use crate::error::{DataError, Result};
use crate::pickle;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Bytes of one image.
pub const PIXELS: usize = 3 * 32 * 32;

/// Which CIFAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarKind {
    Cifar10,
    Cifar100,
}

impl CifarKind {
    pub fn num_classes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 10,
            CifarKind::Cifar100 => 100,
        }
    }
    /// Label bytes before the pixels in the binary format.
    fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            CifarKind::Cifar100 => 2,
        }
    }
    pub fn class_names(self) -> Vec<String> {
        match self {
            CifarKind::Cifar10 => CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
            CifarKind::Cifar100 => CIFAR100_CLASSES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
pub const CIFAR100_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

const FIX: &str =
    "the file is damaged or not in the official CIFAR format; re-download the official archive and unpack it unchanged";

/// Parses one binary batch file into (pixels, labels). For CIFAR-100 the fine label is used.
pub fn parse_binary(path: &Path, bytes: &[u8], kind: CifarKind) -> Result<(Vec<u8>, Vec<i64>)> {
    let row = kind.label_bytes() + PIXELS;
    if bytes.is_empty() || bytes.len() % row != 0 {
        return Err(DataError::corrupt(
            path,
            format!("length {} is not a multiple of the {row}-byte {kind:?} record", bytes.len()),
            FIX,
        ));
    }
    let n = bytes.len() / row;
    let mut px = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for r in bytes.chunks_exact(row) {
        let label = r[kind.label_bytes() - 1] as i64;
        if label as usize >= kind.num_classes() {
            return Err(DataError::corrupt(
                path,
                format!("label {label} ≥ {} classes (is this {kind:?}?)", kind.num_classes()),
                FIX,
            ));
        }
        labels.push(label);
        px.extend_from_slice(&r[kind.label_bytes()..]);
    }
    Ok((px, labels))
}

/// Parses one python-format batch (a pickled dict).
pub fn parse_python(path: &Path, bytes: &[u8], kind: CifarKind) -> Result<(Vec<u8>, Vec<i64>)> {
    let v = pickle::parse(bytes).map_err(|e| DataError::corrupt(path, e, FIX))?;
    let key = match kind {
        CifarKind::Cifar10 => "labels",
        CifarKind::Cifar100 => "fine_labels",
    };
    let labels = v
        .get(key)
        .and_then(|l| l.as_int_list())
        .ok_or_else(|| DataError::corrupt(path, format!("no '{key}' list in the pickled dict"), FIX))?;
    let (shape, raw) = v
        .get("data")
        .and_then(|d| d.as_numpy_bytes())
        .ok_or_else(|| DataError::corrupt(path, "no numpy 'data' array in the pickled dict", FIX))?;
    if shape.len() != 2
        || shape[1] as usize != PIXELS
        || shape[0] as usize != labels.len()
        || raw.len() != labels.len() * PIXELS
    {
        return Err(DataError::corrupt(
            path,
            format!("data shape {shape:?} / {} bytes do not match {} labels × {PIXELS}", raw.len(), labels.len()),
            FIX,
        ));
    }
    if let Some(l) = labels.iter().find(|&&l| l < 0 || l as usize >= kind.num_classes()) {
        return Err(DataError::corrupt(path, format!("label {l} outside 0..{}", kind.num_classes()), FIX));
    }
    Ok((raw, labels))
}

/// The files of one official split, in the canonical order, and whether they are binary.
fn split_files(dir: &Path, kind: CifarKind, train: bool) -> Option<(Vec<PathBuf>, bool)> {
    let bin: Vec<PathBuf> = match (kind, train) {
        (CifarKind::Cifar10, true) => (1..=5).map(|i| dir.join(format!("data_batch_{i}.bin"))).collect(),
        (CifarKind::Cifar10, false) => vec![dir.join("test_batch.bin")],
        (CifarKind::Cifar100, true) => vec![dir.join("train.bin")],
        (CifarKind::Cifar100, false) => vec![dir.join("test.bin")],
    };
    if bin.iter().all(|p| p.is_file()) {
        return Some((bin, true));
    }
    let py: Vec<PathBuf> = bin.iter().map(|p| p.with_extension("")).collect();
    if py.iter().all(|p| p.is_file()) {
        return Some((py, false));
    }
    None
}

/// Loads an official split (`train` = the 50 000 official training images, `test` = 10 000).
pub fn load_official(dir: &Path, kind: CifarKind, train: bool) -> Result<(Tensor, Tensor)> {
    let (files, binary) = split_files(dir, kind, train).ok_or_else(|| {
        DataError::corrupt(
            dir,
            format!("no {kind:?} {} files", if train { "train" } else { "test" }),
            "unpack the official cifar-10-binary / cifar-10-python (or CIFAR-100) archive into this folder",
        )
    })?;
    let mut px = Vec::new();
    let mut labels = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).map_err(|e| DataError::io(f, e))?;
        let (p, l) = if binary { parse_binary(f, &bytes, kind)? } else { parse_python(f, &bytes, kind)? };
        px.extend(p);
        labels.extend(l);
    }
    let n = labels.len() as i64;
    let x = Tensor::from_slice(&px).view([n, 3, 32, 32]).to_kind(tch::Kind::Float) / 255.0;
    Ok((x, Tensor::from_slice(&labels)))
}

/// A split of CIFAR with the reference's VTAB cut (train = first 90 % of the official train
/// set, val = the last 10 %, test = the official test set).
pub fn load_split(dir: &Path, kind: CifarKind, split: Split, train_percent: u32) -> Result<TensorDataset> {
    let name = format!("{}/{split}", if kind == CifarKind::Cifar10 { "cifar10" } else { "cifar100" });
    if split == Split::Test {
        let (x, y) = load_official(dir, kind, false)?;
        return TensorDataset::new(name, x, y, kind.class_names());
    }
    let (x, y) = load_official(dir, kind, true)?;
    let full = TensorDataset::new(name.clone(), x, y, kind.class_names())?;
    let (tr, va) = crate::dataset::vtab_cut(full.labels.size()[0] as usize, train_percent);
    let r = if split == Split::Train { tr } else { va };
    Ok(full.range(r.start, r.end, name))
}

/// Writes a binary batch (for tests and fixtures in the official format).
pub fn encode_binary(kind: CifarKind, pixels: &[u8], labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        if kind == CifarKind::Cifar100 {
            out.push(0);
        }
        out.push(*l);
        out.extend_from_slice(&pixels[i * PIXELS..(i + 1) * PIXELS]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Dataset;

    #[test]
    fn binary_cifar10_split_and_vtab_cut() {
        let d = tempfile::tempdir().unwrap();
        for i in 1..=5u8 {
            let px: Vec<u8> = (0..2 * PIXELS).map(|j| (j % 251) as u8).collect();
            std::fs::write(
                d.path().join(format!("data_batch_{i}.bin")),
                encode_binary(CifarKind::Cifar10, &px, &[i, 9]),
            )
            .unwrap();
        }
        std::fs::write(d.path().join("test_batch.bin"), encode_binary(CifarKind::Cifar10, &vec![255; PIXELS], &[3]))
            .unwrap();
        assert_eq!(crate::layout::detect(d.path(), None).unwrap(), crate::layout::Format::Cifar10);
        let tr = load_split(d.path(), CifarKind::Cifar10, Split::Train, 90).unwrap();
        let va = load_split(d.path(), CifarKind::Cifar10, Split::Val, 90).unwrap();
        let te = load_split(d.path(), CifarKind::Cifar10, Split::Test, 90).unwrap();
        assert_eq!((tr.len(), va.len(), te.len()), (9, 1, 1));
        assert_eq!(tr.labels()[..3], [1, 9, 2]);
        assert_eq!(va.labels(), vec![9]);
        assert_eq!(te.image_shape(), [3, 32, 32]);
        assert_eq!(te.images.max().double_value(&[]), 1.0);
        // Plane layout: pixel (c=1, y=0, x=0) is byte 1024 of the record.
        let v = tr.images.get(0).get(1).get(0).get(0).double_value(&[]);
        assert!((v - (1024 % 251) as f64 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn wrong_length_is_a_named_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("test_batch.bin");
        std::fs::write(&p, vec![0u8; PIXELS + 1 + 17]).unwrap();
        let e = load_official(d.path(), CifarKind::Cifar10, false).unwrap_err().to_string();
        assert!(e.contains("test_batch.bin") && e.contains("multiple of the 3073-byte"), "{e}");
    }

    #[test]
    fn cifar100_uses_fine_label() {
        let bytes = [vec![3u8, 77], vec![0u8; PIXELS]].concat();
        let (_, l) = parse_binary(Path::new("x"), &bytes, CifarKind::Cifar100).unwrap();
        assert_eq!(l, vec![77]);
    }
}
