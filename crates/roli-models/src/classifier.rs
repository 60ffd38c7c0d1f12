//! The [`Classifier`]: `[0,1]` NCHW image → optional differentiable bilinear resize → per-channel
//! normalisation → backbone features → linear head. This is the reference's
//! `nn.Sequential([Resize], NormalizeByChannelMeanStd, ViT|Swin)`, so attacks perturb the image
//! as the caller feeds it (CIFAR: 32×32 before the 32→224 upsample).
//!
//! Variable names: backbone tensors at the root of the caller's `VarStore` under timm's names;
//! the head under the descriptor's classifier prefix (`head.fc.{weight,bias}` for Swin,
//! `head.*` for ViT, `fc.*` for ResNet, `linear2.*` for LeNet), so a timm checkpoint with the
//! right class count loads head and all.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use crate::backbone::Backbone;
use crate::descriptor::{ArchConfig, BackboneDescriptor};
use crate::error::ModelError;
use crate::peft::{NoPeft, PeftSpec};
use crate::registry;
use crate::script::ScriptOutput;

/// RanLI bias: `-log((1-0.01)/0.01)` (the reference's `special_bias`).
pub const RANLI_HEAD_BIAS: f64 = -4.595_119_850_134_59;

/// How the linear head is initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadInit {
    /// The reference's RanLI head: weight ~ kaiming-normal fan_out = N(0, 2/K), bias −4.59512.
    Ranli,
    /// PyTorch `nn.Linear` default: weight and bias ~ U(±1/√fan_in).
    TorchDefault,
}

/// Options of a classifier built on a backbone.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierOptions {
    /// Number of classes K of the head.
    pub num_classes: i64,
    /// Head initialisation.
    pub head_init: HeadInit,
    /// Bilinearly resize inputs (align_corners=false, differentiable) to the backbone's input
    /// size when they differ. When false, inputs of another size are an error.
    pub resize: bool,
}

impl ClassifierOptions {
    /// K classes, RanLI head, no resize.
    pub fn new(num_classes: i64) -> Self {
        ClassifierOptions { num_classes, head_init: HeadInit::Ranli, resize: false }
    }
}

/// Image classifier on [0,1] inputs. Build it on `vs.root()`.
#[derive(Debug)]
pub struct Classifier {
    backbone: Box<dyn Backbone>,
    head: Option<nn::Linear>,
    head_names: Vec<String>,
    mean: Tensor,
    std: Tensor,
    resize: bool,
    num_classes: i64,
}

impl Classifier {
    /// Builds backbone and head under `root` without PEFT extensions.
    pub fn new(root: &nn::Path, desc: &BackboneDescriptor, opts: &ClassifierOptions) -> Result<Self, ModelError> {
        Self::with_peft(root, desc, opts, &NoPeft)
    }

    /// Builds backbone (with `peft` hooks) and head under `root`.
    pub fn with_peft(
        root: &nn::Path,
        desc: &BackboneDescriptor,
        opts: &ClassifierOptions,
        peft: &dyn PeftSpec,
    ) -> Result<Self, ModelError> {
        if opts.num_classes < 1 {
            return Err(desc.invalid(format!("num_classes must be ≥ 1, got {}", opts.num_classes)));
        }
        let backbone = registry::build_backbone(root, desc, peft)?;
        let logits_out = matches!(&desc.arch, ArchConfig::TorchScript(c) if c.output == ScriptOutput::Logits);
        let (head, head_names) = if logits_out {
            if opts.num_classes != backbone.num_features() {
                return Err(desc.invalid(format!(
                    "the TorchScript module returns {} logits but num_classes is {}",
                    backbone.num_features(),
                    opts.num_classes
                )));
            }
            (None, vec![])
        } else {
            let mut hp = root.clone();
            for part in desc.classifier.split('.') {
                hp = hp / part;
            }
            let f = backbone.num_features();
            let (ws_init, bs_init) = match opts.head_init {
                HeadInit::Ranli => (
                    nn::Init::Randn { mean: 0.0, stdev: (2.0 / opts.num_classes as f64).sqrt() },
                    nn::Init::Const(RANLI_HEAD_BIAS),
                ),
                HeadInit::TorchDefault => {
                    let b = 1.0 / (f as f64).sqrt();
                    (nn::Init::Uniform { lo: -b, up: b }, nn::Init::Uniform { lo: -b, up: b })
                }
            };
            let head =
                nn::linear(&hp, f, opts.num_classes, nn::LinearConfig { ws_init, bs_init: Some(bs_init), bias: true });
            let names = vec![format!("{}.weight", desc.classifier), format!("{}.bias", desc.classifier)];
            (Some(head), names)
        };
        let c = desc.input_size()[0];
        let dev = root.device();
        let mean = Tensor::from_slice(&desc.mean).to_kind(Kind::Float).view([1, c, 1, 1]).to_device(dev);
        let std = Tensor::from_slice(&desc.std).to_kind(Kind::Float).view([1, c, 1, 1]).to_device(dev);
        Ok(Classifier { backbone, head, head_names, mean, std, resize: opts.resize, num_classes: opts.num_classes })
    }

    /// Logits; `train` applies to the backbone (dropout, drop-path, BN statistics).
    /// Panics with the [`ModelError`] message on a bad input shape; see [`Self::f_forward_with`].
    pub fn forward_t(&self, x01: &Tensor, train: bool) -> Tensor {
        self.forward_with(x01, train)
    }

    /// Logits with the backbone's mode given separately (frozen encoders: `false` while training
    /// the head). The head has no train/eval behaviour.
    pub fn forward_with(&self, x01: &Tensor, backbone_train: bool) -> Tensor {
        match self.f_forward_with(x01, backbone_train) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    /// Fallible [`Self::forward_with`]: checks the input shape first.
    pub fn f_forward_with(&self, x01: &Tensor, backbone_train: bool) -> Result<Tensor, ModelError> {
        self.f_forward_peft(x01, backbone_train, backbone_train)
    }

    /// Logits with the backbone's and the PEFT prompt modules' modes given separately. Only
    /// VPT's prompt dropout follows `peft_train`; LoRA/adapter hooks follow `backbone_train`
    /// (the reference keeps them in eval with the frozen encoder). VPT training calls
    /// `forward_peft(x, false, true)`, the reference's `train()` override; attacks and
    /// evaluation use `forward_with(x, false)` (everything in eval).
    pub fn forward_peft(&self, x01: &Tensor, backbone_train: bool, peft_train: bool) -> Tensor {
        match self.f_forward_peft(x01, backbone_train, peft_train) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    /// Fallible [`Self::forward_peft`]: checks the input shape first.
    pub fn f_forward_peft(&self, x01: &Tensor, backbone_train: bool, peft_train: bool) -> Result<Tensor, ModelError> {
        let x = self.preprocess(x01)?;
        let f = self.backbone.forward_features_peft(&x, backbone_train, peft_train);
        Ok(self.head_forward(&f))
    }

    /// Pooled backbone features of [0,1] images.
    pub fn features(&self, x01: &Tensor, backbone_train: bool) -> Tensor {
        match self.f_features(x01, backbone_train) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    /// Fallible [`Self::features`] (prompt dropout, if any, follows `backbone_train`).
    pub fn f_features(&self, x01: &Tensor, backbone_train: bool) -> Result<Tensor, ModelError> {
        let x = self.preprocess(x01)?;
        Ok(self.backbone.forward_features_peft(&x, backbone_train, backbone_train))
    }

    /// Applies the head to features (identity for a logits-returning TorchScript module).
    pub fn head_forward(&self, features: &Tensor) -> Tensor {
        match &self.head {
            Some(h) => h.forward(features),
            None => features.shallow_clone(),
        }
    }

    /// Resize (if enabled) and normalisation: what the backbone sees.
    pub fn preprocess(&self, x01: &Tensor) -> Result<Tensor, ModelError> {
        let desc = self.backbone.descriptor();
        let [c, h, w] = desc.input_size();
        let size = x01.size();
        let bad = |expected: String| ModelError::BadInput { model: desc.name.clone(), expected, got: size.clone() };
        if size.len() != 4 || size[1] != c {
            return Err(bad(format!("[B, {c}, H, W] images in [0,1]")));
        }
        let x = if size[2] != h || size[3] != w {
            if !self.resize {
                return Err(bad(format!("[B, {c}, {h}, {w}] (or enable ClassifierOptions::resize)")));
            }
            x01.upsample_bilinear2d([h, w], false, None, None)
        } else {
            x01.shallow_clone()
        };
        Ok((x - &self.mean) / &self.std)
    }

    /// The backbone.
    pub fn backbone(&self) -> &dyn Backbone {
        self.backbone.as_ref()
    }

    /// The backbone's descriptor.
    pub fn descriptor(&self) -> &BackboneDescriptor {
        self.backbone.descriptor()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> i64 {
        self.num_classes
    }

    /// Whether inputs of another size are resized.
    pub fn resizes(&self) -> bool {
        self.resize
    }

    /// `VarStore` names of the head tensors (empty for a logits TorchScript module).
    pub fn head_var_names(&self) -> &[String] {
        &self.head_names
    }

    /// Whether a `VarStore` variable belongs to the head.
    pub fn is_head_var(&self, name: &str) -> bool {
        self.head_names.iter().any(|h| h == name)
    }
}

impl nn::ModuleT for Classifier {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        Classifier::forward_t(self, xs, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn ranli_head_statistics_and_bias() {
        let vs = nn::VarStore::new(Device::Cpu);
        let desc = registry::descriptor("lenet5_advertorch").unwrap();
        let mut o = ClassifierOptions::new(10);
        o.head_init = HeadInit::Ranli;
        let _c = Classifier::new(&vs.root(), &desc, &o).unwrap();
        let vars = vs.variables();
        let w = &vars["linear2.weight"];
        let b = &vars["linear2.bias"];
        let std = f64::try_from(w.std(true)).unwrap();
        assert!((std - (2.0f64 / 10.0).sqrt()).abs() < 0.03, "std {std}");
        let bmax = f64::try_from((b - RANLI_HEAD_BIAS).abs().max()).unwrap();
        assert!(bmax < 1e-6);
        assert!((RANLI_HEAD_BIAS + (99.0f64).ln()).abs() < 1e-12);
    }

    #[test]
    fn resize_is_optional_and_shape_errors_are_clear() {
        let vs = nn::VarStore::new(Device::Cpu);
        let desc = registry::descriptor("vit_micro_patch4_32").unwrap();
        let c = Classifier::new(&vs.root(), &desc, &ClassifierOptions::new(10)).unwrap();
        let x = Tensor::rand([2, 1, 28, 28], (Kind::Float, Device::Cpu));
        let e = c.f_forward_with(&x, false).unwrap_err().to_string();
        assert!(e.contains("[B, 1, 32, 32]") && e.contains("28"), "{e}");
        let vs2 = nn::VarStore::new(Device::Cpu);
        let mut o = ClassifierOptions::new(10);
        o.resize = true;
        let c2 = Classifier::new(&vs2.root(), &desc, &o).unwrap();
        let y = c2.forward_t(&x, false);
        assert_eq!(y.size(), vec![2, 10]);
        // gradient reaches the 28×28 input through the resize
        let xg = x.set_requires_grad(true);
        let g = tch::Tensor::run_backward(&[c2.forward_t(&xg, false).sum(Kind::Float)], &[&xg], false, false);
        assert!(f64::try_from(g[0].abs().sum(Kind::Float)).unwrap() > 0.0);
    }

    #[test]
    fn variable_names_are_timm_keys_without_duplicates() {
        for name in ["swin_micro_patch2_window4_32", "vit_micro_patch4_32", "lenet5_advertorch"] {
            let vs = nn::VarStore::new(Device::Cpu);
            let desc = registry::descriptor(name).unwrap();
            let c = Classifier::new(&vs.root(), &desc, &ClassifierOptions::new(3)).unwrap();
            let vars = vs.variables();
            assert!(vars.keys().all(|k| !k.contains("__")), "{name}: duplicate-renamed variable");
            for h in c.head_var_names() {
                assert!(vars.contains_key(h), "{name}: head var {h} missing");
            }
        }
        let vs = nn::VarStore::new(Device::Cpu);
        let desc = registry::descriptor("swin_micro_patch2_window4_32").unwrap();
        let _c = Classifier::new(&vs.root(), &desc, &ClassifierOptions::new(3)).unwrap();
        let vars = vs.variables();
        for k in [
            "patch_embed.proj.weight",
            "layers.1.downsample.reduction.weight",
            "layers.2.blocks.1.attn.relative_position_bias_table",
            "norm.bias",
            "head.fc.weight",
        ] {
            assert!(vars.contains_key(k), "missing {k}");
        }
        assert!(!vars.contains_key("layers.0.downsample.reduction.weight"));
    }
}
