use super::*;

#[test]
fn peft_records_keep_only_the_methods_settings_and_rebuild_injectors() {
    let s = Settings { lora: LoraConfig { rank: 4, alpha: 8.0, dropout: 0.0 }, ..Settings::default() };
    let r = PeftRecord::new(Some(Method::named("lora").unwrap()), &s);
    assert_eq!(r.lora.as_ref().map(|l| l.rank), Some(4));
    assert!(r.adapter.is_none() && r.prompt.is_none());
    let back: PeftRecord = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
    assert_eq!(back, r);
    assert!(back.injector().unwrap().is_some());
    let probe = PeftRecord::new(None, &s);
    assert!(probe.injector().unwrap().is_none());
    assert!(PeftRecord::new(Some(Method::named("full").unwrap()), &s).injector().unwrap().is_none());
}

/// A LoRA model with trained-looking (random) B, merged, loaded into the plain model: the same
/// logits, on a ViT and on a Swin (whose blocks sit under `layers.N.`).
#[test]
fn merged_lora_gives_the_lora_models_logits() {
    use roli_models::{Classifier, ClassifierOptions};
    for preset in ["vit_micro_patch4_32", "swin_micro_patch2_window4_32"] {
        let desc = roli_models::descriptor(preset).unwrap();
        let opts = ClassifierOptions::new(5);
        let spec = crate::peft::lora::LoraSpec { rank: 2, alpha: 3.0, dropout: 0.0, zero_init: false };
        tch::manual_seed(3);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let lora = Classifier::with_peft(&vs.root(), &desc, &opts, &spec).unwrap();
        tch::no_grad(|| {
            for (n, mut v) in vs.variables() {
                if n.ends_with("_b") {
                    v.copy_(&(Tensor::randn(v.size(), (Kind::Float, Device::Cpu)) * 0.1));
                }
            }
        });
        let [c, h, w] = desc.input_size();
        let x = Tensor::rand([3, c, h, w], (Kind::Float, Device::Cpu));
        let want = tch::no_grad(|| lora.forward_with(&x, false));
        let mut t: std::collections::BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        merge_lora(&mut t, 1.5).unwrap();
        assert!(t.keys().all(|n| !n.contains("lora_")));
        let pvs = tch::nn::VarStore::new(Device::Cpu);
        let plain = Classifier::new(&pvs.root(), &desc, &opts).unwrap();
        let vars = pvs.variables();
        assert_eq!(vars.len(), t.len(), "{preset}");
        tch::no_grad(|| {
            for (n, v) in &vars {
                v.shallow_clone().copy_(&t[n]);
            }
        });
        let got = tch::no_grad(|| plain.forward_with(&x, false));
        let d = f64::try_from((&got - &want).abs().max()).unwrap();
        assert!(d < 1e-5, "{preset}: {d}");
        let moved = f64::try_from((&want - tch::no_grad(|| lora_free(&desc, &opts, &vs, &x))).abs().max()).unwrap();
        assert!(moved > 1e-4, "{preset}: the LoRA must change the logits for the test to mean anything");
    }
}

/// The LoRA model's backbone without its LoRA (same tensors otherwise).
fn lora_free(
    desc: &roli_models::BackboneDescriptor,
    opts: &roli_models::ClassifierOptions,
    vs: &tch::nn::VarStore,
    x: &Tensor,
) -> Tensor {
    let pvs = tch::nn::VarStore::new(Device::Cpu);
    let plain = roli_models::Classifier::new(&pvs.root(), desc, opts).unwrap();
    let src = vs.variables();
    for (n, v) in pvs.variables() {
        v.shallow_clone().copy_(&src[&n]);
    }
    plain.forward_with(x, false)
}

#[test]
fn eps_reads_as_255ths_when_it_is_one() {
    assert_eq!(eps_text(8.0 / 255.0), "8/255");
    assert_eq!(eps_text(0.1), "0.1");
    assert_eq!(pct(0.5), "50.00");
}
