//! Where the tensors live: `device = "auto" | "cpu" | "cuda" | "cuda:N"` in a config and
//! `--device` on every command. Models are always *built* on the CPU (so a random head or PEFT
//! initialisation is the same whatever the device) and then moved; batches stream to the device
//! one at a time; checkpoints are written from CPU copies and load onto any device, so a run
//! started on one device resumes on another.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use tch::Device;

/// The device a command asks for, before it is checked against the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA device 0 when one is visible, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// `cuda` (device 0) or `cuda:N`.
    Cuda(usize),
}

impl DeviceChoice {
    /// The device on this machine, or a one-line error naming the fix.
    pub fn resolve(self) -> anyhow::Result<Device> {
        resolve_with(self, cuda_count())
    }
}

/// CUDA devices visible to libtorch (0 on a machine without a GPU or without a CUDA build).
pub fn cuda_count() -> usize {
    if tch::Cuda::is_available() {
        tch::Cuda::device_count().max(0) as usize
    } else {
        0
    }
}

/// [`DeviceChoice::resolve`] against `visible` CUDA devices (pure, for tests).
pub fn resolve_with(choice: DeviceChoice, visible: usize) -> anyhow::Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto if visible > 0 => Ok(Device::Cuda(0)),
        DeviceChoice::Auto => Ok(Device::Cpu),
        DeviceChoice::Cuda(_) if visible == 0 => {
            anyhow::bail!("--device {choice}: no CUDA device visible; use --device cpu")
        }
        DeviceChoice::Cuda(n) if n >= visible => anyhow::bail!(
            "--device {choice}: only {visible} CUDA device(s) visible (cuda:0 … cuda:{}); pick one of them",
            visible - 1
        ),
        DeviceChoice::Cuda(n) => Ok(Device::Cuda(n)),
    }
}

/// A short name for logs and result files: `cpu`, `cuda:0`.
pub fn name(d: Device) -> String {
    match d {
        Device::Cuda(n) => format!("cuda:{n}"),
        Device::Cpu => "cpu".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Waits for the device's queued work (timing; a no-op on the CPU).
pub fn synchronize(d: Device) {
    if let Device::Cuda(n) = d {
        tch::Cuda::synchronize(n as i64);
    }
}

/// Where and how a command computes: `--device`, `--precision`, `--attention`, flattened into
/// `roli eval`, `pretrain`, `bench` and `device parity` (config commands use `device`,
/// `train.precision`, `eval.precision` and `model.attention` instead).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ComputeArgs {
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// fp32, tf32 or bf16 (bf16 autocast). `roli eval`: the attacks (fp32 is the field's norm for
    /// AutoAttack); `roli pretrain`: training (its test attacks stay fp32).
    #[arg(long, default_value = "fp32")]
    pub precision: crate::precision::Precision,
    /// Attention of ViT/Swin models: explicit (softmax(q·kᵀ)·v) or fused (scaled_dot_product_attention).
    #[arg(long, default_value = "explicit")]
    pub attention: roli_models::AttentionImpl,
}

/// What this machine offers (`roli device info`).
#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    pub cuda_available: bool,
    pub cuda_devices: usize,
    pub cudnn_available: bool,
    /// CPU threads libtorch uses for intra-op parallelism.
    pub threads: i32,
    /// What `--device auto` picks here.
    pub auto: String,
    /// CUDA runtime and cuDNN versions libtorch was built with (None without CUDA).
    pub cuda: Option<String>,
    /// Each visible CUDA device's name, in index order.
    pub gpu_names: Vec<String>,
    /// Global fp32 matmul precision now (`Highest` = strict fp32).
    pub matmul_precision: String,
}

/// Reads [`DeviceInfo`] from libtorch.
pub fn info() -> DeviceInfo {
    let n = cuda_count();
    DeviceInfo {
        cuda_available: n > 0,
        cuda_devices: n,
        cudnn_available: n > 0 && tch::Cuda::cudnn_is_available(),
        threads: tch::get_num_threads(),
        auto: name(resolve_with(DeviceChoice::Auto, n).unwrap_or(Device::Cpu)),
        cuda: roli_torch_ext::cuda_versions().ok().flatten().map(|v| v.to_string()),
        gpu_names: (0..n)
            .map(|i| roli_torch_ext::cuda_device_name(i).ok().flatten().unwrap_or_else(|| "?".into()))
            .collect(),
        matmul_precision: roli_torch_ext::float32_matmul_precision()
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|e| format!("unknown ({e})")),
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(0) => f.write_str("cuda"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("unknown device '{s}'; use auto, cpu, cuda or cuda:N");
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(DeviceChoice::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl Serialize for DeviceChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_print_back() {
        for s in ["auto", "cpu", "cuda", "cuda:1"] {
            assert_eq!(s.parse::<DeviceChoice>().unwrap().to_string(), s);
        }
        assert_eq!("CUDA:0".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(0));
        let e = "tpu".parse::<DeviceChoice>().unwrap_err();
        assert!(e.contains("'tpu'") && e.contains("cuda:N"), "{e}");
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn resolution_follows_the_visible_devices() {
        assert_eq!(resolve_with(DeviceChoice::Auto, 0).unwrap(), Device::Cpu);
        assert_eq!(resolve_with(DeviceChoice::Auto, 2).unwrap(), Device::Cuda(0));
        assert_eq!(resolve_with(DeviceChoice::Cpu, 2).unwrap(), Device::Cpu);
        assert_eq!(resolve_with(DeviceChoice::Cuda(1), 2).unwrap(), Device::Cuda(1));
        let e = resolve_with(DeviceChoice::Cuda(0), 0).unwrap_err().to_string();
        assert_eq!(e, "--device cuda: no CUDA device visible; use --device cpu");
        let e = resolve_with(DeviceChoice::Cuda(2), 2).unwrap_err().to_string();
        assert!(e.contains("only 2 CUDA device(s)") && e.contains("cuda:1"), "{e}");
    }

    #[test]
    fn config_strings_round_trip() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct T {
            device: DeviceChoice,
        }
        let t: T = toml::from_str("device = \"cuda:3\"").unwrap();
        assert_eq!(t.device, DeviceChoice::Cuda(3));
        assert_eq!(toml::to_string(&t).unwrap().trim(), "device = \"cuda:3\"");
        let e = toml::from_str::<T>("device = \"mps\"").unwrap_err().to_string();
        assert!(e.contains("unknown device 'mps'"), "{e}");
    }
}
