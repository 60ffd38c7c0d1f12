//! The `roli` binary: parse, set up logging, run, and print errors as one clear line (exit 2;
//! exit 1 for numbers that failed an integrity check, see `roli::integrity`).
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match roli::cli::Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print and exit 0.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("error: {}", roli::cli::usage_error_line(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    match roli::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // Failed integrity checks without --allow-flags: the outputs are written, exit 1.
        Err(e) if e.downcast_ref::<roli::integrity::Unreliable>().is_some() => {
            eprintln!("error: {}", roli::cli::one_line(&e.to_string()));
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {}", roli::cli::error_line(&e));
            ExitCode::from(2)
        }
    }
}
