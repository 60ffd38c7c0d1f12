//! Loaders on the real files fetched by `roli data fetch all`, and the CIFAR python format as
//! Python itself writes it. Each test skips (with a note) when its input is not available.
use roli_data::cifar::{self, CifarKind};
use roli_data::fetch::{cached_manifest, find_source};
use roli_data::{load, resolve, Dataset, LoadOptions, Split};
use std::process::Command;

fn cached(name: &str) -> bool {
    let ok = cached_manifest(find_source(name).unwrap()).is_some();
    if !ok {
        eprintln!("note: '{name}' not cached; run `roli data fetch {name}` — test skipped");
    }
    ok
}

fn counts(labels: &[i64], k: usize) -> Vec<usize> {
    let mut c = vec![0; k];
    for &l in labels {
        c[l as usize] += 1;
    }
    c
}

#[test]
fn mnist_real_sizes_and_test_label_counts() {
    if !cached("mnist") {
        return;
    }
    let spec = resolve("mnist").unwrap();
    let all = LoadOptions { train_percent: 100, ..Default::default() };
    assert_eq!(load(&spec, Split::Train, &all).unwrap().len(), 60000);
    let te = load(&spec, Split::Test, &all).unwrap();
    assert_eq!(te.len(), 10000);
    // The official MNIST test-set class counts.
    assert_eq!(counts(&te.labels(), 10), vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    assert_eq!(te.labels()[..5], [7, 2, 1, 0, 4]);
    let v = load(&spec, Split::Val, &LoadOptions::default()).unwrap();
    assert_eq!(v.len(), 6000);
}

#[test]
fn fashion_mnist_real_balanced_test() {
    if !cached("fashion-mnist") {
        return;
    }
    let te = load(&resolve("fashion-mnist").unwrap(), Split::Test, &LoadOptions::default()).unwrap();
    assert_eq!(te.len(), 10000);
    assert_eq!(counts(&te.labels(), 10), vec![1000; 10]);
    let (x, y) = te.batch(&[0, 1], None).unwrap();
    assert_eq!(x.size(), vec![2, 1, 28, 28]);
    assert_eq!(Vec::<i64>::try_from(&y).unwrap(), vec![9, 2]); // ankle boot, pullover
    assert_eq!(te.class_names()[9], "Ankle boot");
}

#[test]
fn foolbox_cifar_samples_labels_follow_file_names_and_test_order() {
    if !cached("foolbox") {
        return;
    }
    let c10 = load(&resolve("cifar10-samples").unwrap(), Split::Test, &LoadOptions::default()).unwrap();
    assert_eq!(c10.len(), 20);
    // First ten labels of the official CIFAR-10 test set.
    assert_eq!(c10.labels()[..10], [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);
    let dir = roli_data::fetch::source_dir(find_source("foolbox").unwrap());
    for (i, l) in c10.labels().iter().enumerate() {
        assert!(dir.join(format!("cifar10_{i:02}_{l}.png")).exists(), "label {l} of image {i} not in its file name");
    }
    let (x, _) = c10.batch(&[0], None).unwrap();
    assert_eq!(x.size(), vec![1, 3, 32, 32]);
    let c100 = load(&resolve("cifar100-samples").unwrap(), Split::Test, &LoadOptions::default()).unwrap();
    assert_eq!(c100.num_classes(), 100);
    assert_eq!(c100.labels()[0], 49);
    let e =
        load(&resolve("cifar100-samples").unwrap(), Split::Train, &LoadOptions::default()).err().unwrap().to_string();
    assert!(e.contains("no 'train' split"), "{e}");
}

/// Writes a CIFAR-10 python-format folder with the project's Python (numpy + pickle) at the
/// given protocol — the way the official files were made — and reads it back.
#[test]
fn cifar_python_format_written_by_python() {
    let py = roli_data::fetch::project_python();
    for protocol in [2, 4] {
        let d = tempfile::tempdir().unwrap();
        let script = format!(
            r#"
import pickle, numpy as np, sys, os
rng = np.random.default_rng(0)
out = sys.argv[1]
for name, n in [("data_batch_%d" % i, 3) for i in range(1, 6)] + [("test_batch", 4)]:
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    with open(os.path.join(out, name), "wb") as f:
        pickle.dump({{b"batch_label": b"x", b"labels": labels, b"data": data, b"filenames": [b"a"] * n}}, f, protocol={protocol})
    with open(os.path.join(out, name + ".expect"), "w") as f:
        f.write(" ".join(map(str, labels)) + "\n" + " ".join(map(str, data[:, :5].ravel().tolist())))
"#
        );
        match Command::new(&py).arg("-c").arg(&script).arg(d.path()).status() {
            Ok(s) if s.success() => {}
            _ => {
                eprintln!("note: {} with numpy not available — test skipped", py.display());
                return;
            }
        }
        assert_eq!(
            roli_data::layout::detect(d.path(), None).unwrap(),
            roli_data::Format::Cifar10,
            "protocol {protocol}"
        );
        let (x, y) = cifar::load_official(d.path(), CifarKind::Cifar10, false).unwrap();
        let expect = std::fs::read_to_string(d.path().join("test_batch.expect")).unwrap();
        let mut lines = expect.lines();
        let labels: Vec<i64> = lines.next().unwrap().split(' ').map(|v| v.parse().unwrap()).collect();
        let first: Vec<f64> = lines.next().unwrap().split(' ').map(|v| v.parse::<f64>().unwrap() / 255.0).collect();
        assert_eq!(Vec::<i64>::try_from(&y).unwrap(), labels, "protocol {protocol}");
        let got: Vec<f64> = Vec::<f32>::try_from(x.view([4, 3072]).narrow(1, 0, 5).reshape([-1]))
            .unwrap()
            .into_iter()
            .map(|v| v as f64)
            .collect();
        for (a, b) in got.iter().zip(&first) {
            assert!((a - b).abs() < 1e-6, "protocol {protocol}: pixel {a} vs {b}");
        }
        let tr = cifar::load_split(d.path(), CifarKind::Cifar10, Split::Train, 90).unwrap();
        assert_eq!(tr.len(), 13); // 15 · 0.9
    }
}
