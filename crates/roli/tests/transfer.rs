//! Issue-5 guarantees on tiny models and synthetic data (fast, CPU):
//! each method trains exactly its declared set; the RoLI hand-off starts stage 2 at the stage-1
//! model; a killed run resumes to the uninterrupted result; the dead-parameter guard fires on the
//! reference's zero-init LoRA.
use roli::config::{Init, RunConfig};
use roli::peft::Method;
use roli::pipeline::{self, PreparedData};
use roli::plan::{Stage, StudyPlan};
use roli::train::adversarial::{self, StagePlan};
use roli::zoo::BackboneSource;
use roli_data::TensorDataset;
use roli_models::SourceLayout;
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// libtorch's random generator is process-wide and the tests seed it: run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn toy_data(n: i64, seed: i64) -> TensorDataset {
    tch::manual_seed(seed);
    let x = Tensor::rand([n, 1, 32, 32], (Kind::Float, tch::Device::Cpu));
    let y = Tensor::randint(3, [n], (Kind::Int64, tch::Device::Cpu));
    TensorDataset::new("toy", x, y, vec!["a".into(), "b".into(), "c".into()]).unwrap()
}

fn data() -> PreparedData {
    PreparedData {
        spec: "toy".into(),
        train: Box::new(toy_data(16, 1)),
        val: Box::new(toy_data(8, 2)),
        test: Box::new(toy_data(8, 3)),
        num_classes: 3,
        input: [1, 32, 32],
    }
}

fn cfg(backbone: &str, extra: &str) -> StudyPlan {
    let text = format!(
        r#"
seed = 5
[data]
name = "toy"
batch_size = 8
[model]
backbone = "{backbone}"
head_init = "torch"
drop_path = 0.1
[threat]
eps = 0.05
step_size = 0.02
train_steps = 2
eval_steps = 2
[probe]
epochs = 2
base_lr = 0.5
weight_decay = 0.01
optimizer = "sgd"
warmup_epochs = 0
[finetune.ranli]
epochs = 2
base_lr = 0.05
weight_decay = 0.01
optimizer = "adamw"
warmup_epochs = 0
[finetune.roli]
epochs = 2
base_lr = 0.05
weight_decay = 0.01
optimizer = "adamw"
warmup_epochs = 0
[eval]
autoattack = "none"
{extra}
"#
    );
    StudyPlan::resolve(&RunConfig::from_toml_str(&text, &[], "test").unwrap())
}

/// A stage-2 stage of `method` from a random head.
fn ft(method: &str) -> Stage {
    Stage::Finetune { method: Method::named(method).unwrap(), init: Init::Ranli }
}

/// The model of a stage, built as the pipeline builds it.
fn build(c: &StudyPlan, s: &BackboneSource, d: &PreparedData, stage: Stage) -> roli::zoo::Built {
    let opts = pipeline::build_options(&c.model, d.num_classes, d.input, stage, tch::Device::Cpu);
    pipeline::build_model(&c.model, s, &opts, stage).unwrap()
}

/// The training plan of a stage (the config's optimisation for it).
fn splan(c: &StudyPlan, built: &roli::zoo::Built, stage: Stage, label: &str) -> StagePlan {
    // Methods the study does not list (LayerNorm tuning) train with the first stage-2 optimisation.
    let spec = c.stages.iter().find(|s| s.stage.kind() == stage.kind()).unwrap_or(&c.stages[1]);
    let spec = roli::plan::StageSpec { stage, optim: spec.optim.clone() };
    pipeline::stage_plan(c, &spec, built, label)
}

fn src(preset: &str) -> BackboneSource {
    BackboneSource::Preset { preset: preset.into(), weights: None, layout: SourceLayout::Native }
}

fn snapshot(vs: &tch::nn::VarStore) -> HashMap<String, Tensor> {
    vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect()
}

#[test]
fn each_method_trains_exactly_its_declared_set() {
    let _guard = serial();
    for (preset, methods) in [
        (
            "vit_micro_patch4_32",
            vec![Stage::Probe, ft("full"), ft("bias"), ft("lora"), ft("adapter"), ft("prompt"), ft("layernorm")],
        ),
        ("swin_micro_patch2_window4_32", vec![ft("bias"), ft("lora"), ft("prompt"), ft("layernorm")]),
    ] {
        let c = cfg(preset, "");
        let d = data();
        for m in methods {
            let built = build(&c, &src(preset), &d, m);
            let plan = splan(&c, &built, m, "t");
            let before = snapshot(&built.vs);
            let dir = tempfile::tempdir().unwrap();
            adversarial::train_stage(
                &built.model,
                &built.vs,
                d.train.as_ref(),
                d.val.as_ref(),
                &StagePlan { epochs: 1, ..plan.clone() },
                dir.path(),
                &|_, _, _, _| {},
            )
            .unwrap();
            let after = snapshot(&built.vs);
            let mut moved = 0;
            for (name, b) in &before {
                let same = b.equal(&after[name]);
                if plan.trainable.contains(name) {
                    moved += (!same) as usize;
                } else {
                    assert!(same, "{preset} {m:?}: frozen tensor {name} changed");
                }
            }
            assert!(moved > 0, "{preset} {m:?}: nothing trained");
            let head = built.model.head_var_names();
            assert!(head.iter().all(|h| plan.trainable.contains(h)), "head must always train");
            match m.kind().as_str() {
                "linear" => assert_eq!(plan.trainable.len(), 2),
                "layernorm" => assert!(plan.trainable.iter().all(|n| n.contains("norm") || head.contains(n))),
                "lora" => assert!(plan.trainable.iter().all(|n| n.contains("lora_") || head.contains(n))),
                "adapter" => assert!(plan.trainable.iter().all(|n| n.contains("adapter_") || head.contains(n))),
                "bias" => assert!(plan.trainable.iter().all(|n| n.contains("bias") || head.contains(n))),
                "prompt" => assert!(plan.trainable.iter().all(|n| n.contains("prompt") || head.contains(n))),
                _ => {}
            }
        }
    }
}

#[test]
fn roli_hand_off_starts_at_the_stage1_model() {
    let _guard = serial();
    let c = cfg("vit_micro_patch4_32", "");
    let d = data();
    let s = src("vit_micro_patch4_32");
    let dir = tempfile::tempdir().unwrap();
    let (_, head_path) = pipeline::probe(&c, &c.stages[0], &c.eval, &d, &s, &dir.path().join("linear")).unwrap();
    // The stage-1 model, as saved (best weights).
    let probe_model = build(&c, &s, &d, Stage::Probe);
    let best = Tensor::read_safetensors(dir.path().join("linear/best.safetensors")).unwrap();
    adversarial::load_into(&probe_model.vs, &best, &dir.path().join("best")).unwrap();
    // Stage 2 model for full finetuning with the RoLI head, before any step.
    let full = build(&c, &s, &d, ft("full"));
    let (meta, tensors) = roli::head::load(&head_path).unwrap();
    roli::head::check_compatible(
        &meta,
        &full.backbone_fingerprint,
        3,
        full.model.backbone().num_features(),
        full.model.head_var_names(),
    )
    .unwrap();
    adversarial::load_into(&full.vs, &tensors, &head_path).unwrap();
    let (x, _) = d.test.batch(&[0, 1, 2, 3], None).unwrap();
    let a = probe_model.model.forward_with(&x, false);
    let b = full.model.forward_with(&x, false);
    assert!(a.equal(&b), "stage 2 must start at exactly the stage-1 model");
    // A head from another backbone is refused.
    let other = BackboneSource::Preset {
        preset: "swin_micro_patch2_window4_32".into(),
        weights: None,
        layout: SourceLayout::Native,
    };
    let e = pipeline::finetune(&c, &c.stages[1], &d, &other, Some(&head_path), &dir.path().join("x")).unwrap_err();
    assert!(format!("{e:#}").contains("refusing head"), "{e:#}");
}

#[test]
fn resume_after_a_kill_equals_an_uninterrupted_run() {
    let _guard = serial();
    let c = cfg("vit_micro_patch4_32", "");
    let d = data();
    let s = src("vit_micro_patch4_32");
    let run = |kill_at: Option<u32>| -> Vec<(String, Tensor)> {
        let built = build(&c, &s, &d, ft("full"));
        let plan = splan(&c, &built, ft("full"), "t");
        let plan = StagePlan { epochs: 3, ..plan };
        let dir = tempfile::tempdir().unwrap();
        if let Some(k) = kill_at {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = adversarial::train_stage(
                    &built.model,
                    &built.vs,
                    d.train.as_ref(),
                    d.val.as_ref(),
                    &plan,
                    dir.path(),
                    &|e, _, _, _| {
                        if e == k {
                            panic!("simulated kill");
                        }
                    },
                );
            }));
            assert!(r.is_err());
            // A fresh process: rebuild the model (different random init!) and resume from disk.
            let rebuilt = build(&c, &s, &d, ft("full"));
            adversarial::train_stage(
                &rebuilt.model,
                &rebuilt.vs,
                d.train.as_ref(),
                d.val.as_ref(),
                &plan,
                dir.path(),
                &|_, _, _, _| {},
            )
            .unwrap();
            let mut v: Vec<_> = rebuilt.vs.variables().into_iter().collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        } else {
            adversarial::train_stage(
                &built.model,
                &built.vs,
                d.train.as_ref(),
                d.val.as_ref(),
                &plan,
                dir.path(),
                &|_, _, _, _| {},
            )
            .unwrap();
            let mut v: Vec<_> = built.vs.variables().into_iter().collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }
    };
    let full = run(None);
    let resumed = run(Some(2));
    assert_eq!(full.len(), resumed.len());
    for ((n, a), (_, b)) in full.iter().zip(&resumed) {
        assert!(a.equal(b), "tensor {n} differs after resume");
    }
}

#[test]
fn dead_parameter_guard_fires_on_faithful_zero_init_lora() {
    let _guard = serial();
    let d = data();
    let s = src("vit_micro_patch4_32");
    // Zero-init LoRA without the faithful flag's permission: build with zero init but allow_dead off.
    let c = cfg("vit_micro_patch4_32", "[faithful]\nlora_zero_init = true\n");
    let built = build(&c, &s, &d, ft("lora"));
    let plan = splan(&c, &built, ft("lora"), "lora/faithful");
    assert!(plan.allow_dead, "the faithful flag permits dead tensors");
    let dir = tempfile::tempdir().unwrap();
    let strict = StagePlan { allow_dead: false, epochs: 1, ..plan.clone() };
    let e = adversarial::train_stage(
        &built.model,
        &built.vs,
        d.train.as_ref(),
        d.val.as_ref(),
        &strict,
        dir.path(),
        &|_, _, _, _| {},
    )
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("never received a gradient") && msg.contains("lora_"), "{msg}");
    // With permission it runs and reports the dead set: only the head is effective.
    let built = build(&c, &s, &d, ft("lora"));
    let dir = tempfile::tempdir().unwrap();
    let out = adversarial::train_stage(
        &built.model,
        &built.vs,
        d.train.as_ref(),
        d.val.as_ref(),
        &StagePlan { epochs: 1, ..plan },
        dir.path(),
        &|_, _, _, _| {},
    )
    .unwrap();
    let t = out.state.trainability.unwrap();
    assert!(t.dead_tensors.iter().all(|n| n.contains("lora_")) && !t.dead_tensors.is_empty());
    let head: i64 = built.model.head_var_names().iter().map(|n| built.vs.variables()[n].numel() as i64).sum();
    assert_eq!(t.effective_elements, head);
    // Sound LoRA (A random, B zero) has no dead tensors.
    let c = cfg("vit_micro_patch4_32", "");
    let built = build(&c, &s, &d, ft("lora"));
    let plan = splan(&c, &built, ft("lora"), "lora");
    let dir = tempfile::tempdir().unwrap();
    let out = adversarial::train_stage(
        &built.model,
        &built.vs,
        d.train.as_ref(),
        d.val.as_ref(),
        &StagePlan { epochs: 1, ..plan },
        dir.path(),
        &|_, _, _, _| {},
    )
    .unwrap();
    assert!(out.state.trainability.unwrap().dead_tensors.is_empty());
}

#[test]
fn nan_loss_stops_with_state_saved() {
    let _guard = serial();
    let d = data();
    let c = cfg("vit_micro_patch4_32", "");
    let s = src("vit_micro_patch4_32");
    let built = build(&c, &s, &d, Stage::Probe);
    let plan = splan(&c, &built, Stage::Probe, "probe");
    // Poison the head so the loss is NaN.
    tch::no_grad(|| {
        let mut w = built.vs.variables()[&built.model.head_var_names()[0]].shallow_clone();
        let _ = w.fill_(f64::NAN);
    });
    let dir = tempfile::tempdir().unwrap();
    let e = adversarial::train_stage(
        &built.model,
        &built.vs,
        d.train.as_ref(),
        d.val.as_ref(),
        &plan,
        dir.path(),
        &|_, _, _, _| {},
    )
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("NaN") && msg.contains("nan_state.safetensors") && msg.contains("learning rate"), "{msg}");
    assert!(dir.path().join("nan_state.safetensors").exists());
}
