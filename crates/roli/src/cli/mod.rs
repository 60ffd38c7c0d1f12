//! The `roli` command line (clap derive). Each subcommand lives in its own module; the `///`
//! comments are the `--help` text.
pub mod data;

use clap::{Parser, Subcommand};

/// roli — adversarially robust transfer learning (RoLI) on libtorch.
#[derive(Debug, Parser)]
#[command(name = "roli", version, about, long_about = None)]
pub struct Cli {
    /// Log level: error, warn, info, debug, trace (or RUST_LOG).
    #[arg(long, global = true, default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch, list and inspect the real datasets and checkpoints in the cache.
    Data(data::DataArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Data(a) => data::run(a),
    }
}
