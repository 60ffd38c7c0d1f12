//! advertorch's MNIST LeNet-5 (`advertorch_examples/models.py`, `LeNet5`), with its parameter
//! names: conv1 (1→32, 3×3, pad 1) → ReLU → maxpool 2 → conv2 (32→64, 3×3, pad 1) → ReLU →
//! maxpool 2 → flatten (NCHW order) → linear1 (3136→200) → ReLU → linear2 (200→10). The
//! backbone ends after linear1's ReLU (200-d features); `linear2` is the classifier, so the
//! [`crate::Classifier`] names its head `linear2` and the full advertorch checkpoint loads with
//! [`crate::HeadPolicy::Load`]. Input is [0,1] without normalisation (mean 0, std 1).

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

use crate::backbone::Backbone;
use crate::descriptor::BackboneDescriptor;
use crate::layers::torch_default_uniform;

/// LeNet-5 hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeNetConfig {
    /// Square input size (28 for MNIST); must be divisible by 4.
    pub img_size: i64,
    /// Input channels.
    pub in_chans: i64,
    /// Output channels of conv1.
    pub conv1: i64,
    /// Output channels of conv2.
    pub conv2: i64,
    /// Width of linear1 = feature width.
    pub hidden: i64,
}

impl LeNetConfig {
    /// advertorch's MNIST LeNet-5.
    pub fn advertorch() -> Self {
        LeNetConfig { img_size: 28, in_chans: 1, conv1: 32, conv2: 64, hidden: 200 }
    }

    fn flat(&self) -> i64 {
        self.conv2 * (self.img_size / 4) * (self.img_size / 4)
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), String> {
        if self.img_size < 4 || self.img_size % 4 != 0 {
            return Err(format!("img_size {} must be a positive multiple of 4", self.img_size));
        }
        Ok(())
    }
}

fn conv3(p: nn::Path, i: i64, o: i64) -> nn::Conv2D {
    let fan_in = i * 9;
    nn::conv2d(
        p,
        i,
        o,
        3,
        nn::ConvConfig {
            padding: 1,
            ws_init: torch_default_uniform(fan_in),
            bs_init: torch_default_uniform(fan_in),
            ..Default::default()
        },
    )
}

/// The LeNet-5 feature extractor.
#[derive(Debug)]
pub struct LeNet {
    descriptor: BackboneDescriptor,
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    linear1: nn::Linear,
}

impl LeNet {
    /// Builds the model under `p`.
    pub(crate) fn new(p: &nn::Path, descriptor: BackboneDescriptor, config: LeNetConfig) -> Self {
        let flat = config.flat();
        LeNet {
            descriptor,
            conv1: conv3(p / "conv1", config.in_chans, config.conv1),
            conv2: conv3(p / "conv2", config.conv1, config.conv2),
            linear1: nn::linear(
                p / "linear1",
                flat,
                config.hidden,
                nn::LinearConfig {
                    ws_init: torch_default_uniform(flat),
                    bs_init: Some(torch_default_uniform(flat)),
                    bias: true,
                },
            ),
        }
    }
}

impl Backbone for LeNet {
    fn forward_features(&self, x: &Tensor, _train: bool) -> Tensor {
        let x = self.conv1.forward(x).relu().max_pool2d_default(2);
        let x = self.conv2.forward(&x).relu().max_pool2d_default(2);
        self.linear1.forward(&x.flatten(1, -1)).relu()
    }

    fn descriptor(&self) -> &BackboneDescriptor {
        &self.descriptor
    }
}
