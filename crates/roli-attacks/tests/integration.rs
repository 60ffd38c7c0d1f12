//! Integration tests: tiny synthetic models always; real advertorch LeNets on MNIST when the data
//! cache exists (`roli data fetch all`; skipped with a note otherwise).
//! The heavy conformance run against the official AutoAttack is the `conformance` example.

#[path = "../examples/common/mod.rs"]
mod common;

use roli_attacks::{checks, evaluate, sweep, AttackError, AttackSpec, EvalOptions, Flag, Norm, StageId, ThreatModel};
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

#[test]
fn gradient_masked_model_is_flagged() {
    // A linear model on sign(x − 0.5): zero input gradient everywhere, but easy to fool by flipping
    // pixels near 0.5. White-box attacks cannot see that; Square can.
    tch::manual_seed(2);
    let w = Tensor::randn([10, 64], (Kind::Float, Device::Cpu));
    let masked = move |x: &Tensor| (x - 0.5).sign().reshape([x.size()[0], -1]).linear::<Tensor>(&w, None);
    let (x, y) = self_labelled(&masked, 24, 8);
    let r = evaluate(&masked, &x, &y, &"aa-standard".parse().unwrap(), &opts(ThreatModel::Linf { eps: 0.3 })).unwrap();
    for st in &r.stages {
        eprintln!("masked: {} broke {} of {}", st.id, st.n_broken, st.n_attacked);
    }
    assert!(r.flags.iter().any(|f| matches!(f, Flag::ZeroGradient { zero, total, .. } if zero == total)), "flags {:?}", r.flags);
    assert!(r.flags.iter().any(|f| matches!(f, Flag::SquareBeatsWhiteBox { .. })), "flags {:?}", r.flags);
    let sq = r.stages.iter().find(|s| s.id == StageId::Square).unwrap();
    assert!(sq.n_broken > 0, "Square should break the masked model");
    // The smooth model raises neither flag under the same evaluation.
    let net = Smooth::new(8);
    let smooth = |x: &Tensor| net.forward(x);
    let (x, y) = self_labelled(&smooth, 24, 8);
    let r = evaluate(&smooth, &x, &y, &"aa-standard".parse().unwrap(), &opts(ThreatModel::Linf { eps: 0.05 })).unwrap();
    assert!(!r.flags.iter().any(|f| matches!(f, Flag::ZeroGradient { .. } | Flag::SquareBeatsWhiteBox { .. })), "flags {:?}", r.flags);
}

#[test]
fn autoattack_respects_the_ball_and_beats_pgd_in_linf_and_l2() {
    let net = Smooth::new(12);
    let model = |x: &Tensor| net.forward(x);
    let (x, y) = self_labelled(&model, 32, 12);
    for threat in [ThreatModel::Linf { eps: 0.03 }, ThreatModel::L2 { eps: 0.3 }] {
        let o = opts(threat);
        let aa = evaluate(&model, &x, &y, &"aa-standard".parse().unwrap(), &o).unwrap();
        let pgd = evaluate(&model, &x, &y, &AttackSpec::with_pgd(10, Some(threat.eps() / 4.0), 1), &o).unwrap();
        assert_eq!(checks::aa_not_weaker_than_pgd(aa.robust_accuracy, pgd.robust_accuracy), None, "{threat:?}");
        assert!(aa.robust_accuracy < aa.clean_accuracy, "{threat:?}: AA broke nothing");
        assert!(!aa.flags.iter().any(|f| matches!(f, Flag::PerturbationOutOfBounds { .. })), "{threat:?}: {:?}", aa.flags);
        for e in &aa.examples {
            if let Some(d) = e.perturbation_norm {
                assert!(d <= threat.eps() * (1.0 + 1e-5), "{threat:?}: example {} has norm {d}", e.index);
            }
            // Every broken example names its stage; every robust one has a record for each stage.
            assert_eq!(e.broken_by.is_some(), e.clean_correct && !e.robust);
            if e.robust {
                assert_eq!(e.attacks.len(), 4);
                assert!(e.attacks.values().all(|&v| v));
            }
        }
        assert!(aa.sanity.min_value >= 0.0 && aa.sanity.max_value <= 1.0);
        // The cost is reported, stage by stage.
        assert!(aa.passes.backward_calls > 0 && aa.stages.iter().all(|s| s.passes.forward_calls > 0 || s.n_attacked == 0));
    }
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
    for k in ["n", "clean_accuracy", "robust_accuracy", "eps", "norm", "attack", "examples", "passes", "flags", "stages"] {
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
    assert!(evaluate(&model, &x, &y, &"apgd-ce".parse().unwrap(), &opts(ThreatModel::L1 { eps: 1.0 })).is_err());
}

#[test]
fn real_standard_lenet_falls_to_pgd() {
    let (Some((x, y)), Some(net)) = (common::mnist_test(100), common::LeNet5::load("clntrained")) else {
        eprintln!("skipping: MNIST / advertorch LeNet not in {} (run `roli data fetch all`)", common::cache_dir().display());
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
        eprintln!("skipping: MNIST / advertorch LeNet not in {} (run `roli data fetch all`)", common::cache_dir().display());
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
