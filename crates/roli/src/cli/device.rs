//! `roli device`: what this machine offers (`info`) and whether a device computes what the CPU
//! computes (`parity`, [`crate::study::parity`]) — the first commands to run on a GPU machine.
use crate::device::ComputeArgs;
use crate::study::parity::{self, ParitySpec};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct DeviceArgs {
    #[command(subcommand)]
    pub command: DeviceCommand,
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// CUDA availability, device count, cuDNN, threads (JSON with --json).
    Info {
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Logits and input gradients of a preset on --device at --precision against the CPU in fp32.
    Parity(ParityArgs),
}

#[derive(Debug, Args)]
pub struct ParityArgs {
    /// A registry preset (random weights), e.g. swin_base_patch4_window7_224.
    #[arg(long)]
    pub preset: String,
    /// Square input side (default: the preset's own).
    #[arg(long)]
    pub image_size: Option<i64>,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    #[arg(long, default_value_t = 10)]
    pub classes: i64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The device side (the CPU side is fp32 with explicit attention).
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Exit 1 when a difference exceeds this (absolute).
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// Also write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(a: DeviceArgs) -> anyhow::Result<()> {
    match a.command {
        DeviceCommand::Info { json } => {
            let info = crate::device::info();
            println!("{}", serde_json::to_string_pretty(&info)?);
            if let Some(p) = json {
                crate::artifacts::write_json(&p, &info)?;
            }
            Ok(())
        }
        DeviceCommand::Parity(p) => {
            let spec = ParitySpec {
                preset: p.preset.clone(),
                image_size: p.image_size,
                batch: p.batch,
                classes: p.classes,
                seed: p.seed,
                device: p.compute.device.resolve()?,
                precision: p.compute.precision,
                attention: p.compute.attention,
            };
            let r = parity::compare(&spec)?;
            println!(
                "{} {:?} on {} {} {} attention: max |Δlogits| {:.3e} (scale {:.3e}), max |Δ∇x| {:.3e} (scale {:.3e}), same predictions: {}",
                r.preset,
                r.input,
                r.device,
                r.precision,
                r.attention,
                r.max_abs_logits,
                r.logits_scale,
                r.max_abs_grad,
                r.grad_scale,
                r.same_predictions
            );
            if let Some(j) = &p.json {
                crate::artifacts::write_json(j, &r)?;
            }
            if let Some(tol) = p.tolerance.filter(|&t| !r.within(t)) {
                anyhow::bail!("parity check failed: a difference exceeds the tolerance {tol:e}");
            }
            Ok(())
        }
    }
}
