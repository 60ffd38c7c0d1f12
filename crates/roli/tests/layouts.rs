//! Issue 14: every supported dataset layout is recognised by its real files and evaluates end to
//! end through `roli eval` (`--attack none`, two examples, a random-weight preset). The folders
//! are tiny ones written here, in the official formats: ImageFolder with train/+test/ (the layout
//! once taken for CIFAR-100 python) and with train/+val/+test/, CIFAR-100 python pickles, CIFAR-10
//! binary, IDX plain and gzipped, JSON splits, and a folder that is two layouts at once, read
//! with `--format`.
mod common;

use common::{roli, run};
use std::path::Path;

fn png(p: &Path, v: u8) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    image::GrayImage::from_pixel(8, 8, image::Luma([v])).save(p).unwrap();
}

fn image_folder(root: &Path, splits: &[&str]) {
    for s in splits {
        for (k, c) in ["cat", "dog"].iter().enumerate() {
            for i in 0..10u8 {
                png(&root.join(s).join(c).join(format!("{i}.png")), 50 * k as u8 + i);
            }
        }
    }
}

/// A protocol-2 pickle of `{'fine_labels': labels, 'data': uint8 array [n, 3072]}`, as the
/// CIFAR-100 python files `train` and `test` are.
fn cifar100_pickle(labels: &[u8]) -> Vec<u8> {
    let n = labels.len();
    let mut p = vec![0x80, 2, b'}', b'(', b'U', 11];
    p.extend(b"fine_labels");
    p.extend([b']', b'(']);
    for &l in labels {
        p.extend([b'K', l]);
    }
    p.extend([b'e', b'U', 4]);
    p.extend(b"data");
    p.extend(b"cnumpy.core.multiarray\n_reconstruct\n");
    p.extend([b')', b'R', b'(', b'K', 1, b'K', n as u8, b'M', 0x00, 0x0c, 0x86, b'N', 0x89, b'T']);
    p.extend(((n * 3072) as u32).to_le_bytes());
    p.extend((0..n * 3072).map(|i| (i % 253) as u8));
    p.extend([b't', b'b', b'u', b'.']);
    p
}

fn idx(root: &Path, gz: bool) {
    std::fs::create_dir_all(root).unwrap();
    let (n, labels) = (4, [0u8, 1, 2, 1]);
    let px: Vec<u8> = (0..n * 28 * 28).map(|i| (i % 251) as u8).collect();
    for prefix in ["train", "t10k"] {
        for (name, bytes) in [
            (format!("{prefix}-images-idx3-ubyte"), roli::data::idx::encode_idx(&[n, 28, 28], &px)),
            (format!("{prefix}-labels-idx1-ubyte"), roli::data::idx::encode_idx(&[n], &labels)),
        ] {
            if gz {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut e, &bytes).unwrap();
                std::fs::write(root.join(format!("{name}.gz")), e.finish().unwrap()).unwrap();
            } else {
                std::fs::write(root.join(name), bytes).unwrap();
            }
        }
    }
}

/// `roli eval --attack none` on two examples: the clean-accuracy line, or the whole stderr.
fn evaluate(model: &str, data: &Path, extra: &[&str], out: &Path) -> Result<String, String> {
    let mut c = roli();
    c.args(["eval", "--model", model, "--attack", "none", "--limit", "2", "--log", "warn", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra);
    let (code, stdout, stderr) = run(c);
    if code == 0 && stderr.trim().is_empty() {
        Ok(stdout.lines().next().unwrap_or_default().to_string())
    } else {
        Err(format!("exit {code}: {stderr}"))
    }
}

#[test]
fn every_layout_is_recognised_and_evaluates() {
    let d = tempfile::tempdir().unwrap();
    let r = |s: &str| d.path().join(s);
    image_folder(&r("if_train_test"), &["train", "test"]);
    image_folder(&r("if_train_val_test"), &["train", "val", "test"]);
    std::fs::create_dir_all(r("cifar100_py")).unwrap();
    std::fs::write(r("cifar100_py/train"), cifar100_pickle(&[3, 99, 7, 0])).unwrap();
    std::fs::write(r("cifar100_py/test"), cifar100_pickle(&[42, 5])).unwrap();
    std::fs::write(r("cifar100_py/meta"), cifar100_pickle(&[])).unwrap();
    std::fs::create_dir_all(r("cifar10_bin")).unwrap();
    let px: Vec<u8> = (0..2 * 3072).map(|i| (i % 7) as u8).collect();
    let batch = roli::data::cifar::encode_binary(roli::data::cifar::CifarKind::Cifar10, &px, &[1, 8]);
    std::fs::write(r("cifar10_bin/test_batch.bin"), batch).unwrap();
    idx(&r("idx"), false);
    idx(&r("idx_gz"), true);
    image_folder(&r("json/images"), &["all"]);
    for s in ["train", "val", "test"] {
        let json = r#"{"all/cat/0.png": 4, "all/dog/1.png": 7, "all/cat/1.png": 4}"#;
        std::fs::write(r(&format!("json/{s}.json")), json).unwrap();
    }
    image_folder(&r("both"), &["train", "test"]);
    std::fs::copy(r("json/train.json"), r("both/train.json")).unwrap();
    std::fs::copy(r("json/test.json"), r("both/test.json")).unwrap();
    image_folder(&r("both/all"), &[""]);

    let out = d.path().join("out");
    let gray = "lenet5_advertorch";
    let rgb = "resnet18";
    let cases: Vec<(&str, &str, Vec<&str>, &str)> = vec![
        ("ImageFolder train/+test/", gray, vec![], "test (n=2)"),
        ("ImageFolder train/+test/, val cut from train", gray, vec!["--split", "val"], "val (n=2)"),
        ("ImageFolder train/+val/+test/", gray, vec!["--split", "val"], "val (n=2)"),
        ("CIFAR-100 python", rgb, vec![], "test (n=2)"),
        ("CIFAR-10 binary", rgb, vec![], "test (n=2)"),
        ("IDX", gray, vec!["--split", "train"], "train (n=2)"),
        ("IDX gzipped", gray, vec![], "test (n=2)"),
        ("JSON splits", gray, vec!["--split", "val"], "val (n=2)"),
        ("ImageFolder + JSON splits, --format imagefolder", gray, vec!["--format", "imagefolder"], "test (n=2)"),
        ("ImageFolder + JSON splits, --format json-splits", gray, vec!["--format", "json-splits"], "test (n=2)"),
    ];
    let dirs = [
        "if_train_test",
        "if_train_test",
        "if_train_val_test",
        "cifar100_py",
        "cifar10_bin",
        "idx",
        "idx_gz",
        "json",
        "both",
        "both",
    ];
    let mut failures = Vec::new();
    for ((what, model, extra, expect), dir) in cases.iter().zip(dirs) {
        match evaluate(model, &r(dir), extra, &out) {
            Ok(line) if line.contains(expect) => {}
            Ok(line) => failures.push(format!("{what}: expected '{expect}' in: {line}")),
            Err(e) => failures.push(format!("{what}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Without --format the double folder is refused, naming both layouts.
    let e = evaluate(gray, &r("both"), &[], &out).unwrap_err();
    assert!(e.contains("exit 2") && e.contains("ambiguous") && e.contains("--format imagefolder"), "{e}");
}

/// A `--limit` beyond the split is clamped with one warning line, not refused.
#[test]
fn a_limit_beyond_the_split_is_clamped_with_one_warning() {
    let d = tempfile::tempdir().unwrap();
    image_folder(&d.path().join("data"), &["train", "test"]);
    let mut c = roli();
    c.args(["eval", "--model", "lenet5_advertorch", "--attack", "none", "--limit", "50", "--log", "warn", "--data"])
        .arg(d.path().join("data"))
        .arg("--out")
        .arg(d.path().join("out"));
    let (code, stdout, stderr) = run(c);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("WARN")
            && lines[0].contains("--limit 50 is larger than")
            && lines[0].contains("using all 20")
    );
    assert!(stdout.contains("(n=20)"), "{stdout}");
}
