//! Bring your own model: a TorchScript file (`torch.jit.script(m).save(...)` or `torch.jit.trace`)
//! used as a feature backbone (features `[B, F]`, head added by [`crate::Classifier`]) or as a
//! whole classifier (logits `[B, K]`, no head). The module receives the classifier's
//! preprocessed input (resize + the descriptor's mean/std; use mean 0 / std 1 to hand it raw
//! [0,1] pixels). Its parameters are added to the `VarStore` under their own dotted names,
//! trainable or frozen, so full finetuning works through tch's autograd on TorchScript.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tch::nn;
use tch::{CModule, Kind, Tensor};

use crate::backbone::Backbone;
use crate::descriptor::{ArchConfig, BackboneDescriptor, ParamLayout};
use crate::error::ModelError;

/// What the TorchScript module returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptOutput {
    /// Pooled features `[B, F]`; the classifier adds a linear head.
    Features,
    /// Class logits `[B, K]`; used as is.
    Logits,
}

/// Description of a TorchScript backbone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptConfig {
    /// The `.pt` TorchScript archive.
    pub file: PathBuf,
    /// Input `[C, H, W]` the module expects.
    pub input_size: [i64; 3],
    /// Width of the output (features or logits), measured by [`describe`].
    pub num_features: i64,
    /// What the module returns.
    pub output: ScriptOutput,
    /// Whether its parameters are trainable (full finetuning) or frozen (probing/evaluation).
    pub trainable: bool,
}

/// Loads `file` once, runs it on zeros of `input_size` (batch 2, eval mode) and returns a
/// descriptor with the measured output width. Errors if the module does not return a 2-D
/// floating tensor with one row per input.
pub fn describe(
    file: &Path,
    input_size: [i64; 3],
    output: ScriptOutput,
    trainable: bool,
    mean: Vec<f64>,
    std: Vec<f64>,
) -> Result<BackboneDescriptor, ModelError> {
    let mut m = load_module(file, tch::Device::Cpu)?;
    m.set_eval();
    let x = Tensor::zeros([2, input_size[0], input_size[1], input_size[2]], (Kind::Float, tch::Device::Cpu));
    let y = tch::no_grad(|| run(&m, &x, file))?;
    let name = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "torchscript".into());
    let desc = BackboneDescriptor {
        name,
        arch: ArchConfig::TorchScript(ScriptConfig {
            file: file.to_path_buf(),
            input_size,
            num_features: y.size()[1],
            output,
            trainable,
        }),
        mean,
        std,
        classifier: "head".into(),
        layout: ParamLayout::TorchScript,
    };
    desc.validate()?;
    Ok(desc)
}

fn load_module(file: &Path, device: tch::Device) -> Result<CModule, ModelError> {
    CModule::load_on_device(file, device).map_err(|e| ModelError::Script {
        file: file.to_path_buf(),
        reason: format!(
            "cannot load as TorchScript ({}); export it with `torch.jit.script(model).save(path)` or `torch.jit.trace`",
            first_line(&e.to_string())
        ),
    })
}

fn run(m: &CModule, x: &Tensor, file: &Path) -> Result<Tensor, ModelError> {
    let y = m.forward_ts(&[x]).map_err(|e| ModelError::Script {
        file: file.to_path_buf(),
        reason: format!(
            "forward failed on input {:?} ({}); feed it data of the shape it was exported for",
            x.size(),
            first_line(&e.to_string())
        ),
    })?;
    let ok_kind = matches!(y.kind(), Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16);
    if y.dim() != 2 || y.size()[0] != x.size()[0] || !ok_kind {
        return Err(ModelError::Script {
            file: file.to_path_buf(),
            reason: format!(
                "must return a floating [B, F] tensor; for input {:?} it returned {:?} of kind {:?}",
                x.size(),
                y.size(),
                y.kind()
            ),
        });
    }
    Ok(y)
}

/// The first non-empty line of a libtorch error: TorchScript errors carry the module's source
/// and a C++ backtrace on further lines, which would break the CLI's one-line errors.
fn first_line(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("unknown error");
    // tch prefixes "Internal torch error: "; the message after it is what helps.
    line.trim_start_matches("Internal torch error:").trim().to_string()
}

/// A TorchScript module as a [`Backbone`].
#[derive(Debug)]
pub struct ScriptBackbone {
    descriptor: BackboneDescriptor,
    file: PathBuf,
    width: i64,
    module: Mutex<(CModule, bool)>,
}

impl ScriptBackbone {
    /// Loads the module and registers its parameters under `p` with their dotted names.
    pub(crate) fn load(p: &nn::Path, descriptor: BackboneDescriptor, c: &ScriptConfig) -> Result<Self, ModelError> {
        let mut m = load_module(&c.file, p.device())?;
        m.set_eval();
        let params = m
            .named_parameters()
            .map_err(|e| ModelError::Script { file: c.file.clone(), reason: format!("cannot list parameters: {e}") })?;
        for (name, t) in params {
            let mut parts: Vec<&str> = name.split('.').collect();
            let leaf = parts.pop().unwrap_or("");
            let mut sp = p.clone();
            for part in parts {
                sp = sp / part;
            }
            let t = if c.trainable { t } else { t.set_requires_grad(false) };
            let _ = sp.add(leaf, t, c.trainable);
        }
        let probe = Tensor::zeros([2, c.input_size[0], c.input_size[1], c.input_size[2]], (Kind::Float, p.device()));
        let y = tch::no_grad(|| run(&m, &probe, &c.file))?;
        if y.size()[1] != c.num_features {
            return Err(ModelError::Script {
                file: c.file.clone(),
                reason: format!(
                    "returns width {} but the descriptor says {}; rebuild the descriptor with script::describe",
                    y.size()[1],
                    c.num_features
                ),
            });
        }
        Ok(ScriptBackbone { descriptor, file: c.file.clone(), width: c.num_features, module: Mutex::new((m, false)) })
    }
}

impl Backbone for ScriptBackbone {
    /// Panics with a clear message if the module fails or returns a wrong shape (it was checked
    /// at load time, so this means input-dependent behaviour).
    fn forward_features(&self, x: &Tensor, train: bool) -> Tensor {
        let mut guard = match self.module.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.1 != train {
            if train {
                guard.0.set_train()
            } else {
                guard.0.set_eval()
            }
            guard.1 = train;
        }
        match run(&guard.0, x, &self.file) {
            Ok(y) if y.size()[1] == self.width => y,
            Ok(y) => panic!(
                "TorchScript module {} returned width {} instead of {}",
                self.file.display(),
                y.size()[1],
                self.width
            ),
            Err(e) => panic!("{e}"),
        }
    }

    fn num_features(&self) -> i64 {
        self.width
    }

    fn descriptor(&self) -> &BackboneDescriptor {
        &self.descriptor
    }
}
