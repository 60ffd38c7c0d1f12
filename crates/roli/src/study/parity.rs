//! Cross-device parity (`roli device parity`): the same model (built on the CPU from one seed,
//! then moved) and the same batch on the CPU in strict fp32 and on a device at a precision,
//! comparing logits and input gradients — what to run first on a new GPU machine, before
//! trusting any number it produces.
use crate::precision::Precision;
use crate::zoo::{self, BackboneSource, BuildOptions};
use roli_models::{AttentionImpl, SourceLayout};
use serde::Serialize;
use tch::{Device, Kind, Reduction, Tensor};

/// What to compare.
#[derive(Debug, Clone)]
pub struct ParitySpec {
    /// A registry preset (random weights drawn from `seed`).
    pub preset: String,
    /// Square input side (default: the preset's own; another size is resized inside the model).
    pub image_size: Option<i64>,
    pub batch: usize,
    pub classes: i64,
    pub seed: u64,
    /// The device and precision compared against the CPU in fp32.
    pub device: Device,
    pub precision: Precision,
    /// The device side's attention (the CPU side is always explicit).
    pub attention: AttentionImpl,
}

/// The largest differences found.
#[derive(Debug, Clone, Serialize)]
pub struct ParityReport {
    pub preset: String,
    pub device: String,
    pub precision: Precision,
    pub attention: AttentionImpl,
    pub batch: usize,
    pub input: [i64; 3],
    /// max |logits(device) − logits(cpu)|.
    pub max_abs_logits: f64,
    /// max |logits(cpu)|, the scale the difference compares with.
    pub logits_scale: f64,
    /// max |∇x L(device) − ∇x L(cpu)| for the summed cross-entropy L (as the attacks use).
    pub max_abs_grad: f64,
    pub grad_scale: f64,
    /// Arg-max agreement between the two sides.
    pub same_predictions: bool,
}

impl ParityReport {
    /// Whether both differences are within `tol` (absolute).
    pub fn within(&self, tol: f64) -> bool {
        self.max_abs_logits <= tol && self.max_abs_grad <= tol
    }
}

fn build(spec: &ParitySpec, input: [i64; 3], device: Device, attention: AttentionImpl) -> anyhow::Result<zoo::Built> {
    let src = BackboneSource::Preset { preset: spec.preset.clone(), weights: None, layout: SourceLayout::Native };
    let native = roli_models::descriptor(&spec.preset)?.input_size();
    let opts = BuildOptions::random_preset(spec.classes, input, native, spec.seed, attention, device);
    zoo::build(&src, &opts, &roli_models::peft::NoPeft)
}

/// Logits and the input gradient of the summed cross-entropy, both returned on the CPU.
fn logits_and_grad(
    model: &roli_models::Classifier,
    x: &Tensor,
    y: &Tensor,
    device: Device,
    precision: Precision,
) -> (Tensor, Tensor) {
    let xg = x.to_device(device).set_requires_grad(true);
    let logits = precision.forward(device, || model.forward_with(&xg, false)).to_kind(Kind::Float);
    let loss = logits.cross_entropy_loss::<Tensor>(&y.to_device(device), None, Reduction::Sum, -100, 0.0);
    let g = Tensor::run_backward(&[&loss], &[&xg], false, false).remove(0);
    (logits.detach().to_device(Device::Cpu), g.to_device(Device::Cpu))
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

/// Runs the comparison.
pub fn compare(spec: &ParitySpec) -> anyhow::Result<ParityReport> {
    let native = roli_models::descriptor(&spec.preset)?.input_size();
    let input = match spec.image_size {
        Some(s) => [native[0], s, s],
        None => native,
    };
    tch::manual_seed(spec.seed as i64);
    let b = spec.batch.max(1) as i64;
    let x = Tensor::rand([b, input[0], input[1], input[2]], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(spec.classes, [b], (Kind::Int64, Device::Cpu));
    let reference = build(spec, input, Device::Cpu, AttentionImpl::Explicit)?;
    let (l0, g0) = logits_and_grad(&reference.model, &x, &y, Device::Cpu, Precision::Fp32);
    let mut candidate = build(spec, input, spec.device, spec.attention)?;
    // Same seed, same weights — unless another thread drew from libtorch's global generator in
    // between (tests do); copying makes the two sides equal by construction.
    candidate.vs.copy(&reference.vs)?;
    drop(reference);
    let (l1, g1) = logits_and_grad(&candidate.model, &x, &y, spec.device, spec.precision);
    Ok(ParityReport {
        preset: spec.preset.clone(),
        device: crate::device::name(spec.device),
        precision: spec.precision,
        attention: spec.attention,
        batch: spec.batch,
        input,
        max_abs_logits: max_abs(&(&l1 - &l0)),
        logits_scale: max_abs(&l0),
        max_abs_grad: max_abs(&(&g1 - &g0)),
        grad_scale: max_abs(&g0),
        same_predictions: l0.argmax(-1, false).equal(&l1.argmax(-1, false)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Building a model and drawing the batch use libtorch's global generator, which tests on
    /// other threads reseed: these tests take turns.
    static TURNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn spec(precision: Precision) -> ParitySpec {
        ParitySpec {
            preset: "vit_micro_patch4_32".into(),
            image_size: None,
            batch: 2,
            classes: 5,
            seed: 3,
            device: Device::Cpu,
            precision,
            attention: AttentionImpl::Explicit,
        }
    }

    #[test]
    fn the_cpu_against_itself_is_exact_and_the_scales_are_real() {
        let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
        let r = compare(&spec(Precision::Fp32)).unwrap();
        assert_eq!((r.max_abs_logits, r.max_abs_grad), (0.0, 0.0), "{r:?}");
        assert!(r.logits_scale > 0.0 && r.grad_scale > 0.0 && r.same_predictions && r.within(0.0));
        assert_eq!(r.input, [1, 32, 32]);
    }

    #[test]
    fn bf16_autocast_changes_the_numbers_a_little_and_fused_attention_not_at_all() {
        let _turn = TURNS.lock().unwrap_or_else(|e| e.into_inner());
        let bf16 = compare(&spec(Precision::Bf16)).unwrap();
        assert!(bf16.max_abs_logits > 1e-5, "autocast did not apply: {bf16:?}");
        assert!(bf16.max_abs_logits < 0.1 * bf16.logits_scale, "{bf16:?}");
        let fused = compare(&ParitySpec { attention: AttentionImpl::Fused, ..spec(Precision::Fp32) }).unwrap();
        assert!(fused.within(1e-5), "{fused:?}");
    }
}
