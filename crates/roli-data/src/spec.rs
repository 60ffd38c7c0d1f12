//! What `--data NAME|PATH` means: a built-in dataset from the cache, or a user's folder in one of
//! the recognised layouts. [`resolve`] decides, [`load`] gives a split as a [`Dataset`].
use crate::cifar::{self, CifarKind};
use crate::dataset::{vtab_cut, Dataset, Split, TensorDataset};
use crate::error::{DataError, Result};
use crate::fetch::{cached_manifest, find_source, source_dir};
use crate::folder::ImageListDataset;
use crate::idx::read_idx;
use crate::layout::Format;
use crate::transforms::ImageTransform;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Built-in datasets (all real, fetched by `roli data fetch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Mnist,
    FashionMnist,
    /// The first 20 CIFAR-10 test images (foolbox samples); test split only.
    Cifar10Samples,
    /// The first 20 CIFAR-100 test images (foolbox samples); test split only.
    Cifar100Samples,
}

impl Builtin {
    pub const ALL: [Builtin; 4] =
        [Builtin::Mnist, Builtin::FashionMnist, Builtin::Cifar10Samples, Builtin::Cifar100Samples];
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Mnist => "mnist",
            Builtin::FashionMnist => "fashion-mnist",
            Builtin::Cifar10Samples => "cifar10-samples",
            Builtin::Cifar100Samples => "cifar100-samples",
        }
    }
    /// The fetch source holding it.
    pub fn source(self) -> &'static str {
        match self {
            Builtin::Mnist => "mnist",
            Builtin::FashionMnist => "fashion-mnist",
            Builtin::Cifar10Samples | Builtin::Cifar100Samples => "foolbox",
        }
    }
    pub fn class_names(self) -> Vec<String> {
        match self {
            Builtin::Mnist => (0..10).map(|i| i.to_string()).collect(),
            Builtin::FashionMnist => FASHION_CLASSES.iter().map(|s| s.to_string()).collect(),
            Builtin::Cifar10Samples => CifarKind::Cifar10.class_names(),
            Builtin::Cifar100Samples => CifarKind::Cifar100.class_names(),
        }
    }
}

pub const FASHION_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// A resolved `--data` argument.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSpec {
    Builtin(Builtin),
    /// A folder with `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`, `t10k-…`.
    IdxFolder(PathBuf),
    /// An official CIFAR folder (binary or python version).
    Cifar(PathBuf, CifarKind),
    /// `<root>/train/<class>/*`, `<root>/test/<class>/*`, optional `<root>/val/<class>/*`.
    ImageFolder(PathBuf),
    /// Reference-repo JSON splits: `<root>/{train,val,test}.json` + an image folder.
    JsonSplits {
        root: PathBuf,
        images: PathBuf,
    },
}

impl DataSpec {
    /// A stable description for manifests and reports.
    pub fn describe(&self) -> String {
        match self {
            DataSpec::Builtin(b) => b.name().to_string(),
            DataSpec::IdxFolder(p) => format!("idx:{}", p.display()),
            DataSpec::Cifar(p, k) => format!("{k:?}:{}", p.display()).to_lowercase(),
            DataSpec::ImageFolder(p) => format!("imagefolder:{}", p.display()),
            DataSpec::JsonSplits { root, .. } => format!("jsonsplits:{}", root.display()),
        }
    }
}

fn idx_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [dir.join(stem), dir.join(format!("{stem}.gz"))].into_iter().find(|p| p.exists())
}

/// Resolves a built-in name or a folder path, detecting the folder's format from its files.
pub fn resolve(spec: &str) -> Result<DataSpec> {
    resolve_as(spec, None)
}

/// Resolves a built-in name or a folder path; `format` (`--format`, `data.format`) settles a
/// folder whose files match two layouts ([`crate::layout::detect`]).
pub fn resolve_as(spec: &str, format: Option<Format>) -> Result<DataSpec> {
    if let Some(b) =
        Builtin::ALL.into_iter().find(|b| b.name() == spec || (spec == "fmnist" && *b == Builtin::FashionMnist))
    {
        if let Some(f) = format {
            return Err(DataError::Invalid(format!(
                "format {f} is for folders, and '{spec}' is a built-in dataset; drop --format (or data.format)"
            )));
        }
        return Ok(DataSpec::Builtin(b));
    }
    let p = PathBuf::from(spec);
    let known = Builtin::ALL.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ");
    if !p.is_dir() {
        return Err(DataError::UnknownDataset(spec.to_string(), known));
    }
    Ok(match crate::layout::detect(&p, format)? {
        Format::Idx => DataSpec::IdxFolder(p),
        Format::Cifar10 => DataSpec::Cifar(p, CifarKind::Cifar10),
        Format::Cifar100 => DataSpec::Cifar(p, CifarKind::Cifar100),
        Format::Imagefolder => DataSpec::ImageFolder(p),
        Format::JsonSplits => {
            let images = json_image_dir(&p)?;
            DataSpec::JsonSplits { root: p, images }
        }
    })
}

/// The image folder of a JSON-splits dataset: the first of `./`, `images/`, `Images/`,
/// `256_ObjectCategories/` holding the first image `train.json` names.
fn json_image_dir(p: &Path) -> Result<PathBuf> {
    let first = std::fs::read_to_string(p.join("train.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&t).ok())
        .and_then(|m| m.keys().next().cloned());
    ["", "images", "Images", "256_ObjectCategories"]
        .iter()
        .map(|s| if s.is_empty() { p.to_path_buf() } else { p.join(s) })
        .find(|d| first.as_ref().is_some_and(|f| d.join(f).exists()))
        .ok_or_else(|| {
            DataError::corrupt(
                p.join("train.json"),
                "its first image is in none of ./, images/, Images/, 256_ObjectCategories/",
                "put the image folder next to train.json",
            )
        })
}

/// Options that shape splits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadOptions {
    /// Percent of the official train set used as train (rest = val), reference default 90.
    pub train_percent: u32,
    /// Transform of image-file datasets (train-time; eval uses its deterministic version).
    pub image_transform: ImageTransform,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { train_percent: 90, image_transform: ImageTransform::IDENTITY }
    }
}

/// Reads an IDX image/label pair into a dataset.
pub fn load_idx_pair(
    images: &Path,
    labels: &Path,
    name: &str,
    class_names: Option<Vec<String>>,
) -> Result<TensorDataset> {
    let im = read_idx(images)?;
    let lb = read_idx(labels)?;
    if im.dims.len() != 3 {
        return Err(DataError::corrupt(
            images,
            format!("has {} dimensions; images need 3 (N, H, W)", im.dims.len()),
            "pass the *-images-idx3-ubyte file",
        ));
    }
    if lb.dims.len() != 1 || lb.dims[0] != im.dims[0] {
        return Err(DataError::corrupt(
            labels,
            format!("has shape {:?} but {} holds {} images", lb.dims, images.display(), im.dims[0]),
            "pair each images file with its own labels file",
        ));
    }
    let (n, h, w) = (im.dims[0] as i64, im.dims[1] as i64, im.dims[2] as i64);
    let x = Tensor::from_slice(&im.data).view([n, 1, h, w]).to_kind(Kind::Float) / 255.0;
    let labels_v: Vec<i64> = lb.data.iter().map(|&v| v as i64).collect();
    let k = labels_v.iter().copied().max().unwrap_or(0) + 1;
    let names = class_names.unwrap_or_else(|| (0..k.max(1)).map(|i| i.to_string()).collect());
    TensorDataset::new(name, x, Tensor::from_slice(&labels_v), names)
}

fn idx_split(
    dir: &Path,
    name: &str,
    split: Split,
    opts: &LoadOptions,
    classes: Option<Vec<String>>,
) -> Result<TensorDataset> {
    let prefix = if split == Split::Test { "t10k" } else { "train" };
    let missing = |what: &str| {
        DataError::corrupt(dir, format!("has no {prefix}-{what}-ubyte[.gz]"), "an IDX folder needs train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (optionally .gz)")
    };
    let im = idx_file(dir, &format!("{prefix}-images-idx3-ubyte")).ok_or_else(|| missing("images-idx3"))?;
    let lb = idx_file(dir, &format!("{prefix}-labels-idx1-ubyte")).ok_or_else(|| missing("labels-idx1"))?;
    let full = load_idx_pair(&im, &lb, &format!("{name}/{split}"), classes)?;
    if split == Split::Test {
        return Ok(full);
    }
    let (tr, va) = vtab_cut(full.labels.size()[0] as usize, opts.train_percent);
    let r = if split == Split::Train { tr } else { va };
    Ok(full.range(r.start, r.end, format!("{name}/{split}")))
}

/// Parses foolbox sample names `<set>_<idx>_<label>.<ext>`.
pub fn parse_sample_name(file: &str) -> Option<(String, usize, i64)> {
    let stem = file.rsplit_once('.')?.0;
    let mut parts = stem.rsplitn(3, '_');
    let label = parts.next()?.parse().ok()?;
    let idx = parts.next()?.parse().ok()?;
    Some((parts.next()?.to_string(), idx, label))
}

fn foolbox_samples(set: &str, b: Builtin) -> Result<TensorDataset> {
    let dir = source_dir(find_source("foolbox").expect("foolbox source is in the table"));
    let mut files: Vec<(usize, i64, PathBuf)> = std::fs::read_dir(&dir)
        .map_err(|e| DataError::io(&dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let (s, i, l) = parse_sample_name(&p.file_name()?.to_string_lossy())?;
            (s == set).then_some((i, l, p))
        })
        .collect();
    files.sort();
    let mut px = Vec::new();
    let mut labels = Vec::new();
    for (_, l, p) in &files {
        let img = crate::folder::open_image(p)?;
        if (img.width(), img.height()) != (32, 32) {
            return Err(DataError::corrupt(p, "is not 32×32", "re-run `roli data fetch foolbox --force`"));
        }
        px.extend(crate::transforms::image_to_chw(&img, 3));
        labels.push(*l);
    }
    let n = labels.len() as i64;
    TensorDataset::new(
        format!("{}/test", b.name()),
        Tensor::from_slice(&px).view([n, 3, 32, 32]),
        Tensor::from_slice(&labels),
        b.class_names(),
    )
}

/// Loads one split of a dataset.
pub fn load(spec: &DataSpec, split: Split, opts: &LoadOptions) -> Result<Box<dyn Dataset>> {
    match spec {
        DataSpec::Builtin(b) => {
            let source = find_source(b.source()).expect("every builtin has a source");
            if cached_manifest(source).is_none() {
                return Err(DataError::NotCached { name: source.name.into(), dir: source_dir(source) });
            }
            match b {
                Builtin::Mnist | Builtin::FashionMnist => {
                    Ok(Box::new(idx_split(&source_dir(source), b.name(), split, opts, Some(b.class_names()))?))
                }
                Builtin::Cifar10Samples | Builtin::Cifar100Samples => {
                    if split != Split::Test {
                        return Err(DataError::NoSplit {
                            name: b.name().into(),
                            split: split.to_string(),
                            available: "test".into(),
                        });
                    }
                    let set = if *b == Builtin::Cifar10Samples { "cifar10" } else { "cifar100" };
                    Ok(Box::new(foolbox_samples(set, *b)?))
                }
            }
        }
        DataSpec::IdxFolder(dir) => {
            let name = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "idx".into());
            Ok(Box::new(idx_split(dir, &name, split, opts, None)?))
        }
        DataSpec::Cifar(dir, kind) => Ok(Box::new(cifar::load_split(dir, *kind, split, opts.train_percent)?)),
        DataSpec::ImageFolder(root) => {
            let dir = root.join(split.as_str());
            // Every split shares train/'s label map; a test-only folder uses its own.
            let class_root = if root.join("train").is_dir() { root.join("train") } else { dir.clone() };
            // Without val/, train is cut below (train and val must not share images).
            if dir.is_dir() && (split != Split::Train || root.join("val").is_dir()) {
                return Ok(Box::new(ImageListDataset::image_folder(&dir, &class_root, opts.image_transform)?));
            }
            if split == Split::Test {
                return Err(DataError::NoSplit {
                    name: root.display().to_string(),
                    split: "test".into(),
                    available: "train (add <root>/test/<class>/…)".into(),
                });
            }
            if !class_root.is_dir() {
                return Err(DataError::NoSplit {
                    name: root.display().to_string(),
                    split: split.to_string(),
                    available: "test (add <root>/train/<class>/…)".into(),
                });
            }
            // No val/ folder: a fixed (seed 0) shuffle of train, cut train_percent / rest, so
            // both parts hold every class instead of a class-sorted positional cut.
            let mut all = ImageListDataset::image_folder(&class_root, &class_root, opts.image_transform)?;
            let mut order: Vec<usize> = (0..all.items.len()).collect();
            order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
            let (tr, va) = vtab_cut(order.len(), opts.train_percent);
            let keep: Vec<usize> = order[if split == Split::Train { tr } else { va }].to_vec();
            all.items = keep.into_iter().map(|i| all.items[i].clone()).collect();
            all.name = format!("{}/{split}", root.display());
            Ok(Box::new(all))
        }
        DataSpec::JsonSplits { root, images } => {
            let j = root.join(format!("{}.json", split.as_str()));
            let t = if split == Split::Train { opts.image_transform } else { opts.image_transform.eval_version() };
            Ok(Box::new(ImageListDataset::json_split(&j, images, t)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_names_parse() {
        assert_eq!(parse_sample_name("cifar100_03_51.png"), Some(("cifar100".into(), 3, 51)));
        assert_eq!(parse_sample_name("imagenet_00_243.jpg"), Some(("imagenet".into(), 0, 243)));
        assert_eq!(parse_sample_name("README"), None);
    }

    #[test]
    fn unknown_name_lists_choices() {
        let e = resolve("no-such-set").unwrap_err().to_string();
        assert!(e.contains("mnist") && e.contains("ImageFolder"), "{e}");
    }

    #[test]
    fn image_folder_without_val_cuts_train_into_disjoint_parts() {
        let d = tempfile::tempdir().unwrap();
        for split in ["train", "test"] {
            for c in ["a", "b"] {
                for i in 0..5u8 {
                    let p = d.path().join(split).join(c).join(format!("{i}.png"));
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    image::GrayImage::from_pixel(4, 4, image::Luma([i])).save(&p).unwrap();
                }
            }
        }
        let spec = resolve(d.path().to_str().unwrap()).unwrap();
        assert!(matches!(spec, DataSpec::ImageFolder(_)), "train/ and test/ directories: {spec:?}");
        let o = LoadOptions::default();
        let (tr, va) = (load(&spec, Split::Train, &o).unwrap(), load(&spec, Split::Val, &o).unwrap());
        assert_eq!((tr.len(), va.len(), load(&spec, Split::Test, &o).unwrap().len()), (9, 1, 10));
        // The same 10 images, each in exactly one part (their 4×4 pixels and labels tell them apart).
        let key = |ds: &dyn Dataset, i: usize| {
            let (x, y) = ds.batch(&[i], None).unwrap();
            (x.sum(Kind::Float).double_value(&[]).to_bits(), y.int64_value(&[0]))
        };
        let mut all: Vec<_> = (0..9).map(|i| key(tr.as_ref(), i)).chain([key(va.as_ref(), 0)]).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 10, "train and val share an image");
    }

    #[test]
    fn idx_folder_roundtrip_with_vtab_split() {
        let d = tempfile::tempdir().unwrap();
        let n = 20usize;
        let px: Vec<u8> = (0..n * 4).map(|i| (i % 256) as u8).collect();
        let lb: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
        std::fs::write(d.path().join("train-images-idx3-ubyte"), crate::idx::encode_idx(&[n, 2, 2], &px)).unwrap();
        std::fs::write(d.path().join("train-labels-idx1-ubyte"), crate::idx::encode_idx(&[n], &lb)).unwrap();
        std::fs::write(d.path().join("t10k-images-idx3-ubyte"), crate::idx::encode_idx(&[2, 2, 2], &px[..8])).unwrap();
        std::fs::write(d.path().join("t10k-labels-idx1-ubyte"), crate::idx::encode_idx(&[2], &lb[..2])).unwrap();
        let spec = resolve(d.path().to_str().unwrap()).unwrap();
        assert!(matches!(spec, DataSpec::IdxFolder(_)));
        let o = LoadOptions::default();
        let tr = load(&spec, Split::Train, &o).unwrap();
        let va = load(&spec, Split::Val, &o).unwrap();
        let te = load(&spec, Split::Test, &o).unwrap();
        assert_eq!((tr.len(), va.len(), te.len()), (18, 2, 2));
        assert_eq!(tr.num_classes(), 3);
        assert_eq!(va.labels(), vec![0, 1]);
        // mismatched label count
        std::fs::write(d.path().join("t10k-labels-idx1-ubyte"), crate::idx::encode_idx(&[3], &lb[..3])).unwrap();
        let e = load(&spec, Split::Test, &o).err().unwrap().to_string();
        assert!(e.contains("t10k-labels-idx1-ubyte") && e.contains("holds 2 images"), "{e}");
    }
}
