//! The real advertorch robust LeNet-5: parity with PyTorch and MNIST test accuracy.
//! Needs the data cache (`roli data fetch all`); skipped with a note when it is absent.

use std::path::PathBuf;

use roli_models::{descriptor, load_backbone, Classifier, ClassifierOptions, HeadPolicy, LoadOptions};
use tch::{nn, Device, Kind};

use crate::common::*;

fn cached() -> Option<(PathBuf, PathBuf)> {
    let c = cache_dir();
    let ckpt = c.join("advertorch/mnist_lenet5_advtrained.safetensors");
    let images = c.join("mnist/t10k-images-idx3-ubyte");
    if ckpt.exists() && images.exists() {
        Some((ckpt, c))
    } else {
        eprintln!("note: {} or {} absent; skipping (run `roli data fetch all`)", ckpt.display(), images.display());
        None
    }
}

fn robust_lenet(vs: &nn::VarStore, ckpt: &std::path::Path) -> Classifier {
    let m =
        Classifier::new(&vs.root(), &descriptor("lenet5_advertorch").unwrap(), &ClassifierOptions::new(10)).unwrap();
    let r = load_backbone(vs, &m, ckpt, &LoadOptions { head: HeadPolicy::Load, ..Default::default() }).unwrap();
    assert!(r.is_clean() && r.head_loaded);
    println!("advertorch robust LeNet-5 backbone fingerprint {}", r.backbone_fingerprint);
    m
}

#[test]
fn advertorch_lenet_matches_pytorch() {
    let Some((ckpt, cache)) = cached() else {
        return;
    };
    let Some(dir) = generate("lenet", &[cache.to_str().unwrap()]) else {
        return;
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let m = robust_lenet(&vs, &ckpt);
    check_parity("advertorch LeNet-5 (64 MNIST test images)", &m, &read_io(&dir.join("lenet_adv_io.safetensors")));
}

#[test]
fn advertorch_lenet_clean_accuracy_on_mnist_test() {
    let Some((ckpt, cache)) = cached() else {
        return;
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let m = robust_lenet(&vs, &ckpt);
    let x = read_idx(&cache.join("mnist/t10k-images-idx3-ubyte")).to_kind(Kind::Float).unsqueeze(1) / 255.0;
    let y = read_idx(&cache.join("mnist/t10k-labels-idx1-ubyte")).to_kind(Kind::Int64);
    assert_eq!(x.size(), vec![10000, 1, 28, 28]);
    let correct: i64 = tch::no_grad(|| {
        (0..10)
            .map(|i| {
                let xb = x.narrow(0, i * 1000, 1000);
                let yb = y.narrow(0, i * 1000, 1000);
                i64::try_from(m.forward_t(&xb, false).argmax(-1, false).eq_tensor(&yb).sum(Kind::Int64)).unwrap()
            })
            .sum()
    });
    let acc = correct as f64 / 10000.0;
    println!("advertorch robust LeNet-5 clean accuracy on MNIST test: {:.2}% ({correct}/10000)", acc * 100.0);
    assert!((0.98..=0.995).contains(&acc), "accuracy {acc}");
}
