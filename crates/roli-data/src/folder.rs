//! Image-file datasets: torchvision-style ImageFolder trees (`<root>/<split>/<class>/*.png|jpg`)
//! and the reference repo's JSON split files (`train.json`/`val.json`/`test.json`, each an object
//! mapping an image path relative to the image folder to a class label, remapped per split to
//! contiguous ids via `sorted(set(labels))`). Images are decoded per batch.
use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::transforms::{image_to_chw, ImageTransform};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// File extensions treated as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "gif"];

/// A list of image files with labels, decoded lazily.
#[derive(Debug, Clone)]
pub struct ImageListDataset {
    pub name: String,
    pub items: Vec<(PathBuf, i64)>,
    pub class_names: Vec<String>,
    /// Train-time transform (its random parts are used only when an RNG is passed to `batch`).
    pub transform: ImageTransform,
    /// 1 (gray) or 3 (RGB); fixed per dataset from the first image.
    pub channels: i64,
    /// Output `[H, W]` after the transform (from the first image).
    pub hw: [i64; 2],
}

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

/// Decodes one image file with a message naming it on failure.
pub fn open_image(path: &Path) -> Result<image::DynamicImage> {
    image::open(path).map_err(|e| DataError::Image { path: path.to_path_buf(), detail: e.to_string() })
}

impl ImageListDataset {
    /// Builds the dataset and probes the first image for channels and output size.
    pub fn new(
        name: impl Into<String>,
        items: Vec<(PathBuf, i64)>,
        class_names: Vec<String>,
        transform: ImageTransform,
    ) -> Result<Self> {
        let name = name.into();
        let first = items.first().ok_or_else(|| DataError::Invalid(format!("dataset '{name}' has no images")))?;
        let img = open_image(&first.0)?;
        let channels = if matches!(img.color().channel_count(), 1 | 2) { 1 } else { 3 };
        let out = transform.eval_version().apply(img, None);
        let k = class_names.len() as i64;
        if let Some((p, l)) = items.iter().find(|(_, l)| *l < 0 || *l >= k) {
            return Err(DataError::Invalid(format!("{}: label {l} outside 0..{k}", p.display())));
        }
        Ok(ImageListDataset {
            name,
            items,
            class_names,
            transform,
            channels,
            hw: [out.height() as i64, out.width() as i64],
        })
    }

    /// ImageFolder: `<root>/<split>/<class>/<image>`; classes are the sorted sub-folder names of
    /// `class_root` (normally `<root>/train`) so every split shares one label map.
    pub fn image_folder(split_dir: &Path, class_root: &Path, transform: ImageTransform) -> Result<Self> {
        let classes: Vec<String> = sorted_dir(class_root)?
            .into_iter()
            .filter(|p| p.is_dir())
            .filter_map(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
            .collect();
        if classes.is_empty() {
            return Err(DataError::corrupt(
                class_root,
                "no class sub-folders",
                "lay images out as <root>/train/<class>/*.png and <root>/test/<class>/*.png",
            ));
        }
        let mut items = Vec::new();
        for cdir in sorted_dir(split_dir)?.into_iter().filter(|p| p.is_dir()) {
            let cname = cdir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let label = classes.iter().position(|c| *c == cname).ok_or_else(|| {
                DataError::corrupt(
                    &cdir,
                    format!("class '{cname}' does not exist in {}", class_root.display()),
                    "every split must use the train split's class folders",
                )
            })? as i64;
            for f in sorted_dir(&cdir)?.into_iter().filter(|p| is_image(p)) {
                items.push((f, label));
            }
        }
        let name = split_dir.display().to_string();
        Self::new(name, items, classes, transform)
    }

    /// A reference-repo JSON split: `json` maps paths relative to `image_dir` to labels (ints or
    /// strings), remapped to 0..K by sorted unique value — per split, as the reference does.
    pub fn json_split(json: &Path, image_dir: &Path, transform: ImageTransform) -> Result<Self> {
        let text = std::fs::read_to_string(json).map_err(|e| DataError::io(json, e))?;
        let (items, classes) =
            parse_json_split(&text).map_err(|detail| DataError::Split { path: json.to_path_buf(), detail })?;
        let items = items.into_iter().map(|(p, l)| (image_dir.join(p), l)).collect::<Vec<_>>();
        if let Some((p, _)) = items.iter().find(|(p, _)| !p.exists()) {
            return Err(DataError::corrupt(
                p,
                "listed in the split file but missing",
                format!("put the images under {}", image_dir.display()),
            ));
        }
        Self::new(json.display().to_string(), items, classes, transform)
    }
}

/// A remapped JSON split: `(path, class id)` sorted by path, and the class names by id.
pub type RemappedSplit = (Vec<(String, i64)>, Vec<String>);

/// Parses a JSON split's text and remaps its labels (the in-memory half of
/// [`ImageListDataset::json_split`], which the fuzz tests call directly).
pub fn parse_json_split(text: &str) -> std::result::Result<RemappedSplit, String> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON object of path → label: {e}"))?;
    remap_json_labels(&map)
}

/// Sorted-unique label remap of a JSON split (pure, tested). Ints sort numerically, strings
/// lexicographically (as Python's `sorted` does); mixing them is an error.
pub fn remap_json_labels(
    map: &serde_json::Map<String, serde_json::Value>,
) -> std::result::Result<RemappedSplit, String> {
    #[derive(PartialEq, Eq, PartialOrd, Ord, Clone)]
    enum Key {
        I(i64),
        S(String),
    }
    let mut keyed = Vec::with_capacity(map.len());
    for (path, v) in map {
        let k = match v {
            serde_json::Value::Number(n) if n.is_i64() => Key::I(n.as_i64().unwrap_or_default()),
            serde_json::Value::String(s) => Key::S(s.clone()),
            other => return Err(format!("label of '{path}' is {other}, expected an integer or a string")),
        };
        keyed.push((path.clone(), k));
    }
    let mut uniq: Vec<Key> = keyed.iter().map(|(_, k)| k.clone()).collect();
    uniq.sort();
    uniq.dedup();
    if uniq.iter().any(|k| matches!(k, Key::I(_))) && uniq.iter().any(|k| matches!(k, Key::S(_))) {
        return Err("labels mix integers and strings".into());
    }
    let names = uniq
        .iter()
        .map(|k| match k {
            Key::I(i) => i.to_string(),
            Key::S(s) => s.clone(),
        })
        .collect();
    let mut items: Vec<(String, i64)> = keyed
        .into_iter()
        .map(|(p, k)| {
            let id = uniq.binary_search(&k).unwrap_or(0) as i64;
            (p, id)
        })
        .collect();
    items.sort();
    Ok((items, names))
}

impl Dataset for ImageListDataset {
    fn name(&self) -> &str {
        &self.name
    }
    fn len(&self) -> usize {
        self.items.len()
    }
    fn num_classes(&self) -> i64 {
        self.class_names.len() as i64
    }
    fn class_names(&self) -> &[String] {
        &self.class_names
    }
    fn image_shape(&self) -> [i64; 3] {
        [self.channels, self.hw[0], self.hw[1]]
    }
    fn batch(&self, indices: &[usize], augment: Option<&mut ChaCha8Rng>) -> Result<(Tensor, Tensor)> {
        let [c, h, w] = self.image_shape();
        let mut pixels = Vec::with_capacity(indices.len() * (c * h * w) as usize);
        let mut labels = Vec::with_capacity(indices.len());
        let mut rng = augment;
        for &i in indices {
            let (path, label) = self
                .items
                .get(i)
                .ok_or_else(|| DataError::Invalid(format!("index {i} out of range for '{}'", self.name)))?;
            let img = match rng.as_deref_mut() {
                Some(r) => self.transform.apply(open_image(path)?, Some(r)),
                None => self.transform.eval_version().apply(open_image(path)?, None),
            };
            if [img.height() as i64, img.width() as i64] != [h, w] {
                return Err(DataError::corrupt(
                    path,
                    format!("is {}×{} after the transform but the dataset is {w}×{h}", img.width(), img.height()),
                    "set a resize/crop transform so all images share one size",
                ));
            }
            pixels.extend(image_to_chw(&img, c));
            labels.push(*label);
        }
        let x = Tensor::from_slice(&pixels).view([indices.len() as i64, c, h, w]);
        Ok((x, Tensor::from_slice(&labels)))
    }
    fn labels(&self) -> Vec<i64> {
        self.items.iter().map(|(_, l)| *l).collect()
    }
    fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (p, l) in &self.items {
            h.update(
                format!("{}\t{l}\n", p.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
                    .as_bytes(),
            );
            if let Ok(m) = std::fs::metadata(p) {
                h.update(m.len().to_le_bytes());
            }
        }
        hex::encode(h.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_labels_remap_sorted_per_split() {
        let m: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"b/1.jpg": "132", "a/2.jpg": "001", "c/3.jpg": "132", "d/4.jpg": "010"}"#)
                .unwrap();
        let (items, names) = remap_json_labels(&m).unwrap();
        assert_eq!(names, vec!["001", "010", "132"]);
        assert_eq!(
            items,
            vec![("a/2.jpg".into(), 0), ("b/1.jpg".into(), 2), ("c/3.jpg".into(), 2), ("d/4.jpg".into(), 1)]
        );
        let m: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"x": 111, "y": 1, "z": 20}"#).unwrap();
        let (items, _) = remap_json_labels(&m).unwrap();
        assert_eq!(items.iter().map(|i| i.1).collect::<Vec<_>>(), vec![2, 0, 1]);
        let m: serde_json::Map<String, serde_json::Value> = serde_json::from_str(r#"{"x": 1, "y": "2"}"#).unwrap();
        assert!(remap_json_labels(&m).unwrap_err().contains("mix"));
    }

    fn write_png(p: &Path, v: u8) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(8, 6, image::Rgb([v, v, v])).save(p).unwrap();
    }

    #[test]
    fn image_folder_and_json_split_load() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write_png(&r.join("train/cat/1.png"), 10);
        write_png(&r.join("train/dog/2.png"), 20);
        write_png(&r.join("test/dog/3.png"), 30);
        let t = ImageTransform { resize_shorter: Some(4), crop: Some(4), random_crop: true, hflip: true };
        let ds = ImageListDataset::image_folder(&r.join("test"), &r.join("train"), t).unwrap();
        assert_eq!(ds.class_names, vec!["cat", "dog"]);
        assert_eq!(ds.labels(), vec![1]);
        let (x, y) = ds.batch(&[0], None).unwrap();
        assert_eq!(x.size(), vec![1, 3, 4, 4]);
        assert_eq!(Vec::<i64>::try_from(&y).unwrap(), vec![1]);
        assert!((x.mean(tch::Kind::Float).double_value(&[]) - 30.0 / 255.0).abs() < 1e-3);

        std::fs::write(r.join("train.json"), r#"{"train/cat/1.png": 5, "train/dog/2.png": 9}"#).unwrap();
        let js = ImageListDataset::json_split(&r.join("train.json"), r, ImageTransform::IDENTITY).unwrap();
        assert_eq!(js.labels(), vec![0, 1]);
        std::fs::write(r.join("val.json"), r#"{"nope.png": 1}"#).unwrap();
        let e = ImageListDataset::json_split(&r.join("val.json"), r, ImageTransform::IDENTITY).unwrap_err().to_string();
        assert!(e.contains("nope.png") && e.contains("missing"), "{e}");
    }
}
