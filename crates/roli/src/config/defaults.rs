//! The defaults of the TOML face: the reference's values (spec §4–§5) unless a comment says
//! otherwise. Referenced by name from the `#[serde(default = "defaults::…")]` attributes.
use super::*;
pub fn layout() -> roli_models::SourceLayout {
    roli_models::SourceLayout::Native
}
pub fn name() -> String {
    "roli-run".into()
}
pub fn train_percent() -> u32 {
    90
}
pub fn batch_size() -> usize {
    64
}
pub fn norm() -> Norm {
    Norm::Linf
}
pub fn eps() -> f64 {
    8.0 / 255.0
}
pub fn step_size() -> f64 {
    2.0 / 255.0
}
pub fn train_steps() -> u32 {
    7
}
pub fn eval_steps() -> u32 {
    10
}
pub fn yes() -> bool {
    true
}
pub fn warmup() -> u32 {
    10
}
/// CIFAR-10 linear probe (spec §5.1).
pub fn probe() -> StageConfig {
    StageConfig { epochs: 20, base_lr: 0.05, weight_decay: 0.01, optimizer: OptimizerChoice::Sgd, warmup_epochs: 10 }
}
/// CIFAR-10 Full-FT RanLI.
pub fn ranli_stage() -> StageConfig {
    StageConfig { epochs: 20, base_lr: 5e-4, weight_decay: 0.01, optimizer: OptimizerChoice::Adamw, warmup_epochs: 10 }
}
/// CIFAR-10 Full-FT RoLI.
pub fn roli_stage() -> StageConfig {
    StageConfig { epochs: 20, base_lr: 1e-4, weight_decay: 0.01, optimizer: OptimizerChoice::Adamw, warmup_epochs: 10 }
}
/// The reference's five methods (not every registered one: LayerNorm tuning is opt-in).
pub fn methods() -> Vec<Method> {
    ["full", "bias", "lora", "adapter", "prompt"].iter().filter_map(|m| Method::named(m).ok()).collect()
}
pub fn inits() -> Vec<Init> {
    vec![Init::Ranli, Init::Roli]
}
