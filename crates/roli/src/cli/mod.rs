//! The `roli` command line (clap derive). Each subcommand lives in its own module; the `///`
//! comments are the `--help` text.
pub mod bench;
pub mod data;
pub mod demo;
pub mod device;
pub mod eval;
pub mod export;
pub mod pretrain;
pub mod report;
pub mod run;
pub mod tune;
pub mod verify;

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
    /// Time roli against PyTorch eager on the same work (PGD training, PGD-10, AutoAttack stages).
    Bench(bench::BenchArgs),
    /// The main job: the RoLI study on real data (robust and standard backbone) with its report.
    Demo(demo::DemoArgs),
    /// Fetch, list and inspect the real datasets and checkpoints in the cache.
    Data(data::DataArgs),
    /// This machine's devices (info) and a CPU-vs-device parity check of a preset (parity).
    Device(device::DeviceArgs),
    /// Robust accuracy of a classifier under an attack (PGD, APGD, FAB, Square, AutoAttack).
    Eval(eval::EvalArgs),
    /// Export a finished stage: timm state_dict (LoRA merged), HF peft adapter, RobustBench model_info.
    Export(export::ExportArgs),
    /// Train a backbone from scratch (adversarially, or standard with --eps 0) for the model zoo.
    Pretrain(pretrain::PretrainArgs),
    /// Stage 1: adversarial linear probing; writes the head artifact for RoLI.
    Probe(run::ConfigArgs),
    /// Stage 2: adversarial finetuning of one method (RanLI, or RoLI with --init-head).
    Finetune(run::FinetuneArgs),
    /// The report of finished runs: table with 95% CIs, RoLI−RanLI McNemar tests, findings, plots.
    Report(report::ReportArgs),
    /// The whole study of a config: probe, then RanLI and RoLI for every method; summary.json.
    Run(run::RunArgs),
    /// Learning-rate selection on validation (never test) per method and init; writes tuned.toml.
    Tune(tune::TuneArgs),
    /// Re-compute a run's test results from its artifacts and diff them with the recorded ones (exit 0 identical, 1 differences, 2 bad input).
    Verify(verify::VerifyArgs),
}

/// An error message as the one line the CLI promises: a cause that spans lines (a libtorch
/// message, a nested error) is joined with spaces rather than breaking the `error:` line.
pub fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// An error and its causes as one line, `outer: cause: …`. A cause whose text the line already
/// holds is skipped: errors that print their source themselves (`path: io error`) would otherwise
/// repeat it ("Is a directory: Is a directory").
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = one_line(&cause.to_string());
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// clap's usage error (several lines: the problem, a tip, the usage, a pointer to `--help`) as
/// one line: the problem and its tip, then where the usage is.
pub fn usage_error_line(rendered: &str) -> String {
    let problem: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .map(|l| l.strip_prefix("error:").unwrap_or(l).trim())
        .collect();
    format!("{}; see --help", problem.join(" "))
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Bench(a) => bench::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Data(a) => data::run(a),
        Command::Device(a) => device::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Export(a) => export::run(a),
        Command::Pretrain(a) => pretrain::run(a),
        Command::Probe(a) => run::probe(a),
        Command::Finetune(a) => run::finetune(a),
        Command::Run(a) => run::run(a),
        Command::Report(a) => report::run(a),
        Command::Tune(a) => tune::run(a),
        Command::Verify(a) => verify::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage_error(args: &[&str]) -> String {
        let e = Cli::try_parse_from(args).unwrap_err();
        assert!(e.use_stderr(), "{e}");
        usage_error_line(&e.to_string())
    }

    #[test]
    fn usage_errors_are_one_line_naming_the_problem() {
        let e = usage_error(&["roli", "eval", "--model", "m", "--data", "d"]);
        assert_eq!(e, "the following required arguments were not provided: --out <OUT>; see --help");
        let e = usage_error(&["roli", "eval", "--model", "m", "--data", "d", "--out", "o", "--eps", "abc"]);
        assert!(e.starts_with("invalid value 'abc' for '--eps <EPS>'") && e.ends_with("; see --help"), "{e}");
        let e = usage_error(&["roli", "eval", "--model", "m", "--data", "d", "--out", "o", "--format", "zip"]);
        assert!(e.contains("unknown data format 'zip'") && e.contains("imagefolder"), "{e}");
        assert!(!e.contains('\n'));
        assert_eq!(one_line("a\n  b\n\nc"), "a b c");
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::other("Is a directory");
        let e =
            anyhow::Error::new(roli_data::DataError::Io { path: "x/test".into(), source: io }).context("loading data");
        assert_eq!(error_line(&e), "loading data: x/test: Is a directory");
        let e = anyhow::anyhow!("inner\nsecond line").context("outer");
        assert_eq!(error_line(&e), "outer: inner second line");
    }
}
