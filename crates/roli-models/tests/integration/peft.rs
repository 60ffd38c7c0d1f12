//! The PEFT seam: hooks built per block, their variables named under the block, identity at
//! zero init, strict loading that tolerates only the declared PEFT names.

use std::sync::Mutex;

use roli_models::{
    descriptor, load_backbone, AttnHook, BlockExtras, BlockSite, Classifier, ClassifierOptions, HeadPolicy,
    LoadOptions, MlpHook, PeftSpec,
};
use tch::nn::{self, Module};
use tch::{Device, Tensor};

use crate::common::*;

/// LoRA on q and v (A: C→r, B: r→C, B = 0), the reference design.
#[derive(Debug)]
struct LoraQv {
    a_q: nn::Linear,
    b_q: nn::Linear,
    a_v: nn::Linear,
    b_v: nn::Linear,
}

impl AttnHook for LoraQv {
    fn qkv(&self, x: &Tensor, qkv: Tensor, _train: bool) -> Tensor {
        let dq = self.b_q.forward(&self.a_q.forward(x));
        let dv = self.b_v.forward(&self.a_v.forward(x));
        qkv + Tensor::cat(&[dq.shallow_clone(), dq.zeros_like(), dv], -1)
    }
}

/// Only the up-projection bias of a zero-initialised Pfeiffer adapter (all that trains there).
#[derive(Debug)]
struct UpBias(Tensor);

impl MlpHook for UpBias {
    fn mlp_out(&self, m: Tensor, _train: bool) -> Tensor {
        m + &self.0
    }
}

struct Spec {
    sites: Mutex<Vec<String>>,
}

impl PeftSpec for Spec {
    fn block_extras(&self, p: &nn::Path, site: &BlockSite) -> BlockExtras {
        self.sites.lock().unwrap().push(site.name.clone());
        let (c, r) = (site.dim, 4);
        let nob = |init| nn::LinearConfig { ws_init: init, bs_init: None, bias: false };
        let a = nn::Init::Randn { mean: 0.0, stdev: 0.1 };
        let zero = nn::Init::Const(0.0);
        let ap = p / "attn";
        let lora = LoraQv {
            a_q: nn::linear(&ap / "lora_a_q", c, r, nob(a)),
            b_q: nn::linear(&ap / "lora_b_q", r, c, nob(zero)),
            a_v: nn::linear(&ap / "lora_a_v", c, r, nob(a)),
            b_v: nn::linear(&ap / "lora_b_v", r, c, nob(zero)),
        };
        let up = p.var("adapter_up_bias", &[c], zero);
        BlockExtras::new(Some(Box::new(lora)), Some(Box::new(UpBias(up))))
    }
}

#[test]
fn peft_hooks_are_identity_at_zero_init_and_load_strictly_with_allowances() {
    let Some(dir) = tiny() else { return };
    let spec = Spec { sites: Mutex::new(vec![]) };
    let vs = nn::VarStore::new(Device::Cpu);
    let m = Classifier::with_peft(
        &vs.root(),
        &descriptor("vit_micro_patch4_32").unwrap(),
        &ClassifierOptions::new(5),
        &spec,
    )
    .unwrap();
    assert_eq!(*spec.sites.lock().unwrap(), (0..6).map(|i| format!("blocks.{i}")).collect::<Vec<_>>());
    let vars = vs.variables();
    assert!(vars.contains_key("blocks.3.attn.lora_b_v.weight") && vars.contains_key("blocks.5.adapter_up_bias"));

    let file = dir.join("vit_micro.safetensors");
    let strict = LoadOptions { head: HeadPolicy::Load, ..Default::default() };
    let e = load_backbone(&vs, &m, &file, &strict).unwrap_err().to_string();
    assert!(e.contains("missing from the checkpoint (30)") && e.contains("lora_a_q"), "{e}");
    let allow = LoadOptions { allow_missing_containing: vec!["lora_".into(), "adapter_".into()], ..strict };
    let r = load_backbone(&vs, &m, &file, &allow).unwrap();
    assert_eq!(r.allowed_missing.len(), 30);
    // with B = 0 and a zero adapter bias the model equals the plain one
    let io = read_io(&dir.join("vit_micro_io.safetensors"));
    check_parity("vit_micro + zero-init LoRA/adapter", &m, &io);
    // a non-zero adapter bias changes the output (a per-channel one: pre-LN blocks and the
    // final LayerNorm cancel a uniform shift)
    tch::no_grad(|| {
        let mut b = vs.variables()["blocks.2.adapter_up_bias"].shallow_clone();
        b.copy_(&(Tensor::arange(64, (tch::Kind::Float, Device::Cpu)) / 64.0));
    });
    assert!(max_abs(&m.forward_t(&io["x"], false), &io["logits"]) > 1e-3);
}
