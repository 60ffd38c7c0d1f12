//! The PyTorch side: what `scripts/bench_torch.py` is asked to do, running it, and what it prints.
use super::*;

/// What `bench_torch.py` prints.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct TorchOut {
    #[serde(default)]
    pub(super) versions: Value,
    pub(super) device_name: Option<String>,
    pub(super) threads: Option<i64>,
    #[serde(default)]
    pub(super) items: BTreeMap<String, TorchItem>,
    #[serde(default)]
    pub(super) errors: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) parity: Value,
    #[serde(default)]
    pub(super) compile: Value,
    #[serde(default)]
    pub(super) flops_per_image: BTreeMap<String, PassFlops>,
    #[serde(default)]
    pub(super) flop_source: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct TorchItem {
    pub(super) seconds_per_iter: Option<f64>,
    pub(super) images_per_iter: f64,
    pub(super) forward_examples: Option<f64>,
    pub(super) backward_examples: Option<f64>,
    pub(super) train_examples: f64,
    pub(super) peak_memory_bytes: Option<u64>,
}

/// The spec `bench_torch.py` reads.
pub(super) fn torch_spec(req: &BenchRequest, s: &Settings, twin: &Value, has_blocks: bool, dir: &Path) -> Value {
    let mut items: Vec<&str> = vec![PGD10_EVAL];
    items.extend(AA_ITEMS);
    items.push(TRAIN_FULL);
    if has_blocks {
        items.push(TRAIN_LORA);
    }
    json!({
        "twin": twin,
        "num_classes": s.classes,
        "device": s.device,
        "precision": s.precision,
        "threads": s.threads,
        "iters": s.iters,
        "warmup": s.warmup,
        "aa_iters": s.aa_iters,
        "aa_targets": s.aa_targets,
        "eps": s.eps,
        "train_pgd": s.train_pgd,
        "eval_pgd": s.eval_pgd,
        "lora": {"rank": s.lora_rank, "alpha": s.lora_alpha},
        "lr": s.lr,
        "weight_decay": s.weight_decay,
        "seed": s.seed,
        "compile": req.compile,
        "items": items,
        "weights_full": dir.join("full.safetensors"),
        "weights_lora": has_blocks.then(|| dir.join("lora.safetensors")),
        "batch_file": dir.join("batch.safetensors"),
    })
}

/// Runs `bench_torch.py`; any failure becomes a reason, never an error.
pub(super) fn torch_side(
    req: &BenchRequest,
    s: &Settings,
    twin: &Value,
    has_blocks: bool,
    dir: &Path,
) -> (TorchReport, Option<TorchOut>) {
    let python = req.python.clone().unwrap_or_else(roli_data::fetch::project_python);
    let shown = Some(python.display().to_string());
    let fail = |reason: String| (TorchReport::missing("failed", Some(reason), shown.clone()), None);
    let script = dir.join("bench_torch.py");
    let spec = dir.join("spec.json");
    if let Err(e) = std::fs::write(&script, TORCH_SCRIPT)
        .map_err(anyhow::Error::from)
        .and_then(|_| artifacts::write_json(&spec, &torch_spec(req, s, twin, has_blocks, dir)))
    {
        return fail(format!("could not write its inputs: {e:#}"));
    }
    tracing::info!("PyTorch side: {} {}", python.display(), script.display());
    let out = match std::process::Command::new(&python).arg(&script).arg(&spec).output() {
        Ok(o) => o,
        Err(e) => return fail(format!("could not start {}: {e}", python.display())),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    for l in stderr.lines() {
        tracing::debug!("bench_torch: {l}");
    }
    if !out.status.success() {
        return fail(format!("{} exited with {}: {}", python.display(), out.status, last_error_line(&stderr)));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')) else {
        return fail(format!("it printed no JSON ({})", last_error_line(&stderr)));
    };
    match serde_json::from_str::<TorchOut>(line) {
        Ok(t) => {
            let rep = TorchReport {
                status: "ok".into(),
                reason: None,
                python: shown,
                versions: t.versions.clone(),
                device_name: t.device_name.clone(),
                threads: t.threads,
                parity: t.parity.clone(),
                errors: t.errors.clone(),
                compile: t.compile.clone(),
            };
            (rep, Some(t))
        }
        Err(e) => fail(format!("its JSON did not parse: {e}")),
    }
}

/// The most telling line of a Python traceback: the last non-empty one.
pub(super) fn last_error_line(stderr: &str) -> String {
    stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no output").to_string()
}
