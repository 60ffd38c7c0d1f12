//! The committed model zoo (`zoo/`) is what its sidecars say: every expected entry is there, loads
//! strictly, has the recorded backbone fingerprint, and its clean accuracy on the first MNIST test
//! images matches the recorded one (the robust/standard pairs of docs/zoo.md's table).
use roli::zoo::{self, BackboneSource, BuildOptions};
use roli_data::Split;
use roli_models::HeadInit;
use tch::Kind;

/// The zoo docs/zoo.md documents: (name, robust).
const EXPECTED: &[(&str, bool)] = &[
    ("lenet5-mnist-at", true),
    ("lenet5-mnist-std", false),
    ("swin-nano-mnist-at", true),
    ("swin-nano-mnist-std", false),
    ("vit-nano-mnist-at", true),
    ("vit-nano-mnist-at03", true),
    ("vit-nano-mnist-std", false),
];

/// Sidecar clean accuracies were measured on another CPU; a few argmax flips are float noise.
const CLEAN_TOLERANCE: f64 = 0.005;

#[test]
fn committed_zoo_models_match_their_sidecars() {
    let spec = roli_data::resolve("mnist").unwrap();
    if roli_data::fetch::cached_manifest(roli_data::fetch::find_source("mnist").unwrap()).is_none() {
        eprintln!("note: mnist not cached; run `roli data fetch all` — test skipped");
        return;
    }
    let test = roli_data::load(&spec, Split::Test, &Default::default()).unwrap();
    let own = zoo::list_own();
    for (name, robust) in EXPECTED {
        assert!(own.iter().any(|n| n == name), "zoo/{name} missing (have {own:?})");
        let sidecar = zoo::zoo_dir().join(name).join("model.json");
        let sc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&sidecar).unwrap()).unwrap();
        let info = &sc["info"];
        let eps = info["threat_model"]["eps"].as_f64().unwrap();
        assert_eq!(eps > 0.0, *robust, "{name}: threat_model.eps = {eps}");
        if *robust {
            let aa = info["test"]["aa_accuracy"]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}: no AutoAttack accuracy recorded"));
            assert!(aa > 0.2, "{name}: AA {aa} is no robust backbone");
        }
        let src = zoo::resolve(name, None, roli_models::SourceLayout::Native).unwrap();
        assert!(matches!(src, BackboneSource::Own { .. }), "{name}: {src:?}");
        let opts = BuildOptions {
            num_classes: sc["num_classes"].as_i64().unwrap(),
            head_init: HeadInit::TorchDefault,
            resize: false,
            input: test.image_shape(),
            keep_head: true,
            drop_path: 0.0,
            trainable_script: false,
            init_seed: 0,
            attention: Default::default(),
            device: tch::Device::Cpu,
        };
        let built = zoo::build(&src, &opts, &roli_models::peft::NoPeft).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(
            built.backbone_fingerprint,
            sc["backbone_fingerprint"].as_str().unwrap(),
            "{name}: backbone fingerprint"
        );
        let n = info["test"]["n"].as_u64().unwrap() as usize;
        let idx: Vec<usize> = (0..n).collect();
        let (x, y) = test.batch(&idx, None).unwrap();
        let pred = tch::no_grad(|| built.model.forward_with(&x, false)).argmax(-1, false);
        let acc = pred.eq_tensor(&y).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
        let recorded = info["test"]["clean_accuracy"].as_f64().unwrap();
        assert!(
            (acc - recorded).abs() <= CLEAN_TOLERANCE,
            "{name}: clean {acc} on the first {n} MNIST test images, sidecar says {recorded}"
        );
    }
}
