//! Conformance of roli's PGD-40 and AutoAttack-standard against the official AutoAttack, on
//! advertorch's adversarially trained MNIST LeNet-5 at L∞ eps 0.3.
//!
//! 1. Reference (Python, official `pyautoattack`):
//!    `.venv/bin/python crates/roli-attacks/tests/reference/aa_reference.py --n 1000 --threads 1 --out /tmp/aa_ref.json`
//! 2. This side, same images, seed, batch size and thread count:
//!    `cargo run --release -p roli-attacks --example conformance -- --n 1000 --threads 1 --reference /tmp/aa_ref.json --out /tmp/aa_roli.json`
//!
//! `--single apgd-ce --norm l1 --single-eps 10` (with the same flags on the Python side, `--norm L1`)
//! also compares one attack in another norm.
//!
//! Prints both robust accuracies and the per-example agreement; exits 1 if roli's AA is weaker than
//! the reference by more than 0.3 points.

#[path = "common/mod.rs"]
mod common;

use anyhow::{bail, Context, Result};
use roli_attacks::{evaluate, AttackSpec, EvalOptions, EvalReport, ProgressEvent, ThreatModel};
use std::path::PathBuf;

struct Args {
    n: usize,
    eps: f64,
    seed: u64,
    bs: usize,
    threads: i32,
    model: String,
    reference: Option<PathBuf>,
    out: Option<PathBuf>,
    skip_aa: bool,
    single: Option<String>,
    norm: String,
    single_eps: Option<f64>,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        n: 1000,
        eps: 0.3,
        seed: 0,
        bs: 250,
        threads: 1,
        model: "advtrained".into(),
        reference: None,
        out: None,
        skip_aa: false,
        single: None,
        norm: "linf".into(),
        single_eps: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--n" => a.n = v()?.parse()?,
            "--eps" => a.eps = v()?.parse()?,
            "--seed" => a.seed = v()?.parse()?,
            "--bs" => a.bs = v()?.parse()?,
            "--threads" => a.threads = v()?.parse()?,
            "--model" => a.model = v()?,
            "--reference" => a.reference = Some(v()?.into()),
            "--out" => a.out = Some(v()?.into()),
            "--skip-aa" => a.skip_aa = true,
            "--single" => a.single = Some(v()?),
            "--norm" => a.norm = v()?,
            "--single-eps" => a.single_eps = Some(v()?.parse()?),
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

fn flags_of(v: &serde_json::Value) -> Option<Vec<bool>> {
    v.as_array()?.iter().map(|b| b.as_bool()).collect()
}

fn compare(name: &str, ours: &EvalReport, theirs: Option<Vec<bool>>) {
    let rob: Vec<bool> = ours.examples.iter().map(|e| e.robust).collect();
    let acc = ours.robust_accuracy;
    match theirs {
        Some(t) if t.len() == rob.len() => {
            let agree = rob.iter().zip(&t).filter(|(a, b)| a == b).count();
            let only_ours = rob.iter().zip(&t).filter(|(a, b)| **a && !**b).count();
            let only_ref = rob.iter().zip(&t).filter(|(a, b)| !**a && **b).count();
            let ref_acc = t.iter().filter(|&&b| b).count() as f64 / t.len() as f64;
            println!(
                "{name:12} roli {:.4}  reference {:.4}  agreement {agree}/{} ({:.2}%)  robust only in roli {only_ours}, only in reference {only_ref}",
                acc,
                ref_acc,
                t.len(),
                100.0 * agree as f64 / t.len() as f64
            );
        }
        _ => println!("{name:12} roli {acc:.4} (no reference)"),
    }
}

fn main() -> Result<()> {
    let a = parse()?;
    tch::set_num_threads(a.threads);
    let (x, y) = common::mnist_test(a.n).context("MNIST test set not in the cache; run `roli data fetch all`")?;
    let net = common::LeNet5::load(&a.model).context("advertorch LeNet not in the cache; run `roli data fetch all`")?;
    let model = |t: &tch::Tensor| net.forward(t);
    let reference: Option<serde_json::Value> = match &a.reference {
        Some(p) => Some(serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )?),
        None => None,
    };
    let progress = |e: &ProgressEvent| {
        if let ProgressEvent::StageEnd(s) = e {
            eprintln!(
                "  {}: robust {:.4} ({:.1} s, {} fwd / {} bwd examples)",
                s.id, s.robust_accuracy, s.seconds, s.passes.forward_examples, s.passes.backward_examples
            );
        }
    };
    let mut opts = EvalOptions::new(ThreatModel::Linf { eps: a.eps });
    opts.seed = a.seed;
    opts.batch_size = a.bs;
    opts.progress = Some(&progress);

    let pgd = evaluate(&model, &x, &y, &AttackSpec::with_pgd(40, Some(0.01), 1), &opts)?;
    println!("n {}  clean {:.4}  (threads {})", pgd.n, pgd.clean_accuracy, a.threads);
    if let Some(r) = &reference {
        let clean = flags_of(&r["clean"]).unwrap_or_default();
        let ours: Vec<bool> = pgd.examples.iter().map(|e| e.clean_correct).collect();
        println!("clean agreement {}/{}", ours.iter().zip(&clean).filter(|(a, b)| a == b).count(), ours.len());
    }
    compare("pgd-40", &pgd, reference.as_ref().and_then(|r| flags_of(&r["pgd"]["robust"])));
    println!(
        "pgd-40 seconds {:.1}, flags {:?}",
        pgd.seconds,
        pgd.flags.iter().map(|f| f.message()).collect::<Vec<_>>()
    );
    let mut out = serde_json::json!({ "pgd": pgd });
    if let Some(name) = &a.single {
        let norm: roli_attacks::Norm = a.norm.parse()?;
        let mut o = EvalOptions::new(ThreatModel::new(norm, a.single_eps.unwrap_or(a.eps)));
        o.seed = a.seed;
        o.batch_size = a.bs;
        let r = evaluate(&model, &x, &y, &name.parse()?, &o)?;
        compare(&format!("{name}-{norm}"), &r, reference.as_ref().and_then(|rf| flags_of(&rf["single"]["robust"])));
        println!(
            "{name} {norm}: max perturbation {:.4}, flags {:?}",
            r.sanity.max_perturbation,
            r.flags.iter().map(|f| f.message()).collect::<Vec<_>>()
        );
        out["single"] = serde_json::to_value(&r)?;
    }
    if !a.skip_aa {
        let aa = evaluate(&model, &x, &y, &"aa-standard".parse()?, &opts)?;
        compare("aa-standard", &aa, reference.as_ref().and_then(|r| flags_of(&r["aa"]["robust"])));
        if let Some(r) = &reference {
            println!(
                "reference per-stage robust accuracy {}; reference seconds {}",
                r["aa"]["stage_robust_accuracy"], r["aa"]["seconds"]
            );
            let theirs: Vec<Option<String>> = r["aa"]["broken_by"]
                .as_array()
                .map(|v| v.iter().map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default();
            if theirs.len() == aa.examples.len() {
                let same =
                    aa.examples.iter().zip(&theirs).filter(|(e, t)| e.broken_by.map(|b| b.to_string()) == **t).count();
                println!("broken_by agreement {same}/{}", theirs.len());
            }
        }
        for s in &aa.stages {
            println!(
                "  roli {}: robust {:.4} after attacking {} ({:.1} s)",
                s.id, s.robust_accuracy, s.n_attacked, s.seconds
            );
        }
        println!(
            "aa-standard seconds {:.1}, passes {:?}, flags {:?}",
            aa.seconds,
            aa.passes,
            aa.flags.iter().map(|f| f.message()).collect::<Vec<_>>()
        );
        if let Some(t) = reference.as_ref().and_then(|r| flags_of(&r["aa"]["robust"])) {
            let ref_acc = t.iter().filter(|&&b| b).count() as f64 / t.len() as f64;
            if aa.robust_accuracy > ref_acc + 0.003 {
                eprintln!(
                    "FAIL: roli AA {:.4} is weaker than the reference {:.4} by more than 0.3 points",
                    aa.robust_accuracy, ref_acc
                );
                std::process::exit(1);
            }
        }
        out["aa"] = serde_json::to_value(&aa)?;
    }
    if let Some(p) = &a.out {
        std::fs::write(p, serde_json::to_string(&out)?).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
