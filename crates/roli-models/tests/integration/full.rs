//! Full-size Swin-B and ViT-B/16: parameter counts equal timm's, a timm-saved random checkpoint
//! loads strictly, logits match. Slow (≈1 GB of checkpoints, ~1 min on 2 cores):
//! `cargo test --release -p roli-models -- --ignored full_size`.

use roli_models::{descriptor, load_backbone, Classifier, ClassifierOptions, HeadPolicy, LoadOptions};
use tch::{nn, Device};

use crate::common::*;

#[test]
#[ignore = "slow: builds Swin-B and ViT-B; run with --ignored"]
fn full_size_swin_b_and_vit_b_match_timm() {
    let Some(dir) = generate("full", &[]) else {
        return;
    };
    let counts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("full_counts.json")).unwrap()).unwrap();
    for name in ["swin_base_patch4_window7_224", "vit_base_patch16_224"] {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Classifier::new(&vs.root(), &descriptor(name).unwrap(), &ClassifierOptions::new(10)).unwrap();
        let backbone: i64 =
            vs.variables().iter().filter(|(n, _)| !m.is_head_var(n)).map(|(_, t)| t.numel() as i64).sum();
        let timm = counts[name]["backbone"].as_i64().unwrap();
        println!(
            "{name}: backbone parameters roli {backbone}, timm {timm}; with a 1000-class head {}",
            counts[name]["with_1000_head"]
        );
        assert_eq!(backbone, timm);
        let r = load_backbone(
            &vs,
            &m,
            dir.join(format!("{name}.safetensors")),
            &LoadOptions { head: HeadPolicy::Load, ..Default::default() },
        )
        .unwrap();
        assert!(r.is_clean() && r.head_loaded);
        check_parity(name, &m, &read_io(&dir.join(format!("{name}_io.safetensors"))));
    }
}
