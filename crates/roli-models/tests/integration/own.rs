//! Own checkpoints: safetensors + JSON sidecar round trip, fingerprint verification.

use roli_models::own::{read_sidecar, SIDECAR_FILE, WEIGHTS_FILE};
use roli_models::{
    descriptor, load_backbone, load_classifier, save_classifier, Classifier, ClassifierOptions, HeadPolicy,
    LoadOptions, ModelError,
};
use tch::{nn, Device, Kind, Tensor};

use crate::common::*;

#[test]
fn save_load_round_trip_and_tamper_detection() {
    let Some(dir) = tiny() else { return };
    let vs = nn::VarStore::new(Device::Cpu);
    let desc = descriptor("swin_micro_patch2_window4_32").unwrap();
    let m =
        Classifier::new(&vs.root(), &desc, &ClassifierOptions { resize: true, ..ClassifierOptions::new(5) }).unwrap();
    let r = load_backbone(
        &vs,
        &m,
        dir.join("swin_micro.safetensors"),
        &LoadOptions { head: HeadPolicy::Load, ..Default::default() },
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("run1");
    let info = serde_json::json!({"threat_model": {"norm": "linf", "eps": 0.3}, "mode": "linear"});
    let side = save_classifier(&ck, &vs, &m, info.clone()).unwrap();
    assert_eq!(side.backbone_fingerprint, r.backbone_fingerprint);
    assert!(ck.join(WEIGHTS_FILE).exists() && ck.join(SIDECAR_FILE).exists());
    assert_eq!(std::fs::read_dir(&ck).unwrap().count(), 2, "no temporary files left behind");

    let loaded = load_classifier(ck.join(SIDECAR_FILE), Device::Cpu).unwrap();
    assert_eq!(loaded.sidecar.info, info);
    assert_eq!(loaded.sidecar.descriptor, desc);
    let x = Tensor::rand([2, 1, 28, 28], (Kind::Float, Device::Cpu));
    assert_eq!(max_abs(&loaded.model.forward_t(&x, false), &m.forward_t(&x, false)), 0.0);

    // tamper with one weight: the fingerprint check must catch it
    let mut t: Vec<(String, Tensor)> = Tensor::read_safetensors(ck.join(WEIGHTS_FILE)).unwrap();
    for (k, v) in t.iter_mut() {
        if k == "norm.bias" {
            *v = &*v + 1e-3;
        }
    }
    Tensor::write_safetensors(&t, ck.join(WEIGHTS_FILE)).unwrap();
    let e = load_classifier(&ck, Device::Cpu).unwrap_err();
    assert!(matches!(e, ModelError::Checkpoint(roli_models::CheckpointError::Fingerprint { .. })), "{e}");

    // a broken sidecar names its file
    std::fs::write(ck.join(SIDECAR_FILE), "{\"format\": 1}").unwrap();
    let e = read_sidecar(&ck).unwrap_err().to_string();
    assert!(e.contains(SIDECAR_FILE), "{e}");
}
