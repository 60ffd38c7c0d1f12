//! What a backbone is, as data: architecture hyper-parameters, input size and normalisation,
//! feature width, the name of the classifier in its checkpoints and its parameter-name layout.
//! This mirrors timm's `PretrainedCfg` + model args, and is what the own-checkpoint sidecar stores.

use serde::{Deserialize, Serialize};

use crate::attention::AttentionImpl;
use crate::error::ModelError;
use crate::lenet::LeNetConfig;
use crate::resnet::ResNetConfig;
use crate::swin::SwinConfig;
use crate::vit::VitConfig;

/// Architecture family with its hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum ArchConfig {
    /// Swin Transformer (timm `swin_transformer.py` layout).
    Swin(SwinConfig),
    /// Vision Transformer (timm `vision_transformer.py` layout).
    Vit(VitConfig),
    /// ResNet with basic or bottleneck blocks (timm/torchvision names).
    Resnet(ResNetConfig),
    /// advertorch's MNIST LeNet-5.
    Lenet(LeNetConfig),
    /// A user-supplied TorchScript feature extractor (see [`crate::script`]).
    TorchScript(crate::script::ScriptConfig),
}

/// Which tensor names a backbone's parameters carry (the namespace of its `VarStore`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamLayout {
    /// timm ≥ 0.9 state_dict keys (torchvision keys for ResNet are the same).
    Timm,
    /// advertorch 0.2.3 `LeNet5` keys (`conv1`, `conv2`, `linear1`, `linear2`).
    Advertorch,
    /// Names taken from the TorchScript module's `named_parameters()`.
    TorchScript,
}

/// A backbone description: everything needed to rebuild it and to feed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneDescriptor {
    /// Preset name (timm arch name where one exists).
    pub name: String,
    /// Family and hyper-parameters.
    pub arch: ArchConfig,
    /// Per-channel mean applied inside the classifier, on [0,1] inputs.
    pub mean: Vec<f64>,
    /// Per-channel std applied inside the classifier.
    pub std: Vec<f64>,
    /// Prefix of the classifier tensors in this family's checkpoints (timm `classifier` field:
    /// `head.fc` for Swin, `head` for ViT, `fc` for ResNet, `linear2` for LeNet). The
    /// [`crate::Classifier`] names its own head with the same prefix.
    pub classifier: String,
    /// Parameter-name layout of the backbone variables.
    pub layout: ParamLayout,
}

impl BackboneDescriptor {
    /// Input size `[C, H, W]` the backbone expects (after the classifier's optional resize).
    pub fn input_size(&self) -> [i64; 3] {
        match &self.arch {
            ArchConfig::Swin(c) => [c.in_chans, c.img_size, c.img_size],
            ArchConfig::Vit(c) => [c.in_chans, c.img_size, c.img_size],
            ArchConfig::Resnet(c) => [c.in_chans, c.img_size, c.img_size],
            ArchConfig::Lenet(c) => [c.in_chans, c.img_size, c.img_size],
            ArchConfig::TorchScript(c) => c.input_size,
        }
    }

    /// Width of the pooled feature vector (input of the linear head).
    pub fn num_features(&self) -> i64 {
        match &self.arch {
            ArchConfig::Swin(c) => c.num_features(),
            ArchConfig::Vit(c) => c.embed_dim,
            ArchConfig::Resnet(c) => c.num_features(),
            ArchConfig::Lenet(c) => c.hidden,
            ArchConfig::TorchScript(c) => c.num_features,
        }
    }

    /// Stochastic-depth rate (0 where the family has none).
    pub fn drop_path_rate(&self) -> f64 {
        match &self.arch {
            ArchConfig::Swin(c) => c.drop_path_rate,
            ArchConfig::Vit(c) => c.drop_path_rate,
            ArchConfig::Resnet(c) => c.drop_path_rate,
            ArchConfig::Lenet(_) | ArchConfig::TorchScript(_) => 0.0,
        }
    }

    /// Same backbone with another stochastic-depth rate (e.g. 0.5 for the reference's Swin-B
    /// full finetuning). Errors for families without drop-path.
    pub fn with_drop_path(mut self, rate: f64) -> Result<Self, ModelError> {
        if !(0.0..1.0).contains(&rate) {
            return Err(self.invalid(format!("drop_path_rate must be in [0,1), got {rate}")));
        }
        match &mut self.arch {
            ArchConfig::Swin(c) => c.drop_path_rate = rate,
            ArchConfig::Vit(c) => c.drop_path_rate = rate,
            ArchConfig::Resnet(c) => c.drop_path_rate = rate,
            ArchConfig::Lenet(_) | ArchConfig::TorchScript(_) => {
                return Err(self.invalid("this family has no stochastic depth".into()))
            }
        }
        Ok(self)
    }

    /// Attention implementation of the transformer blocks ([`AttentionImpl::Explicit`] for
    /// families without attention).
    pub fn attention(&self) -> AttentionImpl {
        match &self.arch {
            ArchConfig::Swin(c) => c.attention,
            ArchConfig::Vit(c) => c.attention,
            ArchConfig::Resnet(_) | ArchConfig::Lenet(_) | ArchConfig::TorchScript(_) => AttentionImpl::Explicit,
        }
    }

    /// Same backbone with another attention implementation ([`AttentionImpl::Fused`]: one
    /// `scaled_dot_product_attention` kernel, flash / memory-efficient on CUDA;
    /// [`AttentionImpl::Explicit`]: the reference path). Same parameters and, up to float
    /// rounding, the same outputs. Families without attention (ResNet, LeNet, TorchScript)
    /// are returned unchanged.
    pub fn with_attention(mut self, attention: AttentionImpl) -> Self {
        match &mut self.arch {
            ArchConfig::Swin(c) => c.attention = attention,
            ArchConfig::Vit(c) => c.attention = attention,
            ArchConfig::Resnet(_) | ArchConfig::Lenet(_) | ArchConfig::TorchScript(_) => {}
        }
        self
    }

    /// Same backbone for `in_chans` input channels with the given normalisation (one value per
    /// channel), e.g. 1-channel MNIST for a 3-channel preset.
    pub fn with_input_channels(mut self, in_chans: i64, mean: Vec<f64>, std: Vec<f64>) -> Result<Self, ModelError> {
        if in_chans < 1 || mean.len() as i64 != in_chans || std.len() as i64 != in_chans {
            return Err(self.invalid(format!(
                "need in_chans ≥ 1 and one mean/std per channel (in_chans {in_chans}, {} means, {} stds)",
                mean.len(),
                std.len()
            )));
        }
        match &mut self.arch {
            ArchConfig::Swin(c) => c.in_chans = in_chans,
            ArchConfig::Vit(c) => c.in_chans = in_chans,
            ArchConfig::Resnet(c) => c.in_chans = in_chans,
            ArchConfig::Lenet(c) => c.in_chans = in_chans,
            ArchConfig::TorchScript(c) => c.input_size[0] = in_chans,
        }
        self.mean = mean;
        self.std = std;
        Ok(self)
    }

    /// Checks internal consistency (normalisation length, divisibility of sizes, …).
    pub fn validate(&self) -> Result<(), ModelError> {
        let c = self.input_size()[0];
        if self.mean.len() as i64 != c || self.std.len() as i64 != c {
            return Err(self.invalid(format!(
                "mean/std need one value per input channel ({c}); got {} and {}",
                self.mean.len(),
                self.std.len()
            )));
        }
        if self.std.iter().any(|s| *s <= 0.0) {
            return Err(self.invalid("std values must be positive".into()));
        }
        let r = match &self.arch {
            ArchConfig::Swin(c) => c.validate(),
            ArchConfig::Vit(c) => c.validate(),
            ArchConfig::Resnet(c) => c.validate(),
            ArchConfig::Lenet(c) => c.validate(),
            ArchConfig::TorchScript(_) => Ok(()),
        };
        r.map_err(|reason| self.invalid(reason))
    }

    pub(crate) fn invalid(&self, reason: String) -> ModelError {
        ModelError::InvalidConfig { model: self.name.clone(), reason }
    }
}
