use super::table::fmt_rate;
use super::*;

fn pf() -> PassFlops {
    PassFlops { forward: 10.0, input_grad: 30.0, train: 30.0 }
}

#[test]
fn flops_count_plain_and_gradient_passes_and_training() {
    // PGD-7 training step of batch 4: 8 forwards of which 7 with an input gradient, + training.
    let w = Work { forward_examples: 32.0, backward_examples: 28.0, train_examples: 4.0 };
    assert_eq!(flops_per_iter(&pf(), &w), 4.0 * 10.0 + 28.0 * 30.0 + 4.0 * 30.0);
    assert_eq!(tflops(2e12, 0.5), Some(4.0));
    assert_eq!(tflops(1.0, 0.0), None);
    assert_eq!(images_per_s(64.0, 0.5), 128.0);
    assert_eq!(ratio(50.0, 100.0), Some(0.5));
    assert_eq!(ratio(50.0, 0.0), None);
    assert_eq!(ratio(f64::NAN, 1.0), None);
    let t = SideTiming::new(0.5, 4.0, w, None).with_flops(Some(&pf()), Some(1e-9));
    assert_eq!(t.flops_per_iter, Some(1000.0));
    assert!((t.tflops.unwrap() - 2e-9).abs() < 1e-21);
    assert!((t.pct_of_peak.unwrap() - 200.0).abs() < 1e-9);
    let t = SideTiming::new(0.5, 4.0, w, None).with_flops(Some(&pf()), None);
    assert_eq!(t.pct_of_peak, None);
}

#[test]
fn twin_describes_presets_as_timm_builds_them() {
    let v = twin(&roli_models::descriptor("vit_micro_patch4_32").unwrap()).unwrap();
    assert_eq!(v["family"], "vit");
    assert_eq!(v["timm_name"], Value::Null);
    let k = &v["kwargs"];
    assert_eq!((k["img_size"].as_i64(), k["patch_size"].as_i64()), (Some(32), Some(4)));
    assert_eq!((k["embed_dim"].as_i64(), k["depth"].as_i64(), k["num_heads"].as_i64()), (Some(64), Some(6), Some(4)));
    assert_eq!(k["in_chans"].as_i64(), Some(1));
    assert_eq!(v["classifier"], "head");
    let v = twin(&roli_models::descriptor("swin_micro_patch2_window4_32").unwrap()).unwrap();
    assert_eq!(v["family"], "swin");
    assert_eq!(v["kwargs"]["depths"], json!([2, 2, 2]));
    assert_eq!(v["kwargs"]["num_heads"], json!([2, 4, 8]));
    assert_eq!(v["kwargs"]["window_size"], 4);
    assert_eq!(v["classifier"], "head.fc");
    let v = twin(&roli_models::descriptor("swin_base_patch4_window7_224").unwrap()).unwrap();
    assert_eq!(v["timm_name"], "swin_base_patch4_window7_224");
    assert_eq!(v["native_size"], 224);
    let v = twin(&roli_models::descriptor("lenet5_advertorch").unwrap()).unwrap();
    assert_eq!(v["family"], "lenet");
    assert_eq!(v["kwargs"], json!({"in_chans": 1, "conv1": 32, "conv2": 64, "hidden": 200, "img_size": 28}));
    assert_eq!((v["mean"].clone(), v["std"].clone()), (json!([0.0]), json!([1.0])));
}

#[test]
fn aa_stages_follow_the_standard_table_at_the_asked_budget() {
    let names: Vec<&str> = aa_attacks(5, 9).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, AA_ITEMS);
}

fn settings() -> Settings {
    Settings {
        preset: "lenet5_advertorch".into(),
        batch: 4,
        image_size: 28,
        native_size: 28,
        channels: 1,
        classes: 10,
        device: "cpu".into(),
        precision: Precision::Fp32,
        attention: AttentionImpl::Explicit,
        optimizer_impl: OptimImpl::Reference,
        threads: 2,
        iters: 1,
        warmup: 0,
        aa_iters: 5,
        aa_n: 4,
        aa_targets: 9,
        eps: EPS,
        train_pgd: PgdSetting { steps: 7, step: STEP },
        eval_pgd: PgdSetting { steps: 10, step: STEP },
        lora_rank: 16,
        lora_alpha: 16.0,
        lr: LR,
        weight_decay: WEIGHT_DECAY,
        peak_tflops: None,
        seed: 0,
    }
}

fn torch_out() -> TorchOut {
    serde_json::from_value(json!({
        "versions": {"torch": "2.11.0", "autoattack": "pyautoattack"},
        "device_name": "cpu", "threads": 2,
        "items": {
            "pgd10-eval": {"seconds_per_iter": 0.2, "images_per_iter": 4, "forward_examples": 48,
                           "backward_examples": 40, "train_examples": 0, "peak_memory_bytes": null},
            "pgd7-train-full": {"seconds_per_iter": 0.4, "images_per_iter": 4, "forward_examples": 32,
                                "backward_examples": 28, "train_examples": 4, "peak_memory_bytes": 1048576}
        },
        "errors": {"apgd-ce": "RuntimeError: boom"},
        "parity": {"max_abs_logit_diff": 1e-6},
        "flops_per_image": {"full": {"forward": 10.0, "input_grad": 30.0, "train": 30.0}},
        "flop_source": "torch.utils.flop_counter.FlopCounterMode"
    }))
    .unwrap()
}

fn roli_side_fixture() -> RoliSide {
    let w = |f: f64, b: f64, t: f64| Work { forward_examples: f, backward_examples: b, train_examples: t };
    RoliSide {
        timings: vec![
            (PGD10_EVAL.into(), 4, Ok(SideTiming::new(0.1, 4.0, w(48.0, 40.0, 0.0), None))),
            ("apgd-ce".into(), 4, Ok(SideTiming::new(0.1, 4.0, w(24.0, 20.0, 0.0), None))),
            (TRAIN_FULL.into(), 4, Ok(SideTiming::new(0.8, 4.0, w(32.0, 28.0, 4.0), None))),
            (TRAIN_LORA.into(), 4, Err("LoRA needs transformer blocks".into())),
        ],
    }
}

#[test]
fn report_joins_both_sides_with_ratios_flops_and_reasons() {
    let t = torch_out();
    let rep = TorchReport {
        versions: t.versions.clone(),
        parity: t.parity.clone(),
        errors: t.errors.clone(),
        ..TorchReport::missing("ok", None, Some("python3".into()))
    };
    let r = assemble(settings(), roli_side_fixture(), rep, Some(&t));
    let by = |n: &str| r.items.iter().find(|i| i.item == n).unwrap();
    assert_eq!(by(PGD10_EVAL).ratio, Some(2.0));
    assert_eq!(by(TRAIN_FULL).ratio, Some(0.5));
    let full = by(TRAIN_FULL).roli.as_ref().unwrap();
    assert_eq!(full.flops_per_iter, Some(4.0 * 10.0 + 28.0 * 30.0 + 4.0 * 30.0));
    assert_eq!(by(TRAIN_FULL).torch.as_ref().unwrap().peak_memory_bytes, Some(1 << 20));
    assert!(by("apgd-ce").torch.is_none() && by("apgd-ce").note.as_deref().unwrap().contains("boom"));
    assert!(by(TRAIN_LORA).roli.is_none() && by(TRAIN_LORA).note.as_deref().unwrap().contains("LoRA"));

    // The JSON: settings, flops, the torch status and per-item sides, nulls named.
    let v = serde_json::to_value(&r).unwrap();
    for k in ["settings", "flops", "torch", "items"] {
        assert!(v.get(k).is_some(), "{k} missing in {v}");
    }
    assert_eq!(v["settings"]["threads"], 2);
    assert_eq!(v["settings"]["precision"], "fp32");
    let item = &v["items"][0];
    for k in ["item", "images_per_iter", "roli", "torch", "ratio", "note"] {
        assert!(item.get(k).is_some(), "{k} missing in {item}");
    }
    for k in ["seconds_per_iter", "images_per_s", "forward_examples", "backward_examples", "train_examples"] {
        assert!(item["roli"][k].is_number(), "{k}: {item}");
    }
    assert!(item["roli"]["peak_memory_bytes"].is_null());
    assert!(item["roli"]["pct_of_peak"].is_null());
    let back: BenchReport = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);

    let text = table(&r);
    assert!(text.contains("pgd10-eval") && text.contains("2.00") && text.contains("max |logit diff|"), "{text}");
    assert!(text.contains("1M") && text.contains("torch 2.11.0"), "{text}");
    assert_eq!(
        (fmt_rate(Some(0.0046)), fmt_rate(Some(0.123)), fmt_rate(None)),
        ("4.6e-3".into(), "0.123".into(), "-".into())
    );
}

#[test]
fn without_the_torch_side_roli_stands_alone_with_the_reason() {
    let r = assemble(
        settings(),
        roli_side_fixture(),
        TorchReport::missing("failed", Some("No module named 'torch'".into()), Some("python3".into())),
        None,
    );
    assert!(r.flops.is_none());
    assert!(r.items.iter().all(|i| i.torch.is_none() && i.ratio.is_none()));
    assert!(r.items[0].roli.as_ref().unwrap().images_per_s > 0.0);
    let text = table(&r);
    assert!(text.contains("PyTorch side missing: No module named 'torch'"), "{text}");
}

#[test]
fn differing_work_is_flagged() {
    let w = |f: f64| Work { forward_examples: f, backward_examples: 0.0, train_examples: 0.0 };
    let a = SideTiming::new(1.0, 1.0, w(100.0), None);
    assert!(work_note(Some(&a), Some(&SideTiming::new(1.0, 1.0, w(105.0), None))).is_none());
    assert!(work_note(Some(&a), Some(&SideTiming::new(1.0, 1.0, w(150.0), None))).is_some());
    assert_eq!(
        last_error_line("Traceback\n  x\nModuleNotFoundError: No module named 'torch'\n\n"),
        "ModuleNotFoundError: No module named 'torch'"
    );
}
