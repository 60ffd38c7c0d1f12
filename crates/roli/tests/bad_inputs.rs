//! Issue 14: no panic reaches a user. Each case runs the `roli` binary on one bad input (CLI flags,
//! config keys, data folders, model/data pairs, resume states) and asserts exit code 2, no panic,
//! and exactly one stderr line: `error: …` naming the problem. Logging runs at `--log warn`, so
//! progress lines are off and any warning would count as an extra line. The data are tiny
//! folders written here; models are the committed zoo's LeNets and random presets.
//!
//! `ROLI_RELIABILITY_TABLE=FILE` writes the cases and their real error lines as the markdown
//! rows of `docs/reliability.md`.
mod common;

use common::{roli, run};
use std::path::{Path, PathBuf};

fn png_gray(p: &Path, size: u32, v: u8) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    image::GrayImage::from_pixel(size, size, image::Luma([v])).save(p).unwrap();
}

fn png_rgb(p: &Path, size: u32, v: u8) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(size, size, image::Rgb([v, 0, 255 - v])).save(p).unwrap();
}

/// `<root>/<split>/<class>/<i>.png` for every split and class, gray or RGB.
fn image_folder(root: &Path, splits: &[&str], classes: &[&str], size: u32, rgb: bool) {
    for s in splits {
        for (k, c) in classes.iter().enumerate() {
            for i in 0..2u8 {
                let p = root.join(s).join(c).join(format!("{i}.png"));
                let v = 40 * k as u8 + 10 * i;
                if rgb {
                    png_rgb(&p, size, v)
                } else {
                    png_gray(&p, size, v)
                }
            }
        }
    }
}

fn idx_folder(root: &Path, labels: &[u8]) {
    std::fs::create_dir_all(root).unwrap();
    let n = labels.len();
    let px: Vec<u8> = (0..n * 28 * 28).map(|i| (i % 251) as u8).collect();
    for prefix in ["train", "t10k"] {
        let im = roli::data::idx::encode_idx(&[n, 28, 28], &px);
        std::fs::write(root.join(format!("{prefix}-images-idx3-ubyte")), im).unwrap();
        let lb = roli::data::idx::encode_idx(&[n], labels);
        std::fs::write(root.join(format!("{prefix}-labels-idx1-ubyte")), lb).unwrap();
    }
}

/// The data folders of the cases, written once.
struct Fixtures {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Fixtures {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let r = |s: &str| root.join(s);
        // The user's report: torchvision ImageFolder with train/ and test/ (RGB).
        image_folder(&r("rgb"), &["train", "test"], &["a", "b"], 8, true);
        // 3 gray classes at 8×8: a class-count mismatch for the 10-class LeNets, a size mismatch
        // for a 28×28 model that does not resize.
        image_folder(&r("gray3"), &["train", "test"], &["a", "b", "c"], 8, false);
        // Class b has training images but an empty test folder.
        image_folder(&r("empty_class"), &["train"], &["a", "b"], 8, false);
        image_folder(&r("empty_class"), &["test"], &["a"], 8, false);
        std::fs::create_dir_all(r("empty_class/test/b")).unwrap();
        image_folder(&r("corrupt"), &["train", "test"], &["a"], 8, false);
        std::fs::write(r("corrupt/test/a/9.png"), b"\x89PNG but not really").unwrap();
        image_folder(&r("dir_image"), &["train", "test"], &["a"], 8, false);
        std::fs::create_dir_all(r("dir_image/test/a/5.png")).unwrap();
        // Labels 0..=10: 11 classes, one more than the LeNets predict.
        idx_folder(&r("idx11"), &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        idx_folder(&r("idx10"), &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        std::fs::create_dir_all(r("idx_magic")).unwrap();
        std::fs::write(r("idx_magic/t10k-images-idx3-ubyte"), b"GIF89a not idx").unwrap();
        idx_folder(&r("idx_cut"), &[0, 1]);
        let full = std::fs::read(r("idx_cut/t10k-images-idx3-ubyte")).unwrap();
        std::fs::write(r("idx_cut/t10k-images-idx3-ubyte"), &full[..100]).unwrap();
        // A CIFAR-100 python `test` pickle cut in its first key.
        std::fs::create_dir_all(r("cifar100_cut")).unwrap();
        std::fs::write(r("cifar100_cut/test"), b"\x80\x02}(U\x0bfine_lab").unwrap();
        std::fs::create_dir_all(r("cifar_cut")).unwrap();
        std::fs::write(r("cifar_cut/test_batch.bin"), vec![0u8; 3073 + 7]).unwrap();
        image_folder(&r("json_dup/images"), &["x"], &["a"], 8, false);
        let dup = r#"{"x/a/0.png": 0, "x/a/1.png": 1, "x/a/0.png": 1}"#;
        std::fs::write(r("json_dup/train.json"), dup).unwrap();
        image_folder(&r("json_missing/images"), &["x"], &["a"], 8, false);
        std::fs::write(r("json_missing/train.json"), r#"{"x/a/0.png": 0, "x/a/1.png": 1}"#).unwrap();
        // ImageFolder and JSON splits at once: ambiguous without --format.
        image_folder(&r("ambiguous"), &["train", "test"], &["a", "b"], 8, false);
        let both = r#"{"train/a/0.png": 0, "train/b/0.png": 1}"#;
        for s in ["train", "val", "test"] {
            std::fs::write(r(&format!("ambiguous/{s}.json")), both).unwrap();
        }
        // Models that cannot load: not TorchScript, a truncated checkpoint, a broken sidecar.
        std::fs::write(r("junk.pt"), "not a zip archive").unwrap();
        let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../zoo/lenet5-mnist-at");
        std::fs::create_dir_all(r("cut_model")).unwrap();
        std::fs::copy(zoo.join("model.json"), r("cut_model/model.json")).unwrap();
        let weights = std::fs::read(zoo.join("model.safetensors")).unwrap();
        std::fs::write(r("cut_model/model.safetensors"), &weights[..1000]).unwrap();
        std::fs::create_dir_all(r("bad_sidecar")).unwrap();
        std::fs::write(r("bad_sidecar/model.json"), "{").unwrap();
        Fixtures { _dir: dir, root }
    }

    fn path(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }

    /// A config file for `roli run`: the data folder and backbone, extra TOML lines, and
    /// `(from, to)` rewrites of the base text.
    fn config(&self, name: &str, data: &str, backbone: &str, extra: &str, rewrite: (&str, &str)) -> String {
        let text = format!(
            "[data]\nname = \"{data}\"\nbatch_size = 4\ntrain_limit = 2\ntest_limit = 2\n\
             [model]\nbackbone = \"{backbone}\"\n{extra}\n"
        );
        let p = self.root.join(format!("{name}.toml"));
        std::fs::write(&p, text.replacen(rewrite.0, rewrite.1, 1)).unwrap();
        p.display().to_string()
    }
}

/// One bad input: a label for the table, the arguments, and what the error line must say.
struct Case {
    what: &'static str,
    args: Vec<String>,
    expect: &'static str,
}

/// Runs `args` at `--log warn`: (exit code, non-empty stderr lines, stderr).
fn roli_at_warn(args: &[String], out: &Path) -> (i32, Vec<String>, String) {
    let mut c = roli();
    c.args(args).args(["--log", "warn"]).env("NO_COLOR", "1").current_dir(out);
    let (code, _, err) = run(c);
    let lines = err.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect();
    (code, lines, err)
}

fn eval(model: &str, data: &str, rest: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["eval", "--model", model, "--data", data, "--out", "out"].map(String::from).to_vec();
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

fn cases(f: &Fixtures) -> Vec<Case> {
    let p = |s: &str| f.path(s);
    let lenet = "lenet5_advertorch"; // a random-weight preset: needs no cache
    let zoo = "lenet5-mnist-at"; // the committed zoo LeNet: 10 classes
    let e = |what, model: &str, data: &str, rest: &[&str], expect| Case { what, args: eval(model, data, rest), expect };
    let mut v = vec![
        // The four user reports.
        e(
            "1-channel model on 3-channel data (was a panic)",
            lenet,
            &p("rgb"),
            &["--eps", "0.1"],
            "takes 1-channel images but the data has 3-channel",
        ),
        e(
            "--eps nan (was accepted: 10 % robust accuracy)",
            zoo,
            "mnist",
            &["--eps", "nan"],
            "--eps = NaN is not a finite number",
        ),
        // Radii and steps.
        e("--eps inf", zoo, "mnist", &["--eps", "inf"], "--eps = inf is not a finite number"),
        e("--eps -0.1", zoo, "mnist", &["--eps", "-0.1"], "--eps = -0.1 is negative"),
        e("--eps 8 under L∞ (0–255 units)", zoo, "mnist", &["--eps", "8"], "or pass --allow-large-eps"),
        e("--eps-list with a NaN", zoo, "mnist", &["--eps-list", "0.1,nan"], "--eps-list = NaN"),
        e(
            "--step-size 0",
            zoo,
            "mnist",
            &["--eps", "0.1", "--step-size", "0"],
            "--step-size = 0 makes PGD stand still",
        ),
        e("--step-size nan", zoo, "mnist", &["--eps", "0.1", "--step-size", "nan"], "--step-size = NaN"),
        e(
            "--step-size -0.01",
            zoo,
            "mnist",
            &["--eps", "0.1", "--step-size", "-0.01"],
            "--step-size = -0.01 is negative",
        ),
        e("--attack pgd without --eps", zoo, "mnist", &[], "--attack pgd needs --eps"),
        e("--eps abc (not a number)", zoo, "mnist", &["--eps", "abc"], "invalid value 'abc' for '--eps <EPS>'"),
        e("--restarts 0", zoo, "mnist", &["--eps", "0.1", "--restarts", "0"], "--restarts must be ≥ 1"),
        e("--batch-size 0", zoo, "mnist", &["--eps", "0.1", "--batch-size", "0"], "--batch-size must be ≥ 1"),
        e("--limit 0", zoo, "mnist", &["--eps", "0.1", "--limit", "0"], "--limit 0 leaves no examples"),
        e("unknown attack name", zoo, "mnist", &["--eps", "0.1", "--attack", "pgd9"], "--attack pgd9"),
        e("unknown norm", zoo, "mnist", &["--eps", "0.1", "--norm", "l3"], "--norm l3: use linf or l2"),
        e("unknown model", "lenet7", "mnist", &["--eps", "0.1"], "unknown model 'lenet7'"),
        e(
            "a .pt file that is not TorchScript",
            &p("junk.pt"),
            &p("gray3"),
            &["--attack", "none"],
            "cannot load as TorchScript",
        ),
        e("truncated checkpoint", &p("cut_model"), &p("idx10"), &["--attack", "none"], "is corrupt or truncated"),
        e("broken model.json", &p("bad_sidecar"), &p("gray3"), &["--attack", "none"], "bad_sidecar/model.json: EOF"),
        // Model vs data.
        e(
            "10-class model on 3-class data",
            zoo,
            &p("gray3"),
            &["--eps", "0.1"],
            "predicts 10 classes but the data has 3 classes",
        ),
        e(
            "labels up to 10 for a 10-class model",
            zoo,
            &p("idx11"),
            &["--eps", "0.1"],
            "predicts 10 classes but the data has 11 classes",
        ),
        e(
            "3-channel data through a zoo model",
            zoo,
            &p("rgb"),
            &["--eps", "0.1"],
            "takes 1-channel images but the data has 3-channel",
        ),
        // Data folders.
        e("empty class folder", lenet, &p("empty_class"), &["--attack", "none"], "test/b: class folder has no images"),
        e("corrupt image file", lenet, &p("corrupt"), &["--attack", "none"], "test/a/9.png: cannot decode image"),
        e(
            "a directory named like an image",
            lenet,
            &p("dir_image"),
            &["--attack", "none"],
            "test/a/5.png: cannot decode image",
        ),
        e(
            "IDX file without the IDX magic",
            lenet,
            &p("idx_magic"),
            &["--attack", "none"],
            "t10k-images-idx3-ubyte lacks the IDX magic",
        ),
        e("truncated IDX file", lenet, &p("idx_cut"), &["--attack", "none"], "t10k-images-idx3-ubyte: truncated"),
        e(
            "CIFAR binary of a partial record",
            lenet,
            &p("cifar_cut"),
            &["--attack", "none"],
            "test_batch.bin has 3080 bytes, not a multiple of 3073",
        ),
        e(
            "CIFAR-100 python pickle cut short",
            lenet,
            &p("cifar100_cut"),
            &["--attack", "none"],
            "cifar100_cut/test: truncated pickle",
        ),
        e(
            "JSON split listing an image twice",
            lenet,
            &p("json_dup"),
            &["--attack", "none", "--split", "train"],
            "image 'x/a/0.png' is listed twice",
        ),
        e("JSON splits without test.json", lenet, &p("json_missing"), &["--attack", "none"], "test.json: is missing"),
        e(
            "folder that is ImageFolder and JSON splits",
            lenet,
            &p("ambiguous"),
            &["--attack", "none"],
            "--format imagefolder or --format json-splits",
        ),
        e(
            "--format that does not match the folder",
            lenet,
            &p("rgb"),
            &["--attack", "none", "--format", "cifar10"],
            "is not in cifar10 format",
        ),
        e(
            "--format on a built-in dataset",
            lenet,
            "mnist",
            &["--attack", "none", "--format", "idx"],
            "'mnist' is a built-in dataset; drop --format",
        ),
        e("unknown --format", lenet, &p("rgb"), &["--attack", "none", "--format", "zip"], "unknown data format 'zip'"),
        e("--data path that does not exist", lenet, &p("nowhere"), &["--attack", "none"], "unknown dataset"),
        e(
            "--split val of a test-only set",
            lenet,
            "cifar10-samples",
            &["--attack", "none", "--split", "val"],
            "has no 'val' split",
        ),
    ];
    // The same values through a config file (`roli run`).
    let run =
        |what, cfg: String, expect| Case { what, args: vec!["run".into(), cfg, "--out".into(), "out".into()], expect };
    let g = p("gray3");
    let c = |name, data: &str, extra, rewrite| f.config(name, data, lenet, extra, rewrite);
    let none = ("", "");
    v.extend([
        run("config threat.eps = -1", c("eps_neg", &g, "[threat]\neps = -1.0", none), "threat.eps = -1 is negative"),
        run(
            "config threat.eps = nan",
            c("eps_nan", &g, "[threat]\neps = nan", none),
            "threat.eps = NaN is not a finite number",
        ),
        run("config threat.eps = 8 (L∞)", c("eps_big", &g, "[threat]\neps = 8.0", none), "threat.eps = 8 exceeds 1"),
        run(
            "config threat.step_size = 0",
            c("step0", &g, "[threat]\nstep_size = 0.0", none),
            "threat.step_size = 0 makes PGD stand still",
        ),
        run(
            "config threat.eval_step_size = inf",
            c("stepinf", &g, "[threat]\neval_step_size = inf", none),
            "threat.eval_step_size = inf",
        ),
        run(
            "config eval.eps_curve with a negative radius",
            c("curve", &g, "[eval]\neps_curve = [0.1, -0.2]", none),
            "eval.eps_curve = -0.2 is negative",
        ),
        run(
            "config data.test_limit = 0",
            c("limit0", &g, "", ("test_limit = 2", "test_limit = 0")),
            "data.test_limit 0 leaves no examples",
        ),
        run("config unknown key", c("key", &g, "[threat]\nepsilon = 0.1", none), "line 9: unknown field `epsilon`"),
        run(
            "config unknown AutoAttack version",
            c("aa", &g, "[eval]\nautoattack = \"max\"", none),
            "unknown variant `max`",
        ),
        run(
            "config 1-channel backbone on 3-channel data",
            c("chan", &p("rgb"), "", none),
            "takes 1-channel images but the data has 3-channel",
        ),
        run("config 28×28 backbone on 8×8 data, no model.resize", c("size", &g, "", none), "model.resize = [28, 28]"),
        run(
            "config data.format that does not match",
            c("fmt", &g, "", ("name = ", "format = \"idx\"\nname = ")),
            "is not in idx format",
        ),
        run(
            "config train_percent = 100 (empty val)",
            c("val0", &g, "", ("batch_size", "train_percent = 100\nbatch_size")),
            "the val split of",
        ),
    ]);
    v
}

#[test]
fn every_bad_input_is_one_error_line_with_exit_2() {
    let f = Fixtures::new();
    let all = cases(&f);
    let work = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut rows = Vec::new();
    // Six at a time: each case is its own process; most exit before loading anything big.
    for chunk in all.chunks(6) {
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let dir = work.path().join(format!("{}-{i}", rows.len()));
                    std::fs::create_dir_all(&dir).unwrap();
                    s.spawn(move || roli_at_warn(&c.args, &dir))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (c, (code, lines, err)) in chunk.iter().zip(results) {
            let one = lines.len() == 1 && lines[0].starts_with("error: ");
            if code != 2 || !one || err.contains("panicked") || !lines.iter().any(|l| l.contains(c.expect)) {
                failures.push(format!(
                    "{}: exit {code}, expected one `error:` line with '{}', got:\n{err}",
                    c.what, c.expect
                ));
            }
            let line = lines.first().cloned().unwrap_or_default();
            rows.push(format!(
                "| {} | `` {} `` |",
                c.what,
                line.replace(&f.root.display().to_string(), "…").replace('|', "\\|")
            ));
        }
    }
    if let Some(table) = std::env::var_os("ROLI_RELIABILITY_TABLE") {
        std::fs::write(table, rows.join("\n") + "\n").unwrap();
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), all.len(), failures.join("\n"));
}

/// `--resume` on a state another model wrote: refused, naming both. The first run leaves its
/// state behind because its `results.json` cannot be written (a directory is in the way).
#[test]
fn resume_refuses_a_state_from_another_model() {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("out/results.json")).unwrap();
    let data = work.path().join("idx10");
    idx_folder(&data, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let data = data.display().to_string();
    let args = |model: &str, resume: bool| {
        let mut a = eval(model, &data, &["--limit", "4", "--eps", "0.1", "--steps", "1"]);
        if resume {
            a.push("--resume".into());
        }
        a
    };
    let (code, lines, err) = roli_at_warn(&args("lenet5-mnist-at", false), work.path());
    assert_eq!((code, lines.len()), (2, 1), "{err}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains("results.json"), "{err}");
    assert!(work.path().join("out/state.json").is_file(), "the interrupted run keeps its state");
    let (code, lines, err) = roli_at_warn(&args("lenet5-mnist-std", true), work.path());
    assert_eq!((code, lines.len()), (2, 1), "{err}");
    assert!(
        lines[0].starts_with("error: ")
            && lines[0].contains("state.json: was written for model roli checkpoint")
            && lines[0].contains("lenet5-mnist-at")
            && lines[0].contains("not model roli checkpoint")
            && lines[0].contains("lenet5-mnist-std")
            && lines[0].contains("drop --resume"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
}
