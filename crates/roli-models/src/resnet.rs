//! ResNet (He et al., CVPR 2016) with timm/torchvision parameter names (`conv1`, `bn1`,
//! `layer{1..4}.{j}.{conv,bn}{1..3}`, `downsample.{0,1}`, classifier `fc`), as used by the
//! RobustBench / MadryLab `robustness` ecosystem (robust ImageNet ResNet-18/50). BatchNorm
//! buffers `running_mean`/`running_var` are `VarStore` variables (not trained); checkpoint
//! `num_batches_tracked` entries are dropped (they only matter for momentum-free BN).

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use crate::backbone::{default_native_fate, Backbone, KeyFate, SourceLayout};
use crate::descriptor::BackboneDescriptor;
use crate::layers::drop_path;

/// Residual block type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// Two 3×3 convolutions, expansion 1 (ResNet-18/34).
    Basic,
    /// 1×1 → 3×3 → 1×1, expansion 4 (ResNet-50/101/152).
    Bottleneck,
}

impl BlockKind {
    fn expansion(self) -> i64 {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// ResNet hyper-parameters (timm `ResNet` arguments that we support).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// Nominal square input size (the network itself is size-agnostic).
    pub img_size: i64,
    /// Input channels.
    pub in_chans: i64,
    /// Block type.
    pub block: BlockKind,
    /// Blocks per stage.
    pub layers: Vec<i64>,
    /// Base width of each stage (timm `channels`).
    pub channels: Vec<i64>,
    /// Width of the 7×7 stem convolution (64 in every timm/torchvision ResNet with the default stem).
    pub stem_width: i64,
    /// Maximum stochastic-depth rate (timm: `rate · block_idx / (n_blocks − 1)`).
    pub drop_path_rate: f64,
}

impl ResNetConfig {
    /// ResNet-18.
    pub fn resnet18() -> Self {
        ResNetConfig {
            img_size: 224,
            in_chans: 3,
            block: BlockKind::Basic,
            layers: vec![2, 2, 2, 2],
            channels: vec![64, 128, 256, 512],
            stem_width: 64,
            drop_path_rate: 0.0,
        }
    }

    /// ResNet-50.
    pub fn resnet50() -> Self {
        ResNetConfig { block: BlockKind::Bottleneck, layers: vec![3, 4, 6, 3], ..Self::resnet18() }
    }

    /// Width of the pooled features.
    pub fn num_features(&self) -> i64 {
        self.channels.last().copied().unwrap_or(0) * self.block.expansion()
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), String> {
        if self.layers.is_empty() || self.layers.len() != self.channels.len() {
            return Err(format!(
                "layers {:?} and channels {:?} must be non-empty and of equal length",
                self.layers, self.channels
            ));
        }
        if self.layers.iter().chain(&self.channels).any(|v| *v < 1) || self.stem_width < 1 {
            return Err("layers, channels and stem_width must be positive".into());
        }
        Ok(())
    }
}

fn conv(p: nn::Path, i: i64, o: i64, k: i64, stride: i64) -> nn::Conv2D {
    nn::conv2d(
        p,
        i,
        o,
        k,
        nn::ConvConfig {
            stride,
            padding: k / 2,
            bias: false,
            // timm: kaiming-normal, fan_out, ReLU gain
            ws_init: nn::Init::Kaiming {
                dist: nn::init::NormalOrUniform::Normal,
                fan: nn::init::FanInOut::FanOut,
                non_linearity: nn::init::NonLinearity::ReLU,
            },
            ..Default::default()
        },
    )
}

fn bn(p: nn::Path, c: i64, zero: bool) -> nn::BatchNorm {
    nn::batch_norm2d(
        p,
        c,
        nn::BatchNormConfig { ws_init: nn::Init::Const(if zero { 0.0 } else { 1.0 }), ..Default::default() },
    )
}

#[derive(Debug)]
struct Block {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
    drop_path: f64,
}

impl Block {
    fn new(p: &nn::Path, kind: BlockKind, inplanes: i64, planes: i64, stride: i64, drop_path: f64) -> Self {
        let out = planes * kind.expansion();
        // timm zero_init_last: the last BN of each block starts at 0 (identity residual)
        let convs = match kind {
            BlockKind::Basic => vec![
                (conv(p / "conv1", inplanes, planes, 3, stride), bn(p / "bn1", planes, false)),
                (conv(p / "conv2", planes, planes, 3, 1), bn(p / "bn2", planes, true)),
            ],
            BlockKind::Bottleneck => vec![
                (conv(p / "conv1", inplanes, planes, 1, 1), bn(p / "bn1", planes, false)),
                (conv(p / "conv2", planes, planes, 3, stride), bn(p / "bn2", planes, false)),
                (conv(p / "conv3", planes, out, 1, 1), bn(p / "bn3", out, true)),
            ],
        };
        let downsample = (stride != 1 || inplanes != out).then(|| {
            let dp = p / "downsample";
            (conv(&dp / "0", inplanes, out, 1, stride), bn(&dp / "1", out, false))
        });
        Block { convs, downsample, drop_path }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut h = x.shallow_clone();
        for (i, (c, b)) in self.convs.iter().enumerate() {
            h = b.forward_t(&c.forward(&h), train);
            if i < last {
                h = h.relu();
            }
        }
        let shortcut = match &self.downsample {
            Some((c, b)) => b.forward_t(&c.forward(x), train),
            None => x.shallow_clone(),
        };
        (drop_path(&h, self.drop_path, train) + shortcut).relu()
    }
}

/// A ResNet feature extractor (global average pooled).
#[derive(Debug)]
pub struct ResNet {
    descriptor: BackboneDescriptor,
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    stages: Vec<Vec<Block>>,
}

impl ResNet {
    /// Builds the model under `p`. The config must be valid.
    pub(crate) fn new(p: &nn::Path, descriptor: BackboneDescriptor, config: ResNetConfig) -> Self {
        let conv1 = conv(p / "conv1", config.in_chans, config.stem_width, 7, 2);
        let bn1 = bn(p / "bn1", config.stem_width, false);
        let total: i64 = config.layers.iter().sum();
        let mut idx = 0i64;
        let mut inplanes = config.stem_width;
        let mut stages = Vec::new();
        for (s, (&n, &planes)) in config.layers.iter().zip(&config.channels).enumerate() {
            let sp = p / format!("layer{}", s + 1);
            let mut blocks = Vec::new();
            for j in 0..n {
                let stride = if s > 0 && j == 0 { 2 } else { 1 };
                let rate = if total > 1 { config.drop_path_rate * idx as f64 / (total - 1) as f64 } else { 0.0 };
                blocks.push(Block::new(&(&sp / j), config.block, inplanes, planes, stride, rate));
                inplanes = planes * config.block.expansion();
                idx += 1;
            }
            stages.push(blocks);
        }
        ResNet { descriptor, conv1, bn1, stages }
    }
}

impl Backbone for ResNet {
    fn forward_features(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x =
            self.bn1.forward_t(&self.conv1.forward(x), train).relu().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for stage in &self.stages {
            for b in stage {
                x = b.forward(&x, train);
            }
        }
        x.mean_dim([2i64, 3].as_slice(), false, x.kind())
    }

    fn descriptor(&self) -> &BackboneDescriptor {
        &self.descriptor
    }

    fn map_checkpoint_key(&self, layout: SourceLayout, key: &str) -> KeyFate {
        if key.ends_with(".num_batches_tracked") || key == "num_batches_tracked" {
            return KeyFate::Ignore("BatchNorm step counter (unused with momentum 0.1)");
        }
        match layout {
            SourceLayout::Native => default_native_fate(&self.descriptor.classifier, key),
            SourceLayout::SwinLegacy => KeyFate::WrongLayout,
        }
    }
}
