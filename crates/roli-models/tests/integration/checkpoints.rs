//! Bad input: renamed keys, wrong shapes, truncated files, non-checkpoints, wrong heads and
//! tampered buffers each give a clear error naming the file and the tensor.

use std::path::Path;

use roli_models::{
    descriptor, load_backbone, read_state_dict, CheckpointError, Classifier, ClassifierOptions, HeadPolicy,
    LoadOptions, SourceLayout,
};
use tch::{nn, Device, Kind, Tensor};

use crate::common::*;

fn vit(vs: &nn::VarStore, k: i64) -> Classifier {
    Classifier::new(&vs.root(), &descriptor("vit_micro_patch4_32").unwrap(), &ClassifierOptions::new(k)).unwrap()
}

fn rewrite(src: &Path, dst: &Path, f: impl Fn(Vec<(String, Tensor)>) -> Vec<(String, Tensor)>) {
    let t = read_state_dict(src).unwrap().tensors;
    Tensor::write_safetensors(&f(t), dst).unwrap();
}

fn load_err(file: &Path, k: i64, opts: &LoadOptions) -> (CheckpointError, String) {
    let vs = nn::VarStore::new(Device::Cpu);
    let m = vit(&vs, k);
    let e = load_backbone(&vs, &m, file, opts).unwrap_err();
    let s = e.to_string();
    println!("{s}");
    (e, s)
}

#[test]
fn renamed_key_lists_missing_and_unexpected_names() {
    let Some(dir) = tiny() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("renamed.safetensors");
    rewrite(&dir.join("vit_micro.safetensors"), &f, |t| {
        t.into_iter()
            .map(|(k, v)| (if k == "blocks.0.attn.qkv.weight" { "blocks.0.attn.qkvv.weight".into() } else { k }, v))
            .collect()
    });
    let (e, s) = load_err(&f, 5, &LoadOptions::default());
    assert!(matches!(e, CheckpointError::Mismatch { .. }));
    assert!(s.contains("renamed.safetensors") && s.contains("vit_micro_patch4_32"), "{s}");
    assert!(s.contains("missing from the checkpoint (1)") && s.contains("blocks.0.attn.qkv.weight"), "{s}");
    assert!(s.contains("unexpected in the checkpoint (1)") && s.contains("blocks.0.attn.qkvv.weight"), "{s}");
    // non-strict: loads the rest and reports the same problems
    let vs = nn::VarStore::new(Device::Cpu);
    let m = vit(&vs, 5);
    let r = load_backbone(&vs, &m, &f, &LoadOptions { strict: false, ..Default::default() }).unwrap();
    assert_eq!(r.missing, vec!["blocks.0.attn.qkv.weight".to_string()]);
    assert_eq!(r.unexpected, vec!["blocks.0.attn.qkvv.weight".to_string()]);
}

#[test]
fn wrong_shape_names_tensor_and_both_shapes() {
    let Some(dir) = tiny() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("shape.safetensors");
    rewrite(&dir.join("vit_micro.safetensors"), &f, |t| {
        t.into_iter()
            .map(|(k, v)| {
                if k == "blocks.1.mlp.fc1.weight" {
                    (k, Tensor::zeros([10, 64], (Kind::Float, Device::Cpu)))
                } else {
                    (k, v)
                }
            })
            .collect()
    });
    let (_, s) = load_err(&f, 5, &LoadOptions::default());
    assert!(
        s.contains("shape mismatch (1)")
            && s.contains("blocks.1.mlp.fc1.weight: checkpoint [10, 64] vs model [256, 64]"),
        "{s}"
    );
}

#[test]
fn head_of_another_size_fails_under_load_and_is_dropped_under_drop() {
    let Some(dir) = tiny() else { return };
    let f = dir.join("vit_micro.safetensors");
    let (_, s) = load_err(&f, 7, &LoadOptions { head: HeadPolicy::Load, ..Default::default() });
    assert!(s.contains("head.weight: checkpoint [5, 64] vs model [7, 64]"), "{s}");
    let vs = nn::VarStore::new(Device::Cpu);
    let m = vit(&vs, 7);
    let r = load_backbone(&vs, &m, &f, &LoadOptions::default()).unwrap();
    assert!(!r.head_loaded);
    assert_eq!(r.dropped.iter().filter(|(k, _)| k.starts_with("head.")).count(), 2);
}

#[test]
fn truncated_files_are_reported_as_corrupt() {
    let Some(dir) = tiny() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for src in ["vit_micro.safetensors", "vit_micro_wrapped.pth"] {
        let bytes = std::fs::read(dir.join(src)).unwrap();
        let f = tmp.path().join(format!("cut_{src}"));
        std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
        let (e, s) = load_err(&f, 5, &LoadOptions::default());
        assert!(matches!(e, CheckpointError::Corrupt { .. }), "{s}");
        assert!(s.contains(&format!("cut_{src}")) && s.contains("truncated"), "{s}");
    }
}

#[test]
fn non_checkpoint_files_are_rejected_with_their_name() {
    let Some(dir) = tiny() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("readme.pth");
    std::fs::write(&f, "# not weights\n").unwrap();
    let (e, s) = load_err(&f, 5, &LoadOptions::default());
    assert!(matches!(e, CheckpointError::NotACheckpoint { .. }) && s.contains("readme.pth"), "{s}");
    // a TorchScript archive is a zip too, but not a state dict
    let (e, s) = load_err(&dir.join("script_features.pt"), 5, &LoadOptions::default());
    assert!(matches!(e, CheckpointError::Unsupported { .. }) && s.contains("TorchScript"), "{s}");
    // a missing file
    let (e, s) = load_err(&tmp.path().join("absent.safetensors"), 5, &LoadOptions::default());
    assert!(matches!(e, CheckpointError::Io { .. }) && s.contains("absent.safetensors"), "{s}");
}

#[test]
fn tampered_derived_buffer_and_wrong_layout_are_errors() {
    let Some(dir) = tiny() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("mask.safetensors");
    rewrite(&dir.join("swin_micro_legacy.pth"), &f, |t| {
        t.into_iter()
            .map(|(k, v)| if k == "layers.0.blocks.1.attn_mask" { (k, v.zeros_like()) } else { (k, v) })
            .collect()
    });
    let vs = nn::VarStore::new(Device::Cpu);
    let m =
        Classifier::new(&vs.root(), &descriptor("swin_micro_patch2_window4_32").unwrap(), &ClassifierOptions::new(5))
            .unwrap();
    let e = load_backbone(&vs, &m, &f, &LoadOptions { layout: SourceLayout::SwinLegacy, ..Default::default() })
        .unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, CheckpointError::BufferMismatch { .. }) && s.contains("layers.0.blocks.1.attn_mask"), "{s}");
    // the Swin remap on a ViT is refused rather than ignored
    let (_, s) = load_err(
        &dir.join("vit_micro.safetensors"),
        5,
        &LoadOptions { layout: SourceLayout::SwinLegacy, ..Default::default() },
    );
    assert!(s.contains("swin-legacy"), "{s}");
}
