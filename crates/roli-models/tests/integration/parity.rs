//! Numerical parity with timm 1.0.31 on tiny random-weight models (logits and input gradients).

use roli_models::resnet::BlockKind;
use roli_models::{descriptor, load_backbone, Classifier, ClassifierOptions, HeadPolicy, LoadOptions, SourceLayout};
use tch::{nn, Device};

use crate::common::*;

fn load_opts(layout: SourceLayout) -> LoadOptions {
    LoadOptions { layout, head: HeadPolicy::Load, ..Default::default() }
}

fn swin_classifier(vs: &nn::VarStore) -> Classifier {
    let desc = descriptor("swin_micro_patch2_window4_32").unwrap();
    let opts = ClassifierOptions { resize: true, ..ClassifierOptions::new(5) };
    Classifier::new(&vs.root(), &desc, &opts).unwrap()
}

#[test]
fn swin_timm_layout_matches_timm() {
    let Some(dir) = tiny() else { return };
    let vs = nn::VarStore::new(Device::Cpu);
    let m = swin_classifier(&vs);
    let r = load_backbone(&vs, &m, dir.join("swin_micro.safetensors"), &load_opts(SourceLayout::Native)).unwrap();
    assert!(r.is_clean() && r.head_loaded && r.remapped.is_empty());
    assert_eq!(r.loaded.len(), vs.variables().len());
    check_parity("swin_micro (timm layout, 28→32 resize)", &m, &read_io(&dir.join("swin_micro_io.safetensors")));
}

#[test]
fn swin_legacy_layout_matches_timm_and_has_same_fingerprint() {
    let Some(dir) = tiny() else { return };
    let vs = nn::VarStore::new(Device::Cpu);
    let m = swin_classifier(&vs);
    let r = load_backbone(&vs, &m, dir.join("swin_micro_legacy.pth"), &load_opts(SourceLayout::SwinLegacy)).unwrap();
    assert_eq!(r.wrapper.as_deref(), Some("model"));
    assert!(r.head_loaded);
    // 2 merges × (norm.weight, norm.bias, reduction.weight) + head.{weight,bias}
    assert_eq!(r.remapped.len(), 8, "{:?}", r.remapped);
    assert!(r
        .remapped
        .contains(&("layers.0.downsample.reduction.weight".into(), "layers.1.downsample.reduction.weight".into())));
    let buffers: Vec<_> = r.dropped.iter().filter(|(_, why)| why.contains("derived buffer")).collect();
    assert_eq!(buffers.len(), 8, "3 stages × 2 index buffers + 2 shifted masks: {:?}", r.dropped);
    check_parity("swin_micro (legacy layout .pth)", &m, &read_io(&dir.join("swin_micro_io.safetensors")));

    let vs2 = nn::VarStore::new(Device::Cpu);
    let m2 = swin_classifier(&vs2);
    let r2 = load_backbone(&vs2, &m2, dir.join("swin_micro.safetensors"), &load_opts(SourceLayout::Native)).unwrap();
    assert_eq!(r.backbone_fingerprint, r2.backbone_fingerprint);
}

#[test]
fn swin_legacy_file_with_native_layout_fails_listing_keys() {
    let Some(dir) = tiny() else { return };
    let vs = nn::VarStore::new(Device::Cpu);
    let m = swin_classifier(&vs);
    let e = load_backbone(&vs, &m, dir.join("swin_micro_legacy.pth"), &load_opts(SourceLayout::Native))
        .unwrap_err()
        .to_string();
    assert!(e.contains("swin_micro_legacy.pth"), "{e}");
    assert!(e.contains("layers.2.downsample.reduction.weight") && e.contains("missing"), "{e}");
    assert!(e.contains("layers.0.downsample.reduction.weight") && e.contains("unexpected"), "{e}");
}

#[test]
fn vit_matches_timm_from_safetensors_and_wrapped_pth() {
    let Some(dir) = tiny() else { return };
    let desc = descriptor("vit_micro_patch4_32").unwrap();
    let io = read_io(&dir.join("vit_micro_io.safetensors"));
    let mut prints = vec![];
    for file in ["vit_micro.safetensors", "vit_micro_wrapped.pth"] {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Classifier::new(&vs.root(), &desc, &ClassifierOptions::new(5)).unwrap();
        let r = load_backbone(&vs, &m, dir.join(file), &load_opts(SourceLayout::Native)).unwrap();
        if file.ends_with(".pth") {
            assert_eq!(r.wrapper.as_deref(), Some("state_dict"));
            assert_eq!(r.stripped_prefix.as_deref(), Some("module."));
        }
        check_parity(&format!("vit_micro ({file})"), &m, &io);
        prints.push(r.backbone_fingerprint);
    }
    assert_eq!(prints[0], prints[1]);
}

#[test]
fn resnets_match_timm_in_eval_mode() {
    let Some(dir) = tiny() else { return };
    for (name, kind) in [("resnet_basic", BlockKind::Basic), ("resnet_bottleneck", BlockKind::Bottleneck)] {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Classifier::new(&vs.root(), &tiny_resnet(kind), &ClassifierOptions::new(5)).unwrap();
        let r = load_backbone(&vs, &m, dir.join(format!("{name}.pth")), &load_opts(SourceLayout::Native)).unwrap();
        assert!(r.dropped.iter().any(|(k, _)| k.ends_with("num_batches_tracked")));
        check_parity(name, &m, &read_io(&dir.join(format!("{name}_io.safetensors"))));
    }
}

#[test]
fn drop_path_only_acts_in_train_mode() {
    let Some(dir) = tiny() else { return };
    let desc = descriptor("swin_micro_patch2_window4_32").unwrap().with_drop_path(0.5).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let m =
        Classifier::new(&vs.root(), &desc, &ClassifierOptions { resize: true, ..ClassifierOptions::new(5) }).unwrap();
    load_backbone(&vs, &m, dir.join("swin_micro.safetensors"), &load_opts(SourceLayout::Native)).unwrap();
    let io = read_io(&dir.join("swin_micro_io.safetensors"));
    let x = &io["x"];
    // eval: identical to the golden (drop-path inactive)
    assert!(max_abs(&m.forward_t(x, false), &io["logits"]) <= PARITY_TOL);
    // train: stochastic, differs from eval and between calls
    tch::manual_seed(7);
    let a = m.forward_t(x, true);
    let b = m.forward_t(x, true);
    assert!(max_abs(&a, &io["logits"]) > 1e-3 && max_abs(&a, &b) > 1e-3);
    // backbone in eval while the head trains: deterministic again
    assert!(max_abs(&m.forward_with(x, false), &io["logits"]) <= PARITY_TOL);
}
