//! roli-models: backbones with timm parameter names, strict checkpoint loading and the
//! `[0,1]`-input classifier used by every attack and training loop of roli.
//!
//! * [`registry`]: presets (`swin_base_patch4_window7_224`, `vit_base_patch16_224`, tiny CPU
//!   presets, `lenet5_advertorch`, `resnet18`, `resnet50`) as [`BackboneDescriptor`]s.
//! * [`swin`], [`vit`], [`resnet`], [`lenet`]: one struct per layer, fields named as timm keys.
//! * [`Classifier`]: resize → normalise → backbone → linear head, with the backbone's train
//!   flag separate from the head ([`Classifier::forward_with`]) and the prompts' flag separate
//!   from both ([`Classifier::forward_peft`]).
//! * [`checkpoint`]: safetensors / `torch.save` files, wrappers, `module.` prefixes, Swin legacy
//!   remap, strict coverage with a [`LoadReport`], SHA-256 fingerprints.
//! * [`own`]: the project's own checkpoints (`model.safetensors` + `model.json`).
//! * [`script`]: TorchScript models as backbones or classifiers.
//! * [`attention`]: explicit (reference) or fused (`scaled_dot_product_attention`) attention
//!   in ViT and Swin blocks ([`AttentionImpl`]).
//! * [`peft`]: the build-time seam for LoRA / adapters and the VPT switch.
//! * [`prompt`]: VPT-deep (and shallow) prompt tuning for ViT and Swin ([`Vpt`], [`VptConfig`]).

pub mod attention;
pub mod backbone;
pub mod checkpoint;
pub mod classifier;
pub mod descriptor;
pub mod error;
pub mod layers;
pub mod lenet;
pub mod own;
pub mod peft;
pub mod prompt;
pub mod registry;
pub mod resnet;
pub mod script;
pub mod swin;
pub mod torch_pickle;
pub mod vit;

pub use attention::AttentionImpl;
pub use backbone::{Backbone, KeyFate, SourceLayout};
pub use checkpoint::{fingerprint, load_backbone, read_state_dict, HeadPolicy, LoadOptions, LoadReport};
pub use classifier::{Classifier, ClassifierOptions, HeadInit, RANLI_HEAD_BIAS};
pub use descriptor::{ArchConfig, BackboneDescriptor, ParamLayout};
pub use error::{CheckpointError, ModelError};
pub use own::{load_classifier, load_classifier_with_peft, save_classifier, LoadedClassifier, Sidecar};
pub use peft::{AttnHook, BlockExtras, BlockSite, MlpHook, NoPeft, PeftSpec};
pub use prompt::{Vpt, VptConfig};
pub use registry::{build_backbone, descriptor, PRESETS};
