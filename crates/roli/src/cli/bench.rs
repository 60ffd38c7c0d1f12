//! `roli bench`: roli against PyTorch eager on the same work in the same run (the benchmark:
//! [`crate::study::bench`]). Prints the table; `--json OUT` writes every number.
use crate::device::ComputeArgs;
use crate::study::bench::{self, BenchRequest};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A registry preset (`lenet5_advertorch`, `vit_micro_patch4_32`, `swin_micro_patch2_window4_32`,
    /// `swin_base_patch4_window7_224`, `vit_base_patch16_224`, …), random weights.
    #[arg(long)]
    pub preset: String,
    /// Images per training / PGD-10 batch.
    #[arg(long, default_value_t = 64)]
    pub batch: i64,
    /// Square image size (default: the preset's native size; another size is resized inside the model).
    #[arg(long)]
    pub image_size: Option<i64>,
    /// Classes of the head.
    #[arg(long, default_value_t = 10)]
    pub classes: i64,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Timed iterations per item.
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// Warm-up iterations per item (not timed).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Iterations of each AutoAttack stage (queries for Square; AutoAttack itself uses 100 / 5000).
    #[arg(long, default_value_t = 10)]
    pub aa_iters: usize,
    /// Images the AutoAttack stages run on.
    #[arg(long, default_value_t = 16)]
    pub aa_n: i64,
    /// Only roli's side (no Python subprocess).
    #[arg(long)]
    pub no_torch: bool,
    /// The Python of the PyTorch side (default: $ROLI_PYTHON, the repo's .venv/bin/python, else python3).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Also time torch.compile(model) for PGD-10 on the PyTorch side.
    #[arg(long)]
    pub compile: bool,
    /// The device's peak TFLOP/s at this precision, for the "% of peak" column.
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Seed of the weights, the data and the attacks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write every number (settings, both sides per item, ratios) to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    let req = BenchRequest {
        preset: a.preset,
        batch: a.batch,
        image_size: a.image_size,
        classes: a.classes,
        device: a.compute.device.resolve()?,
        precision: a.compute.precision,
        attention: a.compute.attention,
        iters: a.iters,
        warmup: a.warmup,
        aa_iters: a.aa_iters,
        aa_n: a.aa_n,
        torch: !a.no_torch,
        python: a.python,
        compile: a.compile,
        peak_tflops: a.peak_tflops,
        seed: a.seed,
    };
    let report = bench::run(&req)?;
    print!("{}", bench::table(&report));
    if let Some(p) = &a.json {
        bench::write(p, &report)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}
