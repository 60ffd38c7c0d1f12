//! Shared by the conformance example and the integration tests: raw MNIST IDX reading and advertorch's
//! LeNet-5 written directly in tch (this crate must not depend on roli-data or roli-models).
#![allow(dead_code, reason = "shared by the example and the tests; each uses only part of it")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// `$ROLI_CACHE`, else `~/.cache/roli`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("ROLI_CACHE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache").join("roli"),
    }
}

fn read_idx(path: &Path) -> std::io::Result<(Vec<usize>, Vec<u8>)> {
    let data = std::fs::read(path)?;
    if data.len() < 4 {
        return Err(std::io::Error::other(format!("{}: not an IDX file", path.display())));
    }
    let ndim = data[3] as usize;
    let dims: Vec<usize> =
        (0..ndim).map(|i| u32::from_be_bytes(data[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let off = 4 + 4 * ndim;
    Ok((dims, data[off..].to_vec()))
}

/// The first `n` MNIST test images `[n, 1, 28, 28]` in [0, 1] and labels `[n]`, or None if the cache
/// files are absent.
pub fn mnist_test(n: usize) -> Option<(Tensor, Tensor)> {
    let dir = cache_dir().join("mnist");
    let (dims, px) = read_idx(&dir.join("t10k-images-idx3-ubyte")).ok()?;
    let (_, lb) = read_idx(&dir.join("t10k-labels-idx1-ubyte")).ok()?;
    let n = n.min(dims[0]);
    let x = Tensor::from_slice(&px[..n * 784]).to_kind(Kind::Float).view([n as i64, 1, 28, 28]) / 255.0;
    let y = Tensor::from_slice(&lb[..n]).to_kind(Kind::Int64);
    Some((x, y))
}

/// advertorch 0.2.3's MNIST LeNet-5 (`advtrained` or `clntrained`), input [0, 1], no normalisation.
pub struct LeNet5 {
    p: HashMap<String, Tensor>,
}

impl LeNet5 {
    /// Loads `advertorch/mnist_lenet5_<which>.safetensors` from the cache, or None if absent.
    pub fn load(which: &str) -> Option<Self> {
        let path = cache_dir().join("advertorch").join(format!("mnist_lenet5_{which}.safetensors"));
        if !path.exists() {
            return None;
        }
        let p: HashMap<String, Tensor> = Tensor::read_safetensors(&path).ok()?.into_iter().collect();
        for k in [
            "conv1.weight",
            "conv1.bias",
            "conv2.weight",
            "conv2.bias",
            "linear1.weight",
            "linear1.bias",
            "linear2.weight",
            "linear2.bias",
        ] {
            if !p.contains_key(k) {
                return None;
            }
        }
        Some(Self { p })
    }

    /// Logits `[N, 10]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let p = |k: &str| &self.p[k];
        let out = x.conv2d(p("conv1.weight"), Some(p("conv1.bias")), [1, 1], [1, 1], [1, 1], 1).relu().max_pool2d(
            [2, 2],
            [2, 2],
            [0, 0],
            [1, 1],
            false,
        );
        let out = out.conv2d(p("conv2.weight"), Some(p("conv2.bias")), [1, 1], [1, 1], [1, 1], 1).relu().max_pool2d(
            [2, 2],
            [2, 2],
            [0, 0],
            [1, 1],
            false,
        );
        let out = out.reshape([out.size()[0], -1]);
        let out = out.linear(p("linear1.weight"), Some(p("linear1.bias"))).relu();
        out.linear(p("linear2.weight"), Some(p("linear2.bias")))
    }
}
