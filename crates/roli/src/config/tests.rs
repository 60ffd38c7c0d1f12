use super::*;

const MIN: &str = "[data]\nname = \"fashion-mnist\"\n[model]\nbackbone = \"lenet5_advertorch\"\n";

#[test]
fn a_set_key_nesting_thousands_deep_is_an_error_not_a_stack_overflow() {
    // Regression (fuzzing, toml-set case 224): `probe` + 13,000 × `.ebe`.
    let key = format!("probe{}", ".ebe".repeat(13_000));
    let e = apply_override(&mut toml::Table::new(), &format!("{key}=1")).unwrap_err().to_string();
    assert!(e.contains("13001 dotted parts"), "{e}");
    assert!(apply_override(&mut toml::Table::new(), "finetune.ranli.epochs=5").is_ok());
}

#[test]
fn a_run_may_change_device_and_title_but_not_precision() {
    let base = RunConfig::from_toml_str(MIN, &[], "t").unwrap();
    assert_eq!(
        (base.device, base.train.precision, base.eval.precision),
        (DeviceChoice::Auto, Precision::Fp32, Precision::Fp32)
    );
    let with = |o: &[&str]| {
        let o: Vec<String> = o.iter().map(|s| s.to_string()).collect();
        RunConfig::from_toml_str(MIN, &o, "t").unwrap().to_resolved_toml()
    };
    let old = base.to_resolved_toml();
    assert!(same_settings(&old, &with(&["device=\"cuda:1\"", "name=\"other\""])));
    assert!(same_settings(&old, &with(&["train.checkpoint_every_steps=5"])), "checkpoints change no result");
    let e = RunConfig::from_toml_str(MIN, &["train.checkpoint_every_steps=0".into()], "t").unwrap_err();
    assert!(format!("{e:#}").contains("checkpoint_every_steps must be ≥ 1"), "{e:#}");
    assert!(!same_settings(&old, &with(&["train.precision=\"bf16\""])));
    assert!(!same_settings(&old, &with(&["eval.precision=\"tf32\""])));
    let e = RunConfig::from_toml_str(MIN, &["train.precision=\"fp16\"".into()], "t").unwrap_err();
    assert!(format!("{e:#}").contains("fp16"), "{e:#}");
}

#[test]
fn minimal_config_gets_reference_defaults_and_roundtrips() {
    let c = RunConfig::from_toml_str(MIN, &[], "t").unwrap();
    assert_eq!(c.threat.train_steps, 7);
    assert_eq!(c.threat.eval_steps, 10);
    assert!((c.threat.eps - 8.0 / 255.0).abs() < 1e-12);
    assert_eq!(c.data.batch_size, 64);
    assert_eq!(c.finetune.lora.rank, 16);
    let again = RunConfig::from_toml_str(&c.to_resolved_toml(), &[], "resolved").unwrap();
    assert_eq!(c, again);
    let resolved = c.to_resolved_toml();
    assert!(resolved.contains("train_steps = 7") && resolved.contains("[finetune.lora]"), "{resolved}");
}

#[test]
fn unknown_key_names_the_key_and_the_allowed_ones() {
    let e =
        RunConfig::from_toml_str(&format!("{MIN}[threat]\nepsilon = 0.1\n"), &[], "run.toml").unwrap_err().to_string();
    assert!(e.contains("run.toml") && e.contains("epsilon") && e.contains("eps"), "{e}");
    let e = RunConfig::from_toml_str(&format!("colour = 1\n{MIN}"), &[], "run.toml").unwrap_err().to_string();
    assert!(e.contains("colour") && e.contains("finetune"), "{e}");
    let e = RunConfig::from_toml_str(&format!("{MIN}colour = 1\n"), &[], "run.toml").unwrap_err().to_string();
    assert!(e.contains("colour") && e.contains("backbone") && e.contains("line 5"), "{e}");
}

#[test]
fn overrides_parse_values_and_reject_unknown_keys() {
    let c = RunConfig::from_toml_str(
        MIN,
        &["finetune.methods=[\"full\",\"lora\"]".into(), "data.name=/tmp/x y".into(), "threat.eps=0.1".into()],
        "t",
    )
    .unwrap();
    assert_eq!(c.finetune.methods, vec![Method::named("full").unwrap(), Method::named("lora").unwrap()]);
    assert_eq!(c.data.name, "/tmp/x y");
    assert_eq!(c.threat.eps, 0.1);
    assert!(RunConfig::from_toml_str(MIN, &["threat.nope=1".into()], "t").unwrap_err().to_string().contains("nope"));
    assert!(RunConfig::from_toml_str(MIN, &["novalue".into()], "t").unwrap_err().to_string().contains("key=value"));
}

#[test]
fn impossible_values_are_named() {
    for (o, needle) in [
        ("threat.norm=\"l7\"", "l7"),
        ("eval.autoattack=\"max\"", "max"),
        ("threat.eps=2.0", "threat.eps"),
        ("finetune.methods=[\"linear\"]", "stage 1"),
        ("data.batch_size=0", "batch_size"),
        ("threat.eval_step_size=0.0", "eval_step_size"),
    ] {
        let e = format!("{:#}", RunConfig::from_toml_str(MIN, &[o.into()], "t").unwrap_err());
        assert!(e.contains(needle), "{o}: {e}");
    }
    let e = format!(
        "{:#}",
        RunConfig::from_toml_str(
            &format!("{MIN}[finetune.per_method.lora_rolli]\nepochs=1\nbase_lr=1\nweight_decay=0\noptimizer=\"sgd\"\n"),
            &[],
            "t"
        )
        .unwrap_err()
    );
    assert!(e.contains("lora_rolli"), "{e}");
}

#[test]
fn run_key_and_init_label() {
    let m = |n| Method::named(n).unwrap();
    assert_eq!(run_key(m("lora"), Init::Roli), "lora_roli");
    assert_eq!(init_label(StageKind::Probe, Init::Roli), "-");
    assert_eq!(init_label(StageKind::Finetune(m("bias")), Init::Ranli), "ranli");
}

#[test]
fn eval_step_defaults_to_the_training_step() {
    let c = RunConfig::from_toml_str(MIN, &["threat.step_size=0.15".into()], "t").unwrap();
    assert_eq!(c.threat.eval_step(), 0.15);
    let c = RunConfig::from_toml_str(MIN, &["threat.step_size=0.15".into(), "threat.eval_step_size=0.075".into()], "t")
        .unwrap();
    assert_eq!((c.threat.step_size, c.threat.eval_step()), (0.15, 0.075));
    let again = RunConfig::from_toml_str(&c.to_resolved_toml(), &[], "resolved").unwrap();
    assert_eq!(again.threat.eval_step(), 0.075);
}

#[test]
fn stage_for_prefers_per_method() {
    let c = RunConfig::from_toml_str(
        &format!("{MIN}[finetune.per_method.lora_roli]\nepochs=3\nbase_lr=0.5\nweight_decay=0\noptimizer=\"sgd\"\n"),
        &[],
        "t",
    )
    .unwrap();
    let m = |n| Method::named(n).unwrap();
    assert_eq!(c.stage_for(m("lora"), Init::Roli).base_lr, 0.5);
    assert_eq!(c.stage_for(m("lora"), Init::Ranli).base_lr, 5e-4);
    assert_eq!(c.stage_for(m("full"), Init::Roli).base_lr, 1e-4);
}
