//! Integration tests: tiny synthetic models always; real advertorch LeNets on MNIST when the data
//! cache exists (`roli data fetch all`; skipped with a note otherwise).
//! The heavy conformance run against the official AutoAttack is the `conformance` example.

#[path = "../examples/common/mod.rs"]
mod common;

use roli_attacks::cascade::{self, CascadeOptions};
use roli_attacks::{
    checks, evaluate, sweep, AttackError, AttackSpec, Counting, EvalOptions, Flag, Norm, Stage, ThreatModel,
};
use tch::{Device, Kind, Tensor};

/// A fixed random 10-class model on 1×s×s images: one conv, ReLU, linear. Smooth, so gradients work.
struct Smooth {
    conv: Tensor,
    lin: Tensor,
}

impl Smooth {
    fn new(s: i64) -> Self {
        tch::manual_seed(11);
        let conv = Tensor::randn([8, 1, 3, 3], (Kind::Float, Device::Cpu)) * 0.5;
        let lin = Tensor::randn([10, 8 * s * s], (Kind::Float, Device::Cpu)) * (0.5 / (s as f64));
        Self { conv, lin }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = x.conv2d::<Tensor>(&self.conv, None, [1, 1], [1, 1], [1, 1], 1).relu();
        h.reshape([x.size()[0], -1]).linear::<Tensor>(&self.lin, None) * 4.0
    }
}

/// Data labelled by the model itself, so clean accuracy is 100%.
fn self_labelled(f: &dyn Fn(&Tensor) -> Tensor, n: i64, s: i64) -> (Tensor, Tensor) {
    tch::manual_seed(5);
    let x = Tensor::rand([n, 1, s, s], (Kind::Float, Device::Cpu));
    let y = tch::no_grad(|| f(&x)).argmax(1, false);
    (x, y)
}

fn opts(threat: ThreatModel) -> EvalOptions<'static> {
    let mut o = EvalOptions::new(threat);
    o.batch_size = 16;
    o
}

/// The smooth model behind 8-bit input quantisation: round() has zero gradient everywhere, but any
/// change above 1/510 still changes the output. The classic gradient-masking toy.
fn quantised(net: &Smooth) -> impl Fn(&Tensor) -> Tensor + '_ {
    move |x: &Tensor| net.forward(&((x * 255.0).round() / 255.0))
}

fn aa_like(square_queries: usize) -> Vec<Stage> {
    vec![
        Stage::ApgdCe { restarts: 1, eot_iter: 1 },
        Stage::ApgdT { restarts: 1, targets: 9 },
        Stage::FabT { restarts: 1, targets: 9 },
        Stage::Square { queries: square_queries, p_init: 0.8 },
    ]
}

#[test]
fn gradient_masked_model_is_flagged() {
    let net = Smooth::new(8);
    let masked = quantised(&net);
    let smooth = |x: &Tensor| net.forward(x);
    let (x, y) = self_labelled(&smooth, 32, 8);
    let threat = ThreatModel::Linf { eps: 0.05 };
    // The zero-gradient check fires before any attack runs...
    let r = evaluate(&masked, &x, &y, &"pgd".parse().unwrap(), &opts(threat)).unwrap();
    assert!(
        r.flags.iter().any(|f| matches!(f, Flag::ZeroGradient { zero, total, .. } if zero == total)),
        "flags {:?}",
        r.flags
    );
    let r = evaluate(&smooth, &x, &y, &"pgd".parse().unwrap(), &opts(threat)).unwrap();
    assert!(!r.flags.iter().any(|f| matches!(f, Flag::ZeroGradient { .. })), "smooth model flagged: {:?}", r.flags);
    // ...and in the cascade Square breaks what the white-box attacks could not.
    let run = |m: &dyn Fn(&Tensor) -> Tensor| {
        let counting = Counting::new(&m);
        let mut st = cascade::clean_pass(&counting, &x, &y, 32);
        let o = CascadeOptions { batch_size: 32, seed: 0, progress: None, on_checkpoint: None };
        let _ = cascade::run(&counting, &x, &y, threat, &aa_like(1000), &mut st, &o).unwrap();
        st.stages.iter().map(|s| (s.id, s.robust_accuracy)).collect::<Vec<_>>()
    };
    let masked_accs = run(&masked);
    assert!(
        matches!(checks::square_vs_white_box(&masked_accs), Some(Flag::SquareBeatsWhiteBox { .. })),
        "{masked_accs:?}"
    );
    let smooth_accs = run(&smooth);
    assert_eq!(checks::square_vs_white_box(&smooth_accs), None, "{smooth_accs:?}");
}

#[test]
fn autoattack_respects_the_ball_and_beats_pgd_in_linf_and_l2() {
    let net = Smooth::new(12);
    let model = |x: &Tensor| net.forward(x);
    let (x, y) = self_labelled(&model, 32, 12);
    // L∞ through the full evaluate() path with the real preset; L2 through the cascade with a short Square.
    let threat = ThreatModel::Linf { eps: 0.03 };
    let o = opts(threat);
    let aa = evaluate(&model, &x, &y, &"aa-standard".parse().unwrap(), &o).unwrap();
    let pgd = evaluate(&model, &x, &y, &AttackSpec::with_pgd(10, Some(threat.eps() / 4.0), 1), &o).unwrap();
    assert_eq!(checks::aa_not_weaker_than_pgd(aa.robust_accuracy, pgd.robust_accuracy), None);
    assert!(aa.robust_accuracy < aa.clean_accuracy, "AA broke nothing");
    assert!(!aa.flags.iter().any(|f| matches!(f, Flag::PerturbationOutOfBounds { .. })), "{:?}", aa.flags);
    for e in &aa.examples {
        if let Some(d) = e.perturbation_norm {
            assert!(d <= threat.eps() * (1.0 + 1e-5), "example {} has norm {d}", e.index);
        }
        // Every broken example names its stage; every robust one has a record for each stage.
        assert_eq!(e.broken_by.is_some(), e.clean_correct && !e.robust);
        if e.robust {
            assert_eq!(e.attacks.len(), 4);
            assert!(e.attacks.values().all(|&v| v));
        }
    }
    assert!(aa.sanity.min_value >= 0.0 && aa.sanity.max_value <= 1.0);
    assert!(aa.passes.backward_calls > 0 && aa.stages.iter().all(|s| s.passes.forward_calls > 0 || s.n_attacked == 0));

    let threat = ThreatModel::L2 { eps: 0.3 };
    let counting = Counting::new(&model);
    let mut st = cascade::clean_pass(&counting, &x, &y, 16);
    let co = CascadeOptions { batch_size: 16, seed: 0, progress: None, on_checkpoint: None };
    let x_adv = cascade::run(&counting, &x, &y, threat, &aa_like(300), &mut st, &co).unwrap();
    assert_eq!(checks::perturbation_bounds(&x, &x_adv, &threat), None);
    let l2_aa = st.robust.iter().filter(|&&r| r).count() as f64 / 32.0;
    let l2_pgd = evaluate(&model, &x, &y, &AttackSpec::with_pgd(10, Some(0.075), 1), &opts(threat)).unwrap();
    assert_eq!(checks::aa_not_weaker_than_pgd(l2_aa, l2_pgd.robust_accuracy), None);
    assert!(l2_aa < 1.0, "L2 cascade broke nothing");
}

#[test]
fn same_seed_same_result_and_resumable_state() {
    let net = Smooth::new(8);
    let model = |x: &Tensor| net.forward(x);
    let (x, y) = self_labelled(&model, 20, 8);
    let spec: AttackSpec = "apgd-ce".parse().unwrap();
    let o = opts(ThreatModel::Linf { eps: 0.04 });
    let a = evaluate(&model, &x, &y, &spec, &o).unwrap();
    let b = evaluate(&model, &x, &y, &spec, &o).unwrap();
    assert_eq!(a.examples, b.examples);
    assert!(a.robust_accuracy < 1.0 && a.robust_accuracy > 0.0, "want a mixed outcome, got {}", a.robust_accuracy);

    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(ThreatModel::Linf { eps: 0.04 });
    o.state_path = Some(dir.path().join("state.json"));
    let first = evaluate(&model, &x, &y, &spec, &o).unwrap();
    let again = evaluate(&model, &x, &y, &spec, &o).unwrap();
    assert_eq!(first.examples, again.examples);
    assert_eq!((first.resumed_stages, again.resumed_stages), (0, 1));
    assert_eq!(again.passes.backward_calls, 0, "a resumed finished stage must not attack again");
    o.seed = 1;
    match evaluate(&model, &x, &y, &spec, &o) {
        Err(AttackError::State { detail, .. }) => assert!(detail.contains("another configuration")),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn results_json_has_the_cli_contract() {
    let net = Smooth::new(8);
    let model = |x: &Tensor| net.forward(x);
    let (x, y) = self_labelled(&model, 6, 8);
    let idx = [10usize, 11, 12, 20, 21, 22];
    let mut o = opts(ThreatModel::L2 { eps: 0.2 });
    o.indices = Some(&idx);
    let r = evaluate(&model, &x, &y, &"pgd".parse().unwrap(), &o).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    for k in
        ["n", "clean_accuracy", "robust_accuracy", "eps", "norm", "attack", "examples", "passes", "flags", "stages"]
    {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["norm"], "l2");
    assert_eq!(v["attack"], "pgd");
    let e = &v["examples"][3];
    assert_eq!(e["index"], 20);
    for k in ["label", "clean_correct", "robust", "broken_by"] {
        assert!(e.get(k).is_some(), "missing examples[].{k}");
    }
    let ra = v["robust_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ra));
    // `none` reports clean accuracy as robust accuracy and runs no stage.
    let c = evaluate(&model, &x, &y, &AttackSpec::None, &o).unwrap();
    assert_eq!((c.robust_accuracy, c.stages.len()), (c.clean_accuracy, 0));
    assert!(evaluate(&model, &x, &y, &"fab-t".parse().unwrap(), &opts(ThreatModel::L1 { eps: 1.0 })).is_err());
}

#[test]
fn real_standard_lenet_falls_to_pgd() {
    let (Some((x, y)), Some(net)) = (common::mnist_test(100), common::LeNet5::load("clntrained")) else {
        eprintln!(
            "skipping: MNIST / advertorch LeNet not in {} (run `roli data fetch all`)",
            common::cache_dir().display()
        );
        return;
    };
    let model = |t: &Tensor| net.forward(t);
    let mut o = EvalOptions::new(ThreatModel::Linf { eps: 0.3 });
    o.batch_size = 100;
    let r = evaluate(&model, &x, &y, &AttackSpec::with_pgd(40, Some(0.01), 1), &o).unwrap();
    assert!(r.clean_accuracy >= 0.95, "clean {}", r.clean_accuracy);
    assert!(r.robust_accuracy <= 0.02, "standard LeNet should be ~0% under PGD-40, got {}", r.robust_accuracy);
    assert!(r.flags.is_empty(), "{:?}", r.flags);
}

#[test]
fn real_robust_lenet_curve_is_sane() {
    let (Some((x, y)), Some(net)) = (common::mnist_test(100), common::LeNet5::load("advtrained")) else {
        eprintln!(
            "skipping: MNIST / advertorch LeNet not in {} (run `roli data fetch all`)",
            common::cache_dir().display()
        );
        return;
    };
    let model = |t: &Tensor| net.forward(t);
    let mut o = EvalOptions::new(ThreatModel::Linf { eps: 0.0 });
    o.batch_size = 100;
    let s = sweep(&model, &x, &y, &AttackSpec::with_pgd(20, Some(0.02), 1), &[0.0, 0.1, 0.3, 0.5], &o).unwrap();
    assert!(s.flags.is_empty(), "curve flags {:?}", s.flags);
    let acc: Vec<f64> = s.reports.iter().map(|r| r.robust_accuracy).collect();
    assert_eq!(acc[0], s.reports[0].clean_accuracy, "eps=0 must equal clean");
    assert!(acc[2] > 0.8 && acc[2] < 0.99, "robust LeNet at 0.3: {}", acc[2]);
    assert!(acc[3] < acc[2], "larger eps must hurt: {acc:?}");
    assert_eq!(s.reports[2].norm, Norm::Linf);
}
