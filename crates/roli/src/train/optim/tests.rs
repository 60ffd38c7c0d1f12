use super::*;
use tch::Kind;

fn param(vals: &[f32]) -> Tensor {
    Tensor::from_slice(vals).set_requires_grad(true)
}

fn grad_of_sum_sq(p: &Tensor) {
    // L = sum(p^2) → g = 2p
    let l = (p * p).sum(Kind::Float);
    l.backward();
}

#[test]
fn sgd_momentum_matches_pytorch_by_hand() {
    let p = param(&[1.0, -2.0]);
    let mut o = Optimizer::new(
        OptimizerKind::Sgd { momentum: 0.9 },
        vec![("w".into(), p.shallow_clone())],
        0.1,
        0.5,
        "head.bias",
    );
    // step 1: g = 2p = [2,-4]; d = g + 0.1p = [2.1,-4.2]; buf=d; p -= 0.5 d → [-0.05, 0.1]
    grad_of_sum_sq(&p);
    o.step();
    let v = Vec::<f32>::try_from(&p).unwrap();
    assert!((v[0] + 0.05).abs() < 1e-6 && (v[1] - 0.1).abs() < 1e-6, "{v:?}");
    // step 2: g = [-0.1, 0.2]; d = g + 0.1p = [-0.105, 0.21]; buf = 0.9·[2.1,-4.2] + d = [1.785, -3.57]
    o.zero_grad();
    grad_of_sum_sq(&p);
    o.step();
    let v = Vec::<f32>::try_from(&p).unwrap();
    assert!((v[0] - (-0.05 - 0.5 * 1.785)).abs() < 1e-5, "{v:?}");
}

#[test]
fn hf_adamw_first_step_and_decay() {
    let p = param(&[1.0]);
    let mut o =
        Optimizer::new(OptimizerKind::REFERENCE_ADAMW, vec![("w".into(), p.shallow_clone())], 0.01, 0.1, "head.bias");
    grad_of_sum_sq(&p);
    o.step();
    // m = 0.1·2 = 0.2; v = 0.001·4 = 0.004; denom = √0.004 + 1e-6;
    // step = 0.1·√(0.001)/0.1; p = 1 − step·m/denom, then p −= 0.1·0.01·p.
    let m = 0.2f64;
    let denom = 0.004f64.sqrt() + 1e-6;
    let step = 0.1 * (0.001f64).sqrt() / 0.1;
    let mut expect = 1.0 - step * m / denom;
    expect -= 0.1 * 0.01 * expect;
    let got = Vec::<f32>::try_from(&p).unwrap()[0] as f64;
    assert!((got - expect).abs() < 1e-6, "{got} vs {expect}");
}

#[test]
fn decay_rules_follow_the_reference() {
    let a = OptimizerKind::REFERENCE_ADAMW;
    assert_eq!(weight_decay_for(&a, "layers.0.blocks.1.attn.relative_position_bias_table", 0.01, "head.fc.bias"), 0.0);
    assert_eq!(weight_decay_for(&a, "blocks.0.norm1.weight", 0.01, "head.fc.bias"), 0.01);
    let s = OptimizerKind::REFERENCE_SGD;
    assert_eq!(weight_decay_for(&s, "head.fc.bias", 0.01, "head.fc.bias"), 0.0);
    assert_eq!(weight_decay_for(&s, "head.fc.weight", 0.01, "head.fc.bias"), 0.01);
    assert_eq!(weight_decay_for(&s, "linear2.bias", 0.01, "linear2.bias"), 0.0);
}

#[test]
fn state_roundtrip_continues_identically() {
    let run = |split: bool| {
        let p = param(&[0.5, 1.5, -1.0]);
        let mut o = Optimizer::new(
            OptimizerKind::REFERENCE_ADAMW,
            vec![("w".into(), p.shallow_clone())],
            0.01,
            0.05,
            "head.bias",
        );
        for i in 0..4 {
            if split && i == 2 {
                let saved: Vec<(String, Tensor)> = o.state_tensors().into_iter().map(|(k, t)| (k, t.copy())).collect();
                let steps = o.steps;
                o = Optimizer::new(
                    OptimizerKind::REFERENCE_ADAMW,
                    vec![("w".into(), p.shallow_clone())],
                    0.01,
                    0.05,
                    "head.bias",
                );
                o.load_state(steps, saved).unwrap();
            }
            o.zero_grad();
            grad_of_sum_sq(&p);
            o.step();
        }
        Vec::<f32>::try_from(&p).unwrap()
    };
    assert_eq!(run(false), run(true));
    let mut o =
        Optimizer::new(OptimizerKind::REFERENCE_ADAMW, vec![("w".into(), param(&[1.0]))], 0.0, 0.1, "head.bias");
    assert!(o
        .load_state(1, vec![("other#0".into(), Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)))])
        .unwrap_err()
        .contains("unknown parameter"));
}

/// Parameters of a small net: two decay groups under either rule, one float64 tensor (its own
/// group), `late.weight` that first gets a gradient at step 3 (its momentum buffer / moments
/// start later than the others'), and `frozen.weight` that never gets one.
fn net() -> Vec<(String, Tensor)> {
    let shapes: [(&str, &[i64], Kind); 6] = [
        ("blocks.0.weight", &[4, 3], Kind::Float),
        ("blocks.0.bias", &[3], Kind::Float),
        ("blocks.1.weight", &[3, 3], Kind::Double),
        ("late.weight", &[5], Kind::Float),
        ("frozen.weight", &[2], Kind::Float),
        ("head.bias", &[2], Kind::Float),
    ];
    shapes
        .iter()
        .enumerate()
        .map(|(i, (name, shape, kind))| {
            (name.to_string(), pseudo_random(shape, *kind, 1000 + i).set_requires_grad(true))
        })
        .collect()
}

/// Deterministic values in [−1, 1] that differ with `salt`, without the global generator (tests
/// run on parallel threads).
fn pseudo_random(shape: &[i64], kind: Kind, salt: usize) -> Tensor {
    let n: i64 = shape.iter().product();
    (Tensor::arange(n, (kind, tch::Device::Cpu)) * (1.7 + salt as f64 * 0.61) + salt as f64).sin().reshape(shape)
}

/// Σ c·p + ½ Σ p² (gradient c + p) with a different `c` per parameter and step.
fn backward(params: &[(String, Tensor)], step: usize) {
    let mut loss = Tensor::zeros([], (Kind::Double, tch::Device::Cpu));
    for (i, (name, p)) in params.iter().enumerate() {
        if name == "frozen.weight" || (name == "late.weight" && step < 3) {
            continue;
        }
        let c = pseudo_random(&p.size(), p.kind(), step * 100 + i);
        loss += (&c * p).sum(Kind::Double) + (p * p).sum(Kind::Double) * 0.5;
    }
    loss.backward();
}

const HEAD_BIAS: &str = "head.bias";

/// Parameter values after each of `steps` steps; at `switch` the state goes through
/// `state_tensors` into a new optimiser of implementation `then`.
fn trajectory(
    kind: OptimizerKind,
    first: OptimImpl,
    switch: Option<(usize, OptimImpl)>,
    steps: usize,
) -> Vec<Vec<Tensor>> {
    let params = net();
    let make = |imp| {
        Optimizer::new(kind, params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect(), 0.05, 0.1, HEAD_BIAS)
            .with_impl(imp)
    };
    let mut o = make(first);
    let mut out = Vec::new();
    for step in 1..=steps {
        if let Some((at, then)) = switch {
            if step == at {
                let saved: Vec<(String, Tensor)> = o.state_tensors().into_iter().map(|(k, t)| (k, t.copy())).collect();
                let done = o.steps;
                o = make(then);
                o.load_state(done, saved).unwrap();
            }
        }
        o.zero_grad();
        backward(&params, step);
        o.try_step().unwrap();
        out.push(params.iter().map(|(_, t)| t.detach().copy()).collect());
    }
    assert!(!params[4].1.grad().defined(), "frozen.weight never had a gradient");
    out
}

/// Largest |a − b| per step, relative to max(1, |b|) of that tensor.
fn max_rel_diff(a: &[Vec<Tensor>], b: &[Vec<Tensor>]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(sa, sb)| {
            sa.iter()
                .zip(sb)
                .map(|(x, y)| {
                    let scale = y.abs().max().double_value(&[]).max(1.0);
                    (x - y).abs().max().double_value(&[]) / scale
                })
                .fold(0.0, f64::max)
        })
        .collect()
}

fn assert_close(what: &str, diffs: &[f64], tol: f64) {
    eprintln!("{what}: max relative |diff| per step {diffs:?}");
    for (i, d) in diffs.iter().enumerate() {
        assert!(*d <= tol, "{what}: step {}: {d:e} > {tol:e}", i + 1);
    }
}

const KINDS: [(&str, OptimizerKind); 3] = [
    ("sgd momentum 0.9", OptimizerKind::Sgd { momentum: 0.9 }),
    ("sgd no momentum", OptimizerKind::Sgd { momentum: 0.0 }),
    ("adamw", OptimizerKind::REFERENCE_ADAMW),
];

#[test]
fn fused_matches_reference_every_step() {
    for (what, kind) in KINDS {
        let reference = trajectory(kind, OptimImpl::Reference, None, 8);
        let fused = trajectory(kind, OptimImpl::Fused, None, 8);
        // Parameters moved (the comparison is not between two no-ops).
        assert!(max_rel_diff(&reference[7..], &reference[..1])[0] > 1e-2, "{what}");
        let diffs = max_rel_diff(&fused, &reference);
        assert_close(what, &diffs, 1e-6);
        if matches!(kind, OptimizerKind::AdamW { .. }) {
            assert!(diffs.iter().all(|d| *d == 0.0), "{what}: the same op sequence gives the same bits");
        }
    }
}

#[test]
fn state_moves_between_implementations() {
    for (what, kind) in KINDS {
        let reference = trajectory(kind, OptimImpl::Reference, None, 7);
        let fused_then_reference = trajectory(kind, OptimImpl::Fused, Some((4, OptimImpl::Reference)), 7);
        assert_close(&format!("{what}: fused → reference"), &max_rel_diff(&fused_then_reference, &reference), 1e-6);
        let reference_then_fused = trajectory(kind, OptimImpl::Reference, Some((4, OptimImpl::Fused)), 7);
        assert_close(&format!("{what}: reference → fused"), &max_rel_diff(&reference_then_fused, &reference), 1e-6);
    }
}

#[test]
fn a_failing_kernel_is_an_error_not_a_crash() {
    let p = param(&[1.0, 2.0, 3.0]);
    let mut o = Optimizer::new(OptimizerKind::REFERENCE_ADAMW, vec![("w".into(), p.shallow_clone())], 0.0, 0.1, "b")
        .with_impl(OptimImpl::Fused);
    let wrong = || Tensor::zeros([2], (Kind::Float, tch::Device::Cpu));
    o.load_state(1, vec![("w#0".into(), wrong()), ("w#1".into(), wrong())]).unwrap();
    grad_of_sum_sq(&p);
    let e = o.try_step().unwrap_err();
    assert!(e.call.starts_with("foreach") && !e.message.contains('\n'), "{e}");
}
