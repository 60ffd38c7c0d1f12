//! roli's side of the benchmark: the models and data it times, and the timing of every item.
use super::*;

/// The AA stages at `aa_iters` iterations (queries for Square); restarts and targets as the
/// `standard` table, targets capped at K−1 classes.
pub(super) fn aa_attacks(aa_iters: usize, targets_cap: usize) -> Vec<(&'static str, Box<dyn Attack>)> {
    let threat = ThreatModel::Linf { eps: EPS };
    AA_STANDARD
        .iter()
        .map(|s| -> (&'static str, Box<dyn Attack>) {
            match *s {
                Stage::ApgdCe { restarts, eot_iter } => (
                    "apgd-ce",
                    Box::new(Apgd::new(
                        threat,
                        ApgdConfig { n_iter: aa_iters, restarts, eot_iter, ..ApgdConfig::OFFICIAL_CE },
                    )),
                ),
                Stage::ApgdT { restarts, targets } => (
                    "apgd-t",
                    Box::new(Apgd::new(
                        threat,
                        ApgdConfig {
                            n_iter: aa_iters,
                            restarts,
                            loss: ApgdLoss::TargetedDlr { targets: targets.min(targets_cap) },
                            ..ApgdConfig::OFFICIAL_CE
                        },
                    )),
                ),
                Stage::FabT { restarts, targets } => (
                    "fab-t",
                    Box::new(Fab::new(
                        threat,
                        FabConfig {
                            n_iter: aa_iters,
                            restarts,
                            targets: Some(targets.min(targets_cap)),
                            ..FabConfig::OFFICIAL_T
                        },
                    )),
                ),
                Stage::Square { queries: _, p_init } => (
                    "square",
                    Box::new(Square::new(
                        threat,
                        SquareConfig { n_queries: aa_iters, p_init, ..SquareConfig::OFFICIAL },
                    )),
                ),
                other => unreachable!("AA standard has no {:?} stage", other.id()),
            }
        })
        .collect()
}

/// Warm-up, then `iters` timed runs with the device synchronised before each clock reading;
/// returns seconds per iteration and the pass counts of the timed runs.
pub(super) fn time_item(
    req: &BenchRequest,
    counter: &Counting,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(f64, PassCounts)> {
    let t0 = Instant::now();
    for _ in 0..req.warmup {
        f()?;
    }
    device::synchronize(req.device);
    reset_peak_memory(req.device);
    tracing::debug!("warm-up: {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
    let before = counter.counts();
    let t0 = Instant::now();
    for _ in 0..req.iters {
        f()?;
    }
    device::synchronize(req.device);
    let secs = t0.elapsed().as_secs_f64() / req.iters as f64;
    Ok((secs, counter.counts().since(&before)))
}

pub(super) fn work_of(c: PassCounts, iters: usize, train_examples: i64) -> Work {
    Work {
        forward_examples: c.forward_examples as f64 / iters as f64,
        backward_examples: c.backward_examples as f64 / iters as f64,
        train_examples: train_examples as f64,
    }
}

/// Freezes every tensor but `trainable`; returns those (name order).
pub(super) fn trainable_only(vs: &nn::VarStore, trainable: &[String]) -> Vec<(String, Tensor)> {
    let vars = vs.variables();
    for (n, t) in &vars {
        let _ = t.shallow_clone().set_requires_grad(trainable.contains(n));
    }
    trainable.iter().filter_map(|n| vars.get(n).map(|t| (n.clone(), t.shallow_clone()))).collect()
}

/// A temporary folder removed on drop.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new() -> anyhow::Result<Self> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let p = std::env::temp_dir().join(format!("roli-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn save_vars(path: &Path, vs: &nn::VarStore) -> anyhow::Result<()> {
    let mut t: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    artifacts::save_tensors(path, &t)
}

/// The attack's view of a model: eval mode, at the bench's precision.
pub(super) fn eval_model(m: &Classifier, prec: Precision, dev: Device) -> impl Fn(&Tensor) -> Tensor + '_ {
    move |t: &Tensor| prec.forward(dev, || m.forward_with(t, false))
}

/// roli's measured side: per item, its timing and work (None: not applicable, with the reason).
pub(super) struct RoliSide {
    pub(super) timings: Vec<(String, i64, Result<SideTiming, String>)>,
}

/// roli's models and data on the device, after writing what the PyTorch side reads.
pub(super) struct Prepared {
    pub(super) full: zoo::Built,
    pub(super) lora: Option<zoo::Built>,
    pub(super) x: Tensor,
    pub(super) y: Tensor,
    pub(super) x_aa: Tensor,
    /// The model's clean predictions: the labels of the AA set and of PGD-10.
    pub(super) y_aa: Tensor,
    pub(super) y_eval: Tensor,
}

/// Builds the plain and the LoRA model (random weights, seeded), draws the data, takes the
/// labels, and writes weights (timm names) and batch for the PyTorch side into `dir`.
pub(super) fn prepare(req: &BenchRequest, s: &Settings, has_blocks: bool, dir: &Path) -> anyhow::Result<Prepared> {
    let dev = req.device;
    let source = BackboneSource::Preset { preset: req.preset.clone(), weights: None, layout: SourceLayout::Native };
    let input = [s.channels, s.image_size, s.image_size];
    let native = [s.channels, s.native_size, s.native_size];
    let opts = BuildOptions::random_preset(req.classes, input, native, req.seed, req.attention, dev);
    let built = zoo::build(&source, &opts, &roli_models::peft::NoPeft).context("building the model")?;
    save_vars(&dir.join("full.safetensors"), &built.vs)?;
    let lora_built = if has_blocks {
        let injector = Method::named("lora")?.injector(&peft::Settings::default())?;
        let none = roli_models::peft::NoPeft;
        let b = zoo::build(&source, &opts, injector.as_deref().unwrap_or(&none)).context("building the LoRA model")?;
        save_vars(&dir.join("lora.safetensors"), &b.vs)?;
        Some(b)
    } else {
        None
    };

    // The synthetic data, drawn on the CPU (the same whatever the device).
    tch::manual_seed(req.seed as i64);
    let cpu = (Kind::Float, Device::Cpu);
    let x = Tensor::rand([req.batch, s.channels, s.image_size, s.image_size], cpu);
    let y = Tensor::randint(req.classes, [req.batch], (Kind::Int64, Device::Cpu));
    let x_aa = Tensor::rand([req.aa_n, s.channels, s.image_size, s.image_size], cpu);
    let (xd, yd, x_aad) = (x.to_device(dev), y.to_device(dev), x_aa.to_device(dev));

    trainable_only(&built.vs, &[]);
    let (logits_aa, y_aa, y_eval) = {
        let full_eval = eval_model(&built.model, req.precision, dev);
        tch::no_grad(|| {
            let l = full_eval(&x_aad);
            let ya = l.argmax(1, false);
            (l, ya, full_eval(&xd).argmax(1, false))
        })
    };
    artifacts::save_tensors(
        &dir.join("batch.safetensors"),
        &[
            ("x".into(), x),
            ("y".into(), y),
            ("x_aa".into(), x_aa),
            ("y_aa".into(), y_aa.shallow_clone()),
            ("logits_aa".into(), logits_aa),
            ("y_eval".into(), y_eval.shallow_clone()),
        ],
    )?;
    Ok(Prepared { full: built, lora: lora_built, x: xd, y: yd, x_aa: x_aad, y_aa, y_eval })
}

/// Times every item on roli's side.
pub(super) fn roli_side(req: &BenchRequest, s: &Settings, p: Prepared) -> anyhow::Result<RoliSide> {
    let (dev, prec) = (req.device, req.precision);
    let _phase = prec.enter(dev)?;
    let Prepared { full: built, lora: lora_built, x: xd, y: yd, x_aa: x_aad, y_aa, y_eval } = p;
    let full_eval = eval_model(&built.model, prec, dev);
    let mut timings = Vec::new();
    let seed = req.seed;
    // (b) PGD-10 evaluation.
    {
        let cm = Counting::new(&full_eval);
        let pgd = Pgd::new(
            ThreatModel::Linf { eps: EPS },
            PgdConfig { steps: EVAL_STEPS, step_size: StepSize::Absolute(STEP), ..PgdConfig::ROLI_EVAL },
        );
        let (secs, c) = time_item(req, &cm, || {
            let _ = pgd.perturb(&cm, &xd, &y_eval, seed)?;
            Ok(())
        })?;
        tracing::info!("roli {PGD10_EVAL}: {:.1} ms/iter", secs * 1e3);
        let t = SideTiming::new(secs, req.batch as f64, work_of(c, req.iters, 0), peak_memory(dev));
        timings.push((PGD10_EVAL.to_string(), req.batch, Ok(t)));
    }
    // (c) AutoAttack stages.
    for (name, attack) in aa_attacks(req.aa_iters, s.aa_targets) {
        let cm = Counting::new(&full_eval);
        let (secs, c) = time_item(req, &cm, || {
            let _ = attack.perturb(&cm, &x_aad, &y_aa, seed)?;
            Ok(())
        })
        .with_context(|| format!("roli {name}"))?;
        tracing::info!("roli {name}: {:.1} ms/iter", secs * 1e3);
        let t = SideTiming::new(secs, req.aa_n as f64, work_of(c, req.iters, 0), peak_memory(dev));
        timings.push((name.to_string(), req.aa_n, Ok(t)));
    }
    // (a) adversarial training steps.
    let train_pgd = Pgd::new(
        ThreatModel::Linf { eps: EPS },
        PgdConfig {
            steps: TRAIN_STEPS,
            step_size: StepSize::Absolute(STEP),
            restarts: 1,
            random_start: true,
            loss: LossKind::Ce,
            best: BestIterate::PerExample,
        },
    );
    let train = |name: &str, b: &zoo::Built, method: Method| -> anyhow::Result<SideTiming> {
        let all: Vec<String> = b.vs.variables().into_keys().collect();
        let head = b.model.head_var_names();
        let names = peft::trainable_names(Some(method), &all, head);
        let params = trainable_only(&b.vs, &names);
        let head_bias = head.iter().find(|n| n.ends_with("bias")).cloned().unwrap_or_default();
        let mut opt = crate::train::optim::Optimizer::new(
            crate::train::optim::OptimizerKind::REFERENCE_ADAMW,
            params,
            WEIGHT_DECAY,
            LR,
            &head_bias,
        )
        .with_impl(s.optimizer_impl);
        let m = eval_model(&b.model, prec, dev);
        let cm = Counting::new(&m);
        tch::manual_seed(seed as i64);
        let (secs, c) = time_item(req, &cm, || {
            let xa = train_pgd.perturb_all(&cm, &xd, &yd, None)?;
            let logits = prec.forward(dev, || b.model.forward_peft(&xa, method.backbone_train(), method.peft_train()));
            let loss = logits.cross_entropy_for_logits(&yd);
            opt.zero_grad();
            loss.backward();
            opt.try_step()?;
            Ok(())
        })
        .with_context(|| format!("roli {name}"))?;
        trainable_only(&b.vs, &[]);
        tracing::info!("roli {name}: {:.1} ms/iter", secs * 1e3);
        Ok(SideTiming::new(secs, req.batch as f64, work_of(c, req.iters, req.batch), peak_memory(dev)))
    };
    let t = train(TRAIN_FULL, &built, Method::named("full")?)?;
    timings.push((TRAIN_FULL.to_string(), req.batch, Ok(t)));
    match &lora_built {
        Some(b) => {
            let t = train(TRAIN_LORA, b, Method::named("lora")?)?;
            timings.push((TRAIN_LORA.to_string(), req.batch, Ok(t)));
        }
        None => timings.push((
            TRAIN_LORA.to_string(),
            req.batch,
            Err(format!("LoRA needs transformer blocks; {} has none", req.preset)),
        )),
    }
    Ok(RoliSide { timings })
}
