//! Image-file datasets: torchvision-style ImageFolder trees (`<root>/<split>/<class>/*.png|jpg`)
//! and, through [`crate::json_split`], the reference repo's JSON split files. Images are decoded
//! per batch; an empty class folder is an error (a class the model can never be tested on).
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
        let first = items.first().ok_or_else(|| {
            DataError::Invalid(format!("dataset '{name}' has no images; check the folder layout and the split file"))
        })?;
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
            let before = items.len();
            for f in sorted_dir(&cdir)?.into_iter().filter(|p| is_image(p)) {
                items.push((f, label));
            }
            if items.len() == before {
                return Err(DataError::corrupt(
                    &cdir,
                    format!("class folder has no images ({})", IMAGE_EXTENSIONS.join(", ")),
                    "add its images or remove the folder",
                ));
            }
        }
        let name = split_dir.display().to_string();
        Self::new(name, items, classes, transform)
    }
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
pub(crate) mod tests {
    use super::*;

    pub(crate) fn write_png(p: &Path, v: u8) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(8, 6, image::Rgb([v, v, v])).save(p).unwrap();
    }

    #[test]
    fn image_folder_loads_with_the_train_label_map() {
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
    }

    #[test]
    fn empty_class_folders_and_broken_images_are_named() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write_png(&r.join("train/cat/1.png"), 10);
        std::fs::create_dir_all(r.join("train/dog")).unwrap();
        let e = ImageListDataset::image_folder(&r.join("train"), &r.join("train"), ImageTransform::IDENTITY)
            .unwrap_err()
            .to_string();
        assert!(e.contains("train/dog: class folder has no images") && e.contains("remove the folder"), "{e}");
        std::fs::write(r.join("train/dog/2.png"), b"not a png").unwrap();
        let ds = ImageListDataset::image_folder(&r.join("train"), &r.join("train"), ImageTransform::IDENTITY).unwrap();
        let e = ds.batch(&[0, 1], None).unwrap_err().to_string();
        assert!(e.contains("train/dog/2.png: cannot decode image") && e.contains("replace or remove"), "{e}");
    }
}
