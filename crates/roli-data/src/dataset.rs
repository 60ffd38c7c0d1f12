//! One `Dataset` abstraction for everything the toolkit trains or evaluates on: batches of
//! `[B, C, H, W]` f32 images in [0, 1] with `[B]` i64 labels. In-memory sets (MNIST, CIFAR)
//! are a [`TensorDataset`]; image folders decode lazily per batch ([`crate::folder::ImageListDataset`]).
use crate::error::{DataError, Result};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Which part of a dataset. `Train`/`Val` follow the reference's VTAB rule for sets that ship
/// only train/test: the first 90 % of the official train split is train, the last 10 % is val.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Split {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Split::Train),
            "val" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            other => Err(DataError::Invalid(format!("unknown split '{other}': expected train, val or test"))),
        }
    }
}

/// A labelled image dataset. `batch` is the only way data leaves a dataset, so in-memory and
/// lazily decoded sets look the same to training and evaluation.
pub trait Dataset: Send {
    /// A short name for logs and reports (e.g. `fashion-mnist/test`).
    fn name(&self) -> &str;
    /// Number of examples.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of classes K (labels are 0..K).
    fn num_classes(&self) -> i64;
    /// Class names, index = label.
    fn class_names(&self) -> &[String];
    /// `[C, H, W]` of one example as returned by `batch`.
    fn image_shape(&self) -> [i64; 3];
    /// Images `[B, C, H, W]` (f32, [0,1]) and labels `[B]` (i64) for `indices`. `augment` is the
    /// RNG for random train-time transforms; `None` means the deterministic eval transform.
    fn batch(&self, indices: &[usize], augment: Option<&mut ChaCha8Rng>) -> Result<(Tensor, Tensor)>;
    /// All labels, in order (cheap: no image decoding).
    fn labels(&self) -> Vec<i64>;
    /// A fingerprint of the content (SHA-256 over labels and pixels or file list), for manifests.
    fn fingerprint(&self) -> String;
}

/// A dataset held in memory as one tensor.
#[derive(Debug)]
pub struct TensorDataset {
    pub name: String,
    /// `[N, C, H, W]` f32 in [0, 1].
    pub images: Tensor,
    /// `[N]` i64.
    pub labels: Tensor,
    pub num_classes: i64,
    pub class_names: Vec<String>,
}

impl TensorDataset {
    /// Checks shapes, dtypes, value range and label range, so a wrong loader fails here and not
    /// in the middle of training.
    pub fn new(name: impl Into<String>, images: Tensor, labels: Tensor, class_names: Vec<String>) -> Result<Self> {
        let name = name.into();
        let num_classes = class_names.len() as i64;
        let bad = |what: String| Err(DataError::Invalid(format!("dataset '{name}': {what}")));
        if images.dim() != 4 || images.kind() != Kind::Float {
            return bad(format!("images must be [N,C,H,W] f32, got {:?} {:?}", images.size(), images.kind()));
        }
        if labels.dim() != 1 || labels.kind() != Kind::Int64 || labels.size()[0] != images.size()[0] {
            return bad(format!(
                "labels must be [N] i64 matching {} images, got {:?} {:?}",
                images.size()[0],
                labels.size(),
                labels.kind()
            ));
        }
        if images.numel() > 0 {
            let (lo, hi) = (images.min().double_value(&[]), images.max().double_value(&[]));
            if !(lo >= 0.0 && hi <= 1.0) {
                return bad(format!("pixel values must lie in [0,1], got [{lo}, {hi}]"));
            }
            let (lmin, lmax) = (labels.min().int64_value(&[]), labels.max().int64_value(&[]));
            if lmin < 0 || lmax >= num_classes {
                return bad(format!("labels must lie in 0..{num_classes}, got {lmin}..={lmax}"));
            }
        }
        Ok(TensorDataset { name, images, labels, num_classes, class_names })
    }

    /// The examples at `indices` as a new in-memory dataset (e.g. a fixed test subset).
    pub fn subset(&self, indices: &[usize], name: impl Into<String>) -> TensorDataset {
        let idx = Tensor::from_slice(&indices.iter().map(|&i| i as i64).collect::<Vec<_>>());
        TensorDataset {
            name: name.into(),
            images: self.images.index_select(0, &idx),
            labels: self.labels.index_select(0, &idx),
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
        }
    }

    /// Rows `[start, end)` as a new dataset (used for the VTAB train/val cut).
    pub fn range(&self, start: usize, end: usize, name: impl Into<String>) -> TensorDataset {
        let len = (end - start) as i64;
        TensorDataset {
            name: name.into(),
            images: self.images.narrow(0, start as i64, len),
            labels: self.labels.narrow(0, start as i64, len),
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
        }
    }
}

impl Dataset for TensorDataset {
    fn name(&self) -> &str {
        &self.name
    }
    fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }
    fn num_classes(&self) -> i64 {
        self.num_classes
    }
    fn class_names(&self) -> &[String] {
        &self.class_names
    }
    fn image_shape(&self) -> [i64; 3] {
        let s = self.images.size();
        [s[1], s[2], s[3]]
    }
    fn batch(&self, indices: &[usize], _augment: Option<&mut ChaCha8Rng>) -> Result<(Tensor, Tensor)> {
        let n = self.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(DataError::Invalid(format!("index {bad} out of range for '{}' with {n} examples", self.name)));
        }
        let idx = Tensor::from_slice(&indices.iter().map(|&i| i as i64).collect::<Vec<_>>());
        Ok((self.images.index_select(0, &idx), self.labels.index_select(0, &idx)))
    }
    fn labels(&self) -> Vec<i64> {
        Vec::<i64>::try_from(&self.labels).unwrap_or_default()
    }
    fn fingerprint(&self) -> String {
        tensor_fingerprint(&[&self.images, &self.labels])
    }
}

/// SHA-256 over the raw bytes (contiguous, CPU) of each tensor, with shapes.
pub fn tensor_fingerprint(tensors: &[&Tensor]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for t in tensors {
        let t = t.to_device(tch::Device::Cpu).contiguous();
        h.update(format!("{:?}{:?}", t.kind(), t.size()).as_bytes());
        let n = t.numel() * t.kind().elt_size_in_bytes();
        let mut buf = vec![0u8; n];
        t.copy_data_u8(&mut buf, t.numel());
        h.update(&buf);
    }
    hex::encode(h.finalize())
}

/// The reference's positional VTAB cut: `train = [0, n·p/100)`, `val = [n·p/100, n)`.
pub fn vtab_cut(n: usize, train_percent: u32) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let cut = n * train_percent.min(100) as usize / 100;
    (0..cut, cut..n)
}

/// A view of some examples of another dataset (a fixed evaluation subset, a size limit).
pub struct Subset {
    pub inner: Box<dyn Dataset>,
    pub indices: Vec<usize>,
    pub name: String,
}

impl Subset {
    /// The first `n` examples of `inner` (all if it has fewer).
    pub fn first(inner: Box<dyn Dataset>, n: usize) -> Self {
        let k = n.min(inner.len());
        let name = format!("{}[:{k}]", inner.name());
        Subset { indices: (0..k).collect(), inner, name }
    }
}

impl Dataset for Subset {
    fn name(&self) -> &str {
        &self.name
    }
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn num_classes(&self) -> i64 {
        self.inner.num_classes()
    }
    fn class_names(&self) -> &[String] {
        self.inner.class_names()
    }
    fn image_shape(&self) -> [i64; 3] {
        self.inner.image_shape()
    }
    fn batch(&self, indices: &[usize], augment: Option<&mut ChaCha8Rng>) -> Result<(Tensor, Tensor)> {
        let mapped: Vec<usize> = indices
            .iter()
            .map(|&i| {
                self.indices
                    .get(i)
                    .copied()
                    .ok_or_else(|| DataError::Invalid(format!("index {i} out of range for '{}'", self.name)))
            })
            .collect::<Result<_>>()?;
        self.inner.batch(&mapped, augment)
    }
    fn labels(&self) -> Vec<i64> {
        let all = self.inner.labels();
        self.indices.iter().map(|&i| all[i]).collect()
    }
    fn fingerprint(&self) -> String {
        crate::cache::sha256_bytes(format!("{}:{:?}", self.inner.fingerprint(), self.indices).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: i64) -> TensorDataset {
        let images = Tensor::arange(n * 4, (Kind::Float, tch::Device::Cpu)).view([n, 1, 2, 2]) / (n * 4) as f64;
        let labels = Tensor::arange(n, (Kind::Int64, tch::Device::Cpu)).remainder(3);
        TensorDataset::new("toy", images, labels, vec!["a".into(), "b".into(), "c".into()]).unwrap()
    }

    #[test]
    fn batch_returns_requested_rows() {
        let d = toy(10);
        let (x, y) = d.batch(&[7, 2], None).unwrap();
        assert_eq!(x.size(), vec![2, 1, 2, 2]);
        assert_eq!(Vec::<i64>::try_from(&y).unwrap(), vec![1, 2]);
        assert!(d.batch(&[10], None).unwrap_err().to_string().contains("out of range"));
    }

    #[test]
    fn validation_rejects_bad_ranges() {
        let x = Tensor::ones([2, 1, 2, 2], (Kind::Float, tch::Device::Cpu)) * 2.0;
        let y = Tensor::from_slice(&[0i64, 1]);
        let e = TensorDataset::new("bad", x, y.shallow_clone(), vec!["a".into(), "b".into()]).unwrap_err();
        assert!(e.to_string().contains("[0,1]"), "{e}");
        let x = Tensor::zeros([2, 1, 2, 2], (Kind::Float, tch::Device::Cpu));
        let e = TensorDataset::new("bad", x, y, vec!["a".into()]).unwrap_err();
        assert!(e.to_string().contains("labels must lie"), "{e}");
    }

    #[test]
    fn vtab_cut_is_first_90_last_10() {
        assert_eq!(vtab_cut(50000, 90), (0..45000, 45000..50000));
        assert_eq!(vtab_cut(60000, 90), (0..54000, 54000..60000));
        assert_eq!(vtab_cut(7, 100), (0..7, 7..7));
    }

    #[test]
    fn fingerprint_changes_with_content() {
        let a = toy(5);
        let b = toy(6);
        assert_eq!(a.fingerprint(), toy(5).fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
