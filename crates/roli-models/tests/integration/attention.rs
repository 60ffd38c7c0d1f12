//! Fused attention (`scaled_dot_product_attention`) against the explicit reference path: the
//! same weights built twice, logits and gradients compared, for ViT and Swin (shifted windows,
//! so the shift mask is exercised), plain, VPT-shallow, VPT-deep and with a LoRA-style qkv hook;
//! and the option's spellings and its absence from explicit sidecars.

use roli_models::own::{read_sidecar, SIDECAR_FILE};
use roli_models::{
    descriptor, load_classifier, save_classifier, AttentionImpl, AttnHook, BackboneDescriptor, BlockExtras, BlockSite,
    Classifier, ClassifierOptions, HeadInit, PeftSpec, VptConfig,
};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use crate::common::*;

/// Fused vs explicit: the brief's bound on logits and input gradients (CPU, fp32).
const FUSED_TOL: f64 = 1e-5;

/// Factor on the random qkv weights (std 0.02 gives near-uniform attention).
const SHARPEN: f64 = 4.0;

/// A deterministic `[n, …]` tensor in `[lo, lo + span]` (no global RNG: tests run in parallel).
fn wave(shape: &[i64], freq: f64, lo: f64, span: f64) -> Tensor {
    let n: i64 = shape.iter().product();
    ((Tensor::arange(n, (Kind::Float, Device::Cpu)) * freq).sin() * 0.5 + 0.5).view(shape) * span + lo
}

/// LoRA on q and v with a non-zero `B`, so the hook changes the output.
#[derive(Debug)]
struct Lora {
    a: nn::Linear,
    b: nn::Linear,
}

impl AttnHook for Lora {
    fn qkv(&self, x: &Tensor, qkv: Tensor, _train: bool) -> Tensor {
        let d = self.b.forward(&self.a.forward(x)); // [.., N, 2C]: q and v deltas
        let c = d.size()[d.dim() - 1] / 2;
        qkv + Tensor::cat(&[d.narrow(-1, 0, c), d.narrow(-1, 0, c).zeros_like(), d.narrow(-1, c, c)], -1)
    }
}

/// Optional VPT prompts and an optional LoRA hook in every block.
struct Case {
    vpt: Option<VptConfig>,
    lora: bool,
}

impl PeftSpec for Case {
    fn block_extras(&self, p: &nn::Path, site: &BlockSite) -> BlockExtras {
        let hook = self.lora.then(|| {
            let cfg = |std| nn::LinearConfig {
                ws_init: nn::Init::Randn { mean: 0.0, stdev: std },
                bs_init: None,
                bias: false,
            };
            let ap = p / "attn";
            Box::new(Lora {
                a: nn::linear(&ap / "lora_a", site.dim, 4, cfg(0.3)),
                b: nn::linear(&ap / "lora_b", 4, 2 * site.dim, cfg(0.3)),
            }) as Box<dyn AttnHook>
        });
        BlockExtras::new(hook, None)
    }

    fn vpt(&self) -> Option<VptConfig> {
        self.vpt
    }
}

const PLAIN: Case = Case { vpt: None, lora: false };
const SHALLOW: Case = Case { vpt: Some(VptConfig { tokens: 3, dropout: 0.1, deep: false }), lora: false };
const DEEP: Case = Case { vpt: Some(VptConfig { tokens: 3, dropout: 0.1, deep: true }), lora: false };
const DEEP_LORA: Case = Case { vpt: Some(VptConfig { tokens: 3, dropout: 0.1, deep: true }), lora: true };

/// Builds `desc` with `imp`, then sharpens attention so that bias, masks and prompts matter:
/// qkv weights ×SHARPEN, relative-position tables ×25 (std 0.5). PyTorch's default head keeps
/// the logits O(1), so the absolute tolerance means the same for every case. The seed makes a
/// test run alone reproducible; tests running in parallel share it, so `check` copies the
/// weights instead of relying on it.
fn build(desc: &BackboneDescriptor, imp: AttentionImpl, case: &Case) -> (nn::VarStore, Classifier) {
    tch::manual_seed(11);
    let vs = nn::VarStore::new(Device::Cpu);
    let desc = desc.clone().with_attention(imp);
    let opts = ClassifierOptions { head_init: HeadInit::TorchDefault, ..ClassifierOptions::new(5) };
    let m = Classifier::with_peft(&vs.root(), &desc, &opts, case).unwrap();
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if name.ends_with("attn.qkv.weight") {
                let _ = t.g_mul_scalar_(SHARPEN);
            } else if name.ends_with("relative_position_bias_table") {
                let _ = t.g_mul_scalar_(25.0);
            }
        }
    });
    (vs, m)
}

/// Logits, input gradient and every parameter gradient of `sum(logits·w)` (eval mode).
fn run(vs: &nn::VarStore, m: &Classifier, x: &Tensor, w: &Tensor) -> (Tensor, Tensor, Vec<(String, Tensor)>) {
    let x = x.detach().set_requires_grad(true);
    let logits = m.forward_t(&x, false);
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut inputs: Vec<&Tensor> = vec![&x];
    inputs.extend(vars.iter().map(|(_, t)| t));
    let mut grads = Tensor::run_backward(&[(&logits * w).sum(Kind::Float)], &inputs, false, false);
    let gx = grads.remove(0);
    let named = vars.into_iter().map(|(n, _)| n).zip(grads).collect();
    (logits.detach(), gx, named)
}

/// Builds the explicit and the fused model of `preset` for `case` and asserts they agree.
fn check(preset: &str, label: &str, case: &Case) {
    let desc = descriptor(preset).unwrap();
    let (vs_e, m_e) = build(&desc, AttentionImpl::Explicit, case);
    let (mut vs_f, m_f) = build(&desc, AttentionImpl::Fused, case);
    assert_eq!(m_f.descriptor().attention(), AttentionImpl::Fused);
    vs_f.copy(&vs_e).unwrap(); // same weights, name for name (the global seed is shared by parallel tests)
    let fused_vars = vs_f.variables();
    assert_eq!(fused_vars.len(), vs_e.variables().len());
    for (name, t) in vs_e.variables() {
        assert_eq!(max_abs(&t, &fused_vars[&name]), 0.0, "{label}: {name} differs between the two builds");
    }
    let [c, h, w] = desc.input_size();
    let x = wave(&[3, c, h, w], 0.37, 0.0, 1.0);
    let wt = wave(&[3, 5], 1.3, -1.0, 2.0);
    let (le, ge, pe) = run(&vs_e, &m_e, &x, &wt);
    let (lf, gf, pf) = run(&vs_f, &m_f, &x, &wt);
    let dl = max_abs(&le, &lf);
    let dg = max_abs(&ge, &gf);
    let (mut dp, mut worst) = (0.0f64, String::new());
    for ((name, a), (_, b)) in pe.iter().zip(&pf) {
        let d = max_abs(a, b) / f64::try_from(a.abs().max()).unwrap().max(1.0);
        if d > dp {
            (dp, worst) = (d, name.clone());
        }
    }
    let scale = f64::try_from(le.abs().max()).unwrap();
    let gscale = f64::try_from(ge.abs().max()).unwrap();
    println!(
        "{label}: max|Δlogits| = {dl:.3e} (max|logit| {scale:.3}), max|Δgrad x| = {dg:.3e} (max {gscale:.3e}), \
         max|Δgrad param|/max(1, max|grad|) = {dp:.3e} ({worst})"
    );
    assert!(scale > 0.1 && gscale > 1e-3, "{label}: degenerate outputs");
    assert!(dl <= FUSED_TOL, "{label}: logits differ by {dl:e}");
    assert!(dg <= FUSED_TOL, "{label}: input gradients differ by {dg:e}");
    assert!(dp <= FUSED_TOL, "{label}: gradient of {worst} differs by {dp:e}");
}

#[test]
fn fused_vit_matches_explicit() {
    let p = "vit_nano_patch7_28";
    check(p, "vit_nano plain", &PLAIN);
    check(p, "vit_nano VPT-shallow", &SHALLOW);
    check(p, "vit_nano VPT-deep", &DEEP);
    check(p, "vit_nano VPT-deep + LoRA hook", &DEEP_LORA);
}

#[test]
fn fused_swin_matches_explicit_with_shifted_windows() {
    // micro: 16×16 tokens in 4×4 windows of 4 (shift 2), then 8×8 (shift 2), then one window
    let p = "swin_micro_patch2_window4_32";
    check(p, "swin_micro plain", &PLAIN);
    check(p, "swin_micro VPT-shallow", &SHALLOW);
    check(p, "swin_micro VPT-deep", &DEEP);
    check(p, "swin_micro VPT-deep + LoRA hook", &DEEP_LORA);
    // nano: 2×2 windows of 7 (N = 49, shift 3), then a single 7×7 window
    check("swin_nano_patch2_window7_28", "swin_nano plain", &PLAIN);
    check("swin_nano_patch2_window7_28", "swin_nano VPT-deep", &DEEP);
}

#[test]
fn attention_option_round_trips_and_explicit_sidecars_are_unchanged() {
    for a in AttentionImpl::ALL {
        assert_eq!(a.to_string().parse::<AttentionImpl>().unwrap(), a);
    }
    assert_eq!("fused".parse::<AttentionImpl>().unwrap(), AttentionImpl::Fused);
    let e = "sdpa".parse::<AttentionImpl>().unwrap_err().to_string();
    assert_eq!(e, "unknown attention implementation `sdpa`; choose one of: explicit, fused");

    // explicit descriptors serialise exactly as before the option existed
    let vit = descriptor("vit_nano_patch7_28").unwrap();
    assert_eq!(vit.attention(), AttentionImpl::Explicit);
    let before = r#"{"name":"vit_nano_patch7_28","arch":{"family":"vit","img_size":28,"patch_size":7,"in_chans":1,"embed_dim":64,"depth":4,"num_heads":4,"mlp_ratio":4.0,"qkv_bias":true,"drop_path_rate":0.0,"dropout":0.0},"mean":[0.1307],"std":[0.3081],"classifier":"head","layout":"timm"}"#;
    assert_eq!(serde_json::to_string(&vit).unwrap(), before);
    assert_eq!(serde_json::from_str::<BackboneDescriptor>(before).unwrap(), vit);
    let explicit = vit.clone().with_attention(AttentionImpl::Explicit);
    assert_eq!(serde_json::to_string(&explicit).unwrap(), before);

    // fused is recorded inside the architecture and read back
    let fused = vit.clone().with_attention(AttentionImpl::Fused);
    let json = serde_json::to_string(&fused).unwrap();
    assert_eq!(json, before.replace(r#""dropout":0.0}"#, r#""dropout":0.0,"attention":"fused"}"#));
    assert_eq!(serde_json::from_str::<BackboneDescriptor>(&json).unwrap(), fused);

    // families without attention ignore the option
    let lenet = descriptor("lenet5_advertorch").unwrap();
    assert_eq!(lenet.clone().with_attention(AttentionImpl::Fused), lenet);
    assert_eq!(lenet.attention(), AttentionImpl::Explicit);

    // own checkpoints: an explicit Swin sidecar has no `attention` key; a fused one reloads fused
    let tmp = tempfile::tempdir().unwrap();
    let swin = descriptor("swin_micro_patch2_window4_32").unwrap();
    for imp in AttentionImpl::ALL {
        let (vs, m) = build(&swin, imp, &PLAIN);
        let dir = tmp.path().join(imp.as_str());
        save_classifier(&dir, &vs, &m, serde_json::json!({})).unwrap();
        let text = std::fs::read_to_string(dir.join(SIDECAR_FILE)).unwrap();
        assert_eq!(text.contains("\"attention\""), imp == AttentionImpl::Fused, "{imp}: {text}");
        assert_eq!(read_sidecar(&dir).unwrap().descriptor, swin.clone().with_attention(imp));
        let back = load_classifier(&dir, Device::Cpu).unwrap();
        assert_eq!(back.model.descriptor().attention(), imp);
    }
}
