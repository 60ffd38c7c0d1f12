//! `roli export`: a finished stage as a timm state_dict, an HF peft adapter or a RobustBench
//! `model_info` JSON (the work: [`crate::export`]).
use crate::export::{self, Format};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A stage folder of a run (`DIR/lora_roli`) or its checkpoint folder (`DIR/lora_roli/model`).
    pub stage: PathBuf,
    /// timm (state_dict, LoRA merged), peft (HF peft adapter folder; LoRA only) or robustbench
    /// (model_info JSON).
    #[arg(long)]
    pub format: Format,
    /// Output: a .safetensors file (timm), a folder (peft) or a .json file (robustbench).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: ExportArgs) -> anyhow::Result<()> {
    let done = export::export(&a.stage, a.format, &a.out)?;
    println!("{}", done.summary);
    for f in &done.files {
        println!("  wrote {}", f.display());
    }
    Ok(())
}
