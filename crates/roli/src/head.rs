//! The stage-1 → stage-2 hand-off: a small head artifact (`head.safetensors` + `head.json`)
//! holding the adversarial linear probe's best head, the fingerprint of the backbone it was
//! trained on, the threat model and the data split hashes. Stage 2 refuses a head whose
//! fingerprint, class count or feature width does not match its own model — no hand-edited paths.
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::Tensor;

pub const HEAD_FORMAT: &str = "roli-head";
pub const HEAD_VERSION: u32 = 1;

/// `head.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadArtifact {
    pub format: String,
    pub version: u32,
    /// Where the backbone came from (human-readable).
    pub backbone: String,
    /// SHA-256 over the backbone tensors the head was trained on.
    pub backbone_fingerprint: String,
    pub num_classes: i64,
    pub feature_dim: i64,
    /// Tensor names in `head.safetensors` (the classifier's head names).
    pub head_names: Vec<String>,
    pub threat_norm: String,
    pub threat_eps: f64,
    /// The data set spec and fingerprints of the train / val splits it was trained and chosen on.
    pub data: String,
    pub train_fingerprint: String,
    pub val_fingerprint: String,
    pub best_epoch: Option<u32>,
    pub val_clean: f64,
    pub val_robust: f64,
}

/// Paths of an artifact given its folder or either file.
pub fn paths(p: &Path) -> (PathBuf, PathBuf) {
    let dir = if p.extension().is_some_and(|e| e == "json" || e == "safetensors") {
        p.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        p.to_path_buf()
    };
    (dir.join(crate::artifacts::HEAD_TENSORS), dir.join(crate::artifacts::HEAD_JSON))
}

/// Writes the artifact atomically (tensors first, the JSON last: a JSON means a complete artifact).
pub fn save(dir: &Path, meta: &HeadArtifact, tensors: &[(String, Tensor)]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let (w, j) = paths(dir);
    crate::artifacts::save_tensors(&w, tensors)?;
    crate::artifacts::write_json(&j, meta)?;
    Ok(j)
}

/// Parses and checks the text of a `head.json` (`j` only names it in errors): the in-memory half
/// of [`load`], which the fuzz tests call directly.
pub fn parse_meta(j: &Path, text: &str) -> anyhow::Result<HeadArtifact> {
    let meta: HeadArtifact =
        serde_json::from_str(text).with_context(|| format!("{} is not a roli head artifact", j.display()))?;
    if meta.format != HEAD_FORMAT || meta.version != HEAD_VERSION {
        bail!("{}: format {} v{} is not {HEAD_FORMAT} v{HEAD_VERSION}", j.display(), meta.format, meta.version);
    }
    Ok(meta)
}

/// Reads an artifact.
pub fn load(p: &Path) -> anyhow::Result<(HeadArtifact, Vec<(String, Tensor)>)> {
    let (w, j) = paths(p);
    let text = std::fs::read_to_string(&j)
        .with_context(|| format!("no head artifact at {} (expected head.json from `roli probe`)", j.display()))?;
    let meta = parse_meta(&j, &text)?;
    let t = Tensor::read_safetensors(&w)
        .with_context(|| format!("{} is missing or corrupt; re-run `roli probe`", w.display()))?;
    Ok((meta, t))
}

/// Checks that `meta` fits a model (pure; each mismatch is named).
pub fn check_compatible(
    meta: &HeadArtifact,
    backbone_fingerprint: &str,
    num_classes: i64,
    feature_dim: i64,
    head_names: &[String],
) -> Result<(), String> {
    if meta.backbone_fingerprint != backbone_fingerprint {
        return Err(format!(
            "the head was trained on backbone {} (fingerprint {}…) but this model's backbone has fingerprint {}…; probe again on this backbone",
            meta.backbone,
            &meta.backbone_fingerprint[..12.min(meta.backbone_fingerprint.len())],
            &backbone_fingerprint[..12.min(backbone_fingerprint.len())]
        ));
    }
    if meta.num_classes != num_classes {
        return Err(format!("the head has {} classes but the data has {num_classes}", meta.num_classes));
    }
    if meta.feature_dim != feature_dim {
        return Err(format!("the head takes {} features but the backbone gives {feature_dim}", meta.feature_dim));
    }
    if meta.head_names != head_names {
        return Err(format!("head tensor names {:?} differ from the model's {:?}", meta.head_names, head_names));
    }
    Ok(())
}

/// What stage 2 would change silently by using this head: a probe at another threat, or on
/// other train/val splits than stage 2 trains and selects on (pure; empty when it fits).
pub fn handoff_mismatches(
    meta: &HeadArtifact,
    threat_norm: &str,
    threat_eps: f64,
    train_fingerprint: &str,
    val_fingerprint: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    if meta.threat_norm != threat_norm || (meta.threat_eps - threat_eps).abs() > 1e-12 {
        out.push(format!(
            "the head was probed at {} eps {} but stage 2 uses {threat_norm} eps {threat_eps}",
            meta.threat_norm, meta.threat_eps
        ));
    }
    if meta.train_fingerprint != train_fingerprint || meta.val_fingerprint != val_fingerprint {
        out.push(format!(
            "the head was probed on other train/val splits of {} than stage 2 uses (fingerprints differ)",
            meta.data
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> HeadArtifact {
        HeadArtifact {
            format: HEAD_FORMAT.into(),
            version: 1,
            backbone: "b".into(),
            backbone_fingerprint: "abcdef0123456789".into(),
            num_classes: 10,
            feature_dim: 200,
            head_names: vec!["linear2.weight".into(), "linear2.bias".into()],
            threat_norm: "linf".into(),
            threat_eps: 0.1,
            data: "fashion-mnist".into(),
            train_fingerprint: "t".into(),
            val_fingerprint: "v".into(),
            best_epoch: Some(3),
            val_clean: 0.8,
            val_robust: 0.6,
        }
    }

    #[test]
    fn mismatches_are_refused_with_the_reason() {
        let m = meta();
        let names = m.head_names.clone();
        assert!(check_compatible(&m, "abcdef0123456789", 10, 200, &names).is_ok());
        assert!(check_compatible(&m, "ffff", 10, 200, &names).unwrap_err().contains("fingerprint"));
        assert!(check_compatible(&m, "abcdef0123456789", 100, 200, &names).unwrap_err().contains("classes"));
        assert!(check_compatible(&m, "abcdef0123456789", 10, 256, &names).unwrap_err().contains("features"));
    }

    #[test]
    fn a_head_of_another_threat_or_split_is_named() {
        let m = meta();
        assert!(handoff_mismatches(&m, "linf", 0.1, "t", "v").is_empty());
        let e = handoff_mismatches(&m, "linf", 0.2, "t", "v");
        assert!(e.len() == 1 && e[0].contains("probed at linf eps 0.1 but stage 2 uses linf eps 0.2"), "{e:?}");
        assert!(handoff_mismatches(&m, "l2", 0.1, "t", "v")[0].contains("l2"));
        let e = handoff_mismatches(&m, "linf", 0.1, "t", "other");
        assert!(e.len() == 1 && e[0].contains("other train/val splits"), "{e:?}");
        assert_eq!(handoff_mismatches(&m, "l2", 0.5, "x", "v").len(), 2);
    }

    #[test]
    fn save_load_roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let t = vec![("linear2.weight".to_string(), Tensor::ones([10, 200], (tch::Kind::Float, tch::Device::Cpu)))];
        save(d.path(), &meta(), &t).unwrap();
        let (m, back) = load(d.path()).unwrap();
        assert_eq!(m, meta());
        assert_eq!(back[0].1.size(), vec![10, 200]);
        assert!(load(&d.path().join("nope")).unwrap_err().to_string().contains("roli probe"));
    }
}
