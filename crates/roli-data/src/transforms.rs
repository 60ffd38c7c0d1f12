//! Image transforms for folder datasets, applied on decoded images before they become tensors:
//! the reference's train pipeline is Resize(256) → RandomCrop(224) → HFlip(0.5), its eval
//! pipeline Resize(256) → CenterCrop(224). Resize keeps the aspect ratio (shorter side), with a
//! triangle (bilinear) filter that widens when downscaling, like PIL's bilinear.
use image::{imageops, DynamicImage};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A deterministic-or-random image pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageTransform {
    /// Resize so the shorter side equals this many pixels (None: keep the size).
    pub resize_shorter: Option<u32>,
    /// Crop a square of this size (None: no crop).
    pub crop: Option<u32>,
    /// Random crop position (train) instead of the centre (eval).
    pub random_crop: bool,
    /// Flip horizontally with probability 0.5 (train).
    pub hflip: bool,
}

impl ImageTransform {
    /// No change: images must already share one size.
    pub const IDENTITY: ImageTransform =
        ImageTransform { resize_shorter: None, crop: None, random_crop: false, hflip: false };
    /// The reference's train transform for Caltech256/CUB/Dogs.
    pub const REFERENCE_TRAIN: ImageTransform =
        ImageTransform { resize_shorter: Some(256), crop: Some(224), random_crop: true, hflip: true };
    /// The reference's eval transform for Caltech256/CUB/Dogs.
    pub const REFERENCE_EVAL: ImageTransform =
        ImageTransform { resize_shorter: Some(256), crop: Some(224), random_crop: false, hflip: false };

    /// The deterministic version of this transform (random crop → centre crop, no flip), used
    /// whenever no augmentation RNG is given.
    pub fn eval_version(self) -> ImageTransform {
        ImageTransform { random_crop: false, hflip: false, ..self }
    }

    /// Applies the transform. With `rng == None` the random parts fall back to their eval form.
    pub fn apply(&self, img: DynamicImage, rng: Option<&mut ChaCha8Rng>) -> DynamicImage {
        let mut img = img;
        if let Some(s) = self.resize_shorter {
            let (w, h) = (img.width(), img.height());
            let (nw, nh) = if w <= h {
                (s, ((h as u64 * s as u64 + w as u64 / 2) / w as u64).max(1) as u32)
            } else {
                (((w as u64 * s as u64 + h as u64 / 2) / h as u64).max(1) as u32, s)
            };
            if (nw, nh) != (w, h) {
                img = img.resize_exact(nw, nh, imageops::FilterType::Triangle);
            }
        }
        let mut rng = rng;
        if let Some(c) = self.crop {
            let (w, h) = (img.width(), img.height());
            let (cw, ch) = (c.min(w), c.min(h));
            let (x, y) = match (self.random_crop, rng.as_deref_mut()) {
                (true, Some(r)) => (r.gen_range(0..=w - cw), r.gen_range(0..=h - ch)),
                // torchvision CenterCrop: round((size - crop) / 2).
                _ => (((w - cw) as f64 / 2.0).round() as u32, ((h - ch) as f64 / 2.0).round() as u32),
            };
            img = img.crop_imm(x, y, cw, ch);
        }
        if self.hflip {
            if let Some(r) = rng {
                if r.gen_bool(0.5) {
                    img = img.fliph();
                }
            }
        }
        img
    }
}

/// Converts a decoded image to CHW f32 values in [0,1] with `channels` (1 = luma, 3 = RGB).
pub fn image_to_chw(img: &DynamicImage, channels: i64) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if channels == 1 {
        img.to_luma8().into_raw().into_iter().map(|v| v as f32 / 255.0).collect()
    } else {
        let rgb = img.to_rgb8().into_raw();
        let mut out = vec![0f32; 3 * w * h];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * w * h + i] = px[c] as f32 / 255.0;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn img(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7])))
    }

    #[test]
    fn reference_eval_gives_224_square() {
        let out = ImageTransform::REFERENCE_EVAL.apply(img(500, 300), None);
        assert_eq!((out.width(), out.height()), (224, 224));
        let out = ImageTransform::REFERENCE_EVAL.apply(img(300, 600), None);
        assert_eq!((out.width(), out.height()), (224, 224));
    }

    #[test]
    fn center_crop_takes_the_middle() {
        let t = ImageTransform { resize_shorter: None, crop: Some(2), random_crop: false, hflip: false };
        let out = t.apply(img(6, 4), None).to_rgb8();
        assert_eq!(out.get_pixel(0, 0).0, [2, 1, 7]);
    }

    #[test]
    fn random_crop_is_seeded_and_in_bounds() {
        let t = ImageTransform::REFERENCE_TRAIN;
        let a = t.apply(img(300, 260), Some(&mut ChaCha8Rng::seed_from_u64(1))).to_rgb8();
        let b = t.apply(img(300, 260), Some(&mut ChaCha8Rng::seed_from_u64(1))).to_rgb8();
        assert_eq!(a, b);
        assert_eq!((a.width(), a.height()), (224, 224));
    }

    #[test]
    fn chw_layout() {
        let v = image_to_chw(&img(2, 1), 3);
        // R plane (x), G plane (y), B plane (7).
        assert_eq!(v.len(), 6);
        assert_eq!(v[1], 1.0 / 255.0);
        assert_eq!(v[4], 7.0 / 255.0);
    }
}
