//! VPT prompts: the spec's parameter count on Swin-B, variable names and gradients on the
//! micro presets, parity with a PyTorch VPT-deep (timm + prompt insertion in gen.py), and the
//! prompt-dropout flag.

use std::collections::HashMap;
use std::sync::OnceLock;

use roli_models::prompt::{prompt_param_count, prompt_vars, PROMPT_MARKER};
use roli_models::{
    descriptor, load_backbone, load_classifier, load_classifier_with_peft, save_classifier, BackboneDescriptor,
    Classifier, ClassifierOptions, HeadPolicy, LoadOptions, NoPeft, Vpt, VptConfig,
};
use tch::{nn, Device, Kind, Tensor};

use crate::common::*;

const MICRO: [&str; 2] = ["swin_micro_patch2_window4_32", "vit_micro_patch4_32"];

fn vpt(tokens: i64, dropout: f64, deep: bool) -> Vpt {
    Vpt(VptConfig { tokens, dropout, deep })
}

fn build(desc: &BackboneDescriptor, spec: &Vpt) -> (nn::VarStore, Classifier) {
    let vs = nn::VarStore::new(Device::Cpu);
    let m = Classifier::with_peft(&vs.root(), desc, &ClassifierOptions::new(5), spec).unwrap();
    (vs, m)
}

fn prompt_numel(vs: &nn::VarStore) -> i64 {
    vs.variables().iter().filter(|(n, _)| n.contains(PROMPT_MARKER)).map(|(_, t)| t.numel() as i64).sum()
}

fn input(b: i64) -> Tensor {
    tch::manual_seed(7);
    Tensor::rand([b, 1, 32, 32], (Kind::Float, Device::Cpu))
}

#[test]
fn swin_b_vpt_deep_has_the_specs_prompt_count() {
    // The count comes from the built VarStore (Swin-B on CPU: a few seconds).
    let desc = descriptor("swin_base_patch4_window7_224").unwrap();
    let (vs, m) = build(&desc, &Vpt(VptConfig::REFERENCE));
    let n = prompt_numel(&vs);
    println!("swin_base_patch4_window7_224 VPT-deep T=10: {n} prompt parameters");
    assert_eq!(n, 120_320);
    assert_eq!(prompt_param_count(&desc.arch, &VptConfig::REFERENCE), Some(n));
    drop(m);
    let t20 = VptConfig { tokens: 20, ..VptConfig::REFERENCE };
    assert_eq!(prompt_param_count(&desc.arch, &t20), Some(240_640));
}

#[test]
fn micro_models_with_prompts_run_and_every_prompt_gets_gradient() {
    for name in MICRO {
        let desc = descriptor(name).unwrap();
        for deep in [true, false] {
            let cfg = VptConfig { tokens: 4, dropout: 0.1, deep };
            let (vs, m) = build(&desc, &Vpt(cfg));
            let vars = vs.variables();
            let mut names: Vec<String> = vars.keys().filter(|k| k.contains(PROMPT_MARKER)).cloned().collect();
            names.sort();
            let mut expected: Vec<String> = prompt_vars(&desc.arch, &cfg)
                .unwrap()
                .into_iter()
                .map(|p| {
                    assert_eq!(vars[&p.name].size(), p.shape, "{name}: {}", p.name);
                    p.name
                })
                .collect();
            expected.sort();
            assert_eq!(names, expected, "{name} deep={deep}");
            // everything else is the plain model, name for name and shape for shape
            let plain = nn::VarStore::new(Device::Cpu);
            let _p = Classifier::new(&plain.root(), &desc, &ClassifierOptions::new(5)).unwrap();
            let pv = plain.variables();
            let shapes = |v: &HashMap<String, Tensor>| -> Vec<(String, Vec<i64>)> {
                let mut s: Vec<_> =
                    v.iter().filter(|(k, _)| !k.contains(PROMPT_MARKER)).map(|(k, t)| (k.clone(), t.size())).collect();
                s.sort();
                s
            };
            assert_eq!(shapes(&vars), shapes(&pv), "{name}");
            // input prompts + one deep tensor (ViT) or one per stage (3-stage micro Swin)
            let deep_tensors = if name.starts_with("swin") { 3 } else { 1 };
            assert_eq!(names.len(), 1 + if deep { deep_tensors } else { 0 });

            // each sample's windows see that sample's prompts: batching changes nothing
            let x = input(2);
            let both = m.forward_with(&x, false);
            let first = m.forward_with(&x.narrow(0, 0, 1), false);
            assert!(max_abs(&both.narrow(0, 0, 1), &first) < 1e-5, "{name} deep={deep}: samples mix");

            let logits = m.forward_peft(&x, false, true);
            assert_eq!(logits.size(), vec![2, 5]);
            assert!(bool::try_from(logits.isfinite().all()).unwrap(), "{name}: non-finite logits");
            let w = Tensor::randn([2, 5], (Kind::Float, Device::Cpu));
            (&logits * w).sum(Kind::Float).backward();
            for n in &names {
                let g = vars[n].grad();
                assert!(g.defined(), "{name}: no gradient for {n}");
                // every row (block) of a deep prompt tensor must receive gradient
                let per_row = g.abs().sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Float);
                let min = f64::try_from(per_row.min()).unwrap();
                assert!(min > 0.0, "{name} deep={deep}: a row of {n} gets no gradient: {per_row:?}");
            }
        }
    }
}

#[test]
fn prompt_dropout_follows_the_peft_flag_only() {
    for name in MICRO {
        let mut desc = descriptor(name).unwrap();
        if let roli_models::ArchConfig::Vit(c) = &mut desc.arch {
            c.dropout = 0.3; // backbone dropout: must stay off while only the prompts train
        }
        let x = input(3);
        let (_vs, m) = build(&desc, &vpt(4, 0.5, true));
        let eval = m.forward_with(&x, false);
        let a = m.forward_peft(&x, false, false);
        let b = m.forward_peft(&x, false, false);
        assert_eq!(max_abs(&a, &eval), 0.0, "{name}");
        assert_eq!(max_abs(&b, &eval), 0.0, "{name}");
        tch::manual_seed(1);
        let t1 = m.forward_peft(&x, false, true);
        let t2 = m.forward_peft(&x, false, true);
        assert!(max_abs(&t1, &eval) > 1e-4, "{name}: prompt dropout inactive");
        assert!(max_abs(&t1, &t2) > 1e-4, "{name}: prompt dropout not random");

        // without prompt dropout, (false, true) is exactly eval: the backbone stays in eval
        let (_vs0, m0) = build(&desc, &vpt(4, 0.0, true));
        assert_eq!(
            max_abs(&m0.forward_peft(&x, false, true), &m0.forward_with(&x, false)),
            0.0,
            "{name}: backbone dropout leaked into prompt training"
        );
        if name.starts_with("vit") {
            // sanity: the backbone dropout does act when the backbone trains
            assert!(max_abs(&m0.forward_peft(&x, true, false), &m0.forward_with(&x, false)) > 1e-4);
        }
    }
}

#[test]
fn vpt_is_rejected_where_it_cannot_apply() {
    let vs = nn::VarStore::new(Device::Cpu);
    let e = Classifier::with_peft(
        &vs.root(),
        &descriptor("lenet5_advertorch").unwrap(),
        &ClassifierOptions::new(10),
        &Vpt(VptConfig::REFERENCE),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("ViT or Swin") && e.contains("lenet5_advertorch"), "{e}");
    let e = Classifier::with_peft(
        &vs.root(),
        &descriptor(MICRO[0]).unwrap(),
        &ClassifierOptions::new(10),
        &vpt(0, 0.1, true),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("tokens = 0"), "{e}");
    // NoPeft builds no prompt tensors
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = Classifier::with_peft(&vs.root(), &descriptor(MICRO[0]).unwrap(), &ClassifierOptions::new(10), &NoPeft)
        .unwrap();
    assert_eq!(prompt_numel(&vs), 0);
}

fn golden() -> Option<&'static std::path::Path> {
    static DIR: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| generate("vpt", &[])).as_deref()
}

/// Logits, input gradients and every prompt tensor's gradient against gen.py's VPT-deep.
fn check_vpt_parity(case: &str, preset: &str) {
    let Some(dir) = golden() else { return };
    let desc = descriptor(preset).unwrap();
    let (vs, m) = build(&desc, &vpt(3, 0.1, true));
    let r = load_backbone(
        &vs,
        &m,
        dir.join(format!("{case}.safetensors")),
        &LoadOptions { head: HeadPolicy::Load, ..Default::default() },
    )
    .unwrap();
    assert!(r.is_clean() && r.head_loaded, "{case}: {r:?}");
    let io: HashMap<String, Tensor> = read_io(&dir.join(format!("{case}_io.safetensors")));
    check_parity(&format!("{case} (VPT-deep, T=3)"), &m, &io);

    let vars = vs.variables();
    for p in vars.values() {
        let mut p = p.shallow_clone();
        p.zero_grad();
    }
    let logits = m.forward_t(&io["x"], false);
    (&logits * &io["w"]).sum(Kind::Float).backward();
    let mut checked = 0;
    for (k, want) in io.iter().filter(|(k, _)| k.starts_with("grad_")) {
        let name = &k["grad_".len()..];
        let got = vars[name].grad();
        let d = max_abs(&got, want);
        let scale = f64::try_from(want.abs().max()).unwrap();
        println!("{case}: {name} max|Δgrad| = {d:.3e} (max|grad| {scale:.3e})");
        assert!(scale > 0.0 && d <= PARITY_TOL, "{case}: gradient of {name} differs by {d:e}");
        checked += 1;
    }
    assert_eq!(checked, prompt_vars(&desc.arch, &VptConfig { tokens: 3, dropout: 0.1, deep: true }).unwrap().len());
}

#[test]
fn vit_vpt_deep_matches_pytorch() {
    check_vpt_parity("vit_micro_vpt", "vit_micro_patch4_32");
}

#[test]
fn swin_vpt_deep_matches_pytorch() {
    check_vpt_parity("swin_micro_vpt", "swin_micro_patch2_window4_32");
}

#[test]
fn own_checkpoint_round_trip_needs_the_vpt_spec() {
    let desc = descriptor(MICRO[0]).unwrap();
    let spec = vpt(4, 0.1, true);
    let (vs, m) = build(&desc, &spec);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vpt");
    save_classifier(&dir, &vs, &m, serde_json::json!({"method": "prompt"})).unwrap();
    let back = load_classifier_with_peft(&dir, Device::Cpu, &spec).unwrap();
    let x = input(2);
    assert_eq!(max_abs(&back.model.forward_with(&x, false), &m.forward_with(&x, false)), 0.0);
    let e = load_classifier(&dir, Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("unexpected") && e.contains("deep_prompt_embeddings_1"), "{e}");
}
