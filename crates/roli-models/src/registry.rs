//! The preset table: timm-style names → [`BackboneDescriptor`]s, and the one place that turns a
//! descriptor into a model. No registration side effects; the table is plain data.

use tch::nn;

use crate::backbone::Backbone;
use crate::descriptor::{ArchConfig, BackboneDescriptor, ParamLayout};
use crate::error::ModelError;
use crate::lenet::{LeNet, LeNetConfig};
use crate::peft::PeftSpec;
use crate::resnet::{ResNet, ResNetConfig};
use crate::swin::{Swin, SwinConfig};
use crate::vit::{Vit, VitConfig};

/// ImageNet mean (RoLI normalises inside the model with these, on [0,1] inputs).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet std.
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];
/// MNIST mean/std, used by the 1-channel micro presets.
pub const MNIST_MEAN: [f64; 1] = [0.1307];
/// MNIST std.
pub const MNIST_STD: [f64; 1] = [0.3081];

/// One registry entry.
#[derive(Debug)]
pub struct Preset {
    /// Name (timm arch name where one exists).
    pub name: &'static str,
    /// One-line description.
    pub summary: &'static str,
    make: fn() -> BackboneDescriptor,
}

impl Preset {
    /// The preset's descriptor.
    pub fn descriptor(&self) -> BackboneDescriptor {
        (self.make)()
    }
}

fn d(
    name: &str,
    arch: ArchConfig,
    mean: &[f64],
    std: &[f64],
    classifier: &str,
    layout: ParamLayout,
) -> BackboneDescriptor {
    BackboneDescriptor {
        name: name.into(),
        arch,
        mean: mean.to_vec(),
        std: std.to_vec(),
        classifier: classifier.into(),
        layout,
    }
}

/// All presets.
pub static PRESETS: &[Preset] = &[
    Preset {
        name: "vit_nano_patch7_28",
        summary: "nano 1-channel ViT for 28 px (the demo's backbone: MNIST-family at native size), 64-d cls features",
        make: || {
            d(
                "vit_nano_patch7_28",
                ArchConfig::Vit(VitConfig::nano_patch7_28()),
                &MNIST_MEAN,
                &MNIST_STD,
                "head",
                ParamLayout::Timm,
            )
        },
    },
    Preset {
        name: "swin_nano_patch2_window7_28",
        summary: "nano 1-channel Swin for 28 px (MNIST-family at native size), 64-d features",
        make: || {
            d(
                "swin_nano_patch2_window7_28",
                ArchConfig::Swin(SwinConfig::nano_patch2_window7_28()),
                &MNIST_MEAN,
                &MNIST_STD,
                "head.fc",
                ParamLayout::Timm,
            )
        },
    },
    Preset {
        name: "swin_base_patch4_window7_224",
        summary: "Swin-B @ 224 (RoLI's backbone; ARES AT / Microsoft weights), 1024-d features",
        make: || {
            d(
                "swin_base_patch4_window7_224",
                ArchConfig::Swin(SwinConfig::base_patch4_window7_224()),
                &IMAGENET_MEAN,
                &IMAGENET_STD,
                "head.fc",
                ParamLayout::Timm,
            )
        },
    },
    Preset {
        name: "swin_micro_patch2_window4_32",
        summary: "tiny 1-channel Swin for 32 px (CPU / MNIST pretraining), 128-d features",
        make: || {
            d(
                "swin_micro_patch2_window4_32",
                ArchConfig::Swin(SwinConfig::micro_patch2_window4_32()),
                &MNIST_MEAN,
                &MNIST_STD,
                "head.fc",
                ParamLayout::Timm,
            )
        },
    },
    Preset {
        name: "vit_base_patch16_224",
        summary: "ViT-B/16 @ 224, 768-d cls features",
        make: || {
            d(
                "vit_base_patch16_224",
                ArchConfig::Vit(VitConfig::base_patch16_224()),
                &IMAGENET_MEAN,
                &IMAGENET_STD,
                "head",
                ParamLayout::Timm,
            )
        },
    },
    Preset {
        name: "vit_micro_patch4_32",
        summary: "tiny 1-channel ViT for 32 px (CPU / MNIST pretraining), 64-d features",
        make: || {
            d(
                "vit_micro_patch4_32",
                ArchConfig::Vit(VitConfig::micro_patch4_32()),
                &MNIST_MEAN,
                &MNIST_STD,
                "head",
                ParamLayout::Timm,
            )
        },
    },
    Preset {
        name: "lenet5_advertorch",
        summary: "advertorch MNIST LeNet-5 (robust/clean checkpoints), 200-d features, [0,1] input",
        make: || {
            d(
                "lenet5_advertorch",
                ArchConfig::Lenet(LeNetConfig::advertorch()),
                &[0.0],
                &[1.0],
                "linear2",
                ParamLayout::Advertorch,
            )
        },
    },
    Preset {
        name: "resnet18",
        summary: "ResNet-18 (timm/torchvision names), 512-d features",
        make: || {
            d(
                "resnet18",
                ArchConfig::Resnet(ResNetConfig::resnet18()),
                &IMAGENET_MEAN,
                &IMAGENET_STD,
                "fc",
                ParamLayout::Timm,
            )
        },
    },
    Preset {
        name: "resnet50",
        summary: "ResNet-50 (timm/torchvision names; RobustBench/Madry robust ImageNet), 2048-d features",
        make: || {
            d(
                "resnet50",
                ArchConfig::Resnet(ResNetConfig::resnet50()),
                &IMAGENET_MEAN,
                &IMAGENET_STD,
                "fc",
                ParamLayout::Timm,
            )
        },
    },
];

/// Names of all presets, in table order.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.name).collect()
}

/// The descriptor of a preset.
pub fn descriptor(name: &str) -> Result<BackboneDescriptor, ModelError> {
    PRESETS
        .iter()
        .find(|p| p.name == name)
        .map(Preset::descriptor)
        .ok_or_else(|| ModelError::UnknownPreset { name: name.into(), known: preset_names().join(", ") })
}

/// Builds the backbone a descriptor describes, with its variables under `p` (timm names
/// relative to `p`). `peft` is consulted once per transformer block, and for VPT prompts
/// ([`PeftSpec::vpt`]), which only ViT and Swin accept.
pub fn build_backbone(
    p: &nn::Path,
    desc: &BackboneDescriptor,
    peft: &dyn PeftSpec,
) -> Result<Box<dyn Backbone>, ModelError> {
    desc.validate()?;
    if let Some(v) = peft.vpt() {
        v.validate().map_err(|reason| desc.invalid(format!("{reason} (VptConfig)")))?;
        if !matches!(desc.arch, ArchConfig::Swin(_) | ArchConfig::Vit(_)) {
            return Err(desc.invalid(
                "VPT prompts need a ViT or Swin backbone (transformer tokens to prepend to); \
                 choose another transfer method for this family"
                    .into(),
            ));
        }
    }
    Ok(match &desc.arch {
        ArchConfig::Swin(c) => Box::new(Swin::new(p, desc.clone(), c.clone(), peft)),
        ArchConfig::Vit(c) => Box::new(Vit::new(p, desc.clone(), c.clone(), peft)),
        ArchConfig::Resnet(c) => Box::new(ResNet::new(p, desc.clone(), c.clone())),
        ArchConfig::Lenet(c) => Box::new(LeNet::new(p, desc.clone(), c.clone())),
        ArchConfig::TorchScript(c) => Box::new(crate::script::ScriptBackbone::load(p, desc.clone(), c)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_and_named_like_its_entry() {
        for p in PRESETS {
            let d = p.descriptor();
            assert_eq!(d.name, p.name);
            d.validate().unwrap_or_else(|e| panic!("{}: {e}", p.name));
        }
    }

    #[test]
    fn unknown_preset_lists_known_names() {
        let e = descriptor("swin_gigantic").unwrap_err().to_string();
        assert!(e.contains("swin_gigantic") && e.contains("vit_base_patch16_224"), "{e}");
    }

    #[test]
    fn feature_widths() {
        let w = |n: &str| descriptor(n).unwrap().num_features();
        assert_eq!(w("swin_base_patch4_window7_224"), 1024);
        assert_eq!(w("vit_base_patch16_224"), 768);
        assert_eq!(w("resnet50"), 2048);
        assert_eq!(w("resnet18"), 512);
        assert_eq!(w("lenet5_advertorch"), 200);
        assert_eq!(w("swin_micro_patch2_window4_32"), 128);
    }
}
